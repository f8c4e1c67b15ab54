package fastpath

import (
	"bytes"
	"encoding/json"
	"math"
	"unicode/utf8"

	"github.com/txoutbox/txoutbox/topics/internal/jsonrule"
)

// A tape is event data parsed into a flat list of tokens, one per JSON
// value, without building maps or copying strings. It accepts only
// documents encoding/json reads the same way: strict JSON in valid UTF-8
// without duplicate or escaped object keys, nested at most tapeDepthMax deep, with numbers the
// general path would accept. Everything else is refused, and left to the
// general path to accept or explain.
type tape struct {
	data []byte
	pos  int
	toks []token
}

// tokKind is the JSON type of a token.
type tokKind uint8

const (
	tokNull tokKind = iota
	tokBool
	tokNumber
	tokString
	tokArray
	tokObject
)

// token is one JSON value. An object's token is followed by its members,
// each a key token and the value's tokens; an array's by its elements.
type token struct {
	kind    tokKind
	truth   bool  // a tokBool's value
	escaped bool  // a tokString holds backslash escapes
	start   int32 // strings: the first byte after the quote; numbers: the first digit or '-'
	end     int32 // strings: the closing quote; numbers: the byte after the last
	n       int32 // an object's members, an array's elements
	next    int32 // index of the token after this value and everything in it
}

const (
	// tapeDepthMax bounds how deeply parsed data may nest.
	tapeDepthMax = 100
	// tapeMembersMax bounds the members of a parsed object: finding
	// duplicate keys costs time quadratic in their number.
	tapeMembersMax = 256
)

// parse reads t.data into t.toks and reports whether it is a document the
// tape accepts.
func (t *tape) parse() bool {
	// encoding/json decodes invalid UTF-8 as U+FFFD; topics refuse it.
	if len(t.data) > math.MaxInt32 || !utf8.Valid(t.data) {
		return false
	}
	t.space()
	if !t.value(0) {
		return false
	}
	t.space()
	return t.pos == len(t.data)
}

func (t *tape) space() {
	for t.pos < len(t.data) {
		switch t.data[t.pos] {
		case ' ', '\t', '\n', '\r':
			t.pos++
		default:
			return
		}
	}
}

func (t *tape) value(depth int) bool {
	if t.pos >= len(t.data) {
		return false
	}
	switch c := t.data[t.pos]; c {
	case '{':
		return t.object(depth)
	case '[':
		return t.array(depth)
	case '"':
		return t.str()
	case 't':
		return t.literal("true", tokBool, true)
	case 'f':
		return t.literal("false", tokBool, false)
	case 'n':
		return t.literal("null", tokNull, false)
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return t.number()
		}
		return false
	}
}

// push appends a token whose value has no tokens inside it.
func (t *tape) push(tok token) int {
	tok.next = int32(len(t.toks) + 1)
	t.toks = append(t.toks, tok)
	return len(t.toks) - 1
}

func (t *tape) literal(lit string, kind tokKind, truth bool) bool {
	end := t.pos + len(lit)
	if end > len(t.data) || string(t.data[t.pos:end]) != lit {
		return false
	}
	t.push(token{kind: kind, truth: truth, start: int32(t.pos), end: int32(end)})
	t.pos = end
	return true
}

func (t *tape) number() bool {
	d, start := t.data, t.pos
	i := start
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		i = digits(d, i)
	default:
		return false
	}
	if i < len(d) && d[i] == '.' {
		j := digits(d, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	mantissa := i - start
	exp := 0
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := digits(d, i)
		if j == i {
			return false
		}
		for _, c := range d[i:j] {
			// jsonrule.NumberProblem's limit on the exponent.
			if exp = exp*10 + int(c-'0'); exp > jsonrule.NumberExpMax {
				return false
			}
		}
		i = j
	}
	// jsonrule.NumberProblem's limit on the digits before the exponent.
	if mantissa > jsonrule.NumberExpMax {
		return false
	}
	t.push(token{kind: tokNumber, start: int32(start), end: int32(i)})
	t.pos = i
	return true
}

func digits(d []byte, i int) int {
	for i < len(d) && '0' <= d[i] && d[i] <= '9' {
		i++
	}
	return i
}

func (t *tape) str() bool {
	d := t.data
	escaped := false
	for i := t.pos + 1; i < len(d); i++ {
		switch c := d[i]; {
		case c == '"':
			t.push(token{kind: tokString, escaped: escaped, start: int32(t.pos + 1), end: int32(i)})
			t.pos = i + 1
			return true
		case c == '\\':
			escaped = true
			if i++; i >= len(d) {
				return false
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(d) {
					return false
				}
				for _, h := range d[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		case c < 0x20:
			return false
		}
	}
	return false
}

func (t *tape) object(depth int) bool {
	obj := len(t.toks)
	return t.container(tokObject, '}', depth, func(n int) bool {
		if t.pos >= len(t.data) || t.data[t.pos] != '"' || !t.str() {
			return false
		}
		key := len(t.toks) - 1
		if t.toks[key].escaped || n == tapeMembersMax || t.duplicate(obj, n, t.text(key)) {
			return false
		}
		t.space()
		if t.pos >= len(t.data) || t.data[t.pos] != ':' {
			return false
		}
		t.pos++
		t.space()
		return t.value(depth + 1)
	})
}

func (t *tape) array(depth int) bool {
	return t.container(tokArray, ']', depth, func(int) bool { return t.value(depth + 1) })
}

// container reads an object or array: the opening bracket at t.pos, then
// members or elements, each read by item given how many came before it,
// separated by commas, then the closing bracket.
func (t *tape) container(kind tokKind, closing byte, depth int, item func(n int) bool) bool {
	if depth >= tapeDepthMax {
		return false
	}
	i := len(t.toks)
	t.toks = append(t.toks, token{kind: kind})
	t.pos++
	t.space()
	n := 0
	if t.pos < len(t.data) && t.data[t.pos] == closing {
		t.pos++
	} else {
		for more := true; more; {
			if !item(n) {
				return false
			}
			n++
			t.space()
			if t.pos >= len(t.data) {
				return false
			}
			switch t.data[t.pos] {
			case ',':
			case closing:
				more = false
			default:
				return false
			}
			t.pos++
			t.space()
		}
	}
	t.toks[i].n = int32(n)
	t.toks[i].next = int32(len(t.toks))
	return true
}

// text returns the bytes of a string or number token: a string's without
// the quotes and with its escapes as written.
func (t *tape) text(i int) []byte {
	return t.data[t.toks[i].start:t.toks[i].end]
}

// duplicate reports whether one of the object's first n members is called
// name.
func (t *tape) duplicate(obj, n int, name []byte) bool {
	for k, m := obj+1, 0; m < n; m++ {
		if bytes.Equal(t.text(k), name) {
			return true
		}
		k = int(t.toks[k+1].next)
	}
	return false
}

// named returns the index of the value of the object's member called name,
// or -1.
func (t *tape) named(obj int, name string) int {
	for k, m := obj+1, 0; m < int(t.toks[obj].n); m++ {
		if string(t.text(k)) == name {
			return k + 1
		}
		k = int(t.toks[k+1].next)
	}
	return -1
}

// string returns a string token's value, escapes decoded as encoding/json
// decodes them; false if they do not decode, which the tape's checks rule out.
func (t *tape) string(i int) (string, bool) {
	tok := &t.toks[i]
	if !tok.escaped {
		return string(t.text(i)), true
	}
	var s string
	if err := json.Unmarshal(t.data[tok.start-1:tok.end+1], &s); err != nil {
		return "", false
	}
	return s, true
}
