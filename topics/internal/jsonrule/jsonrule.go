// Package jsonrule holds the rules on event data's JSON that both of topics'
// validation paths apply: the general path in package topics and the fast
// path in package fastpath. One definition keeps the two paths reading data
// alike: which numbers are usable, and how the ordering key is read at a
// JSON pointer.
package jsonrule

import (
	"encoding/json"
	"math/big"
	"strconv"
	"strings"
)

// NumberExpMax bounds the decimal exponent of numbers: beyond it they are no
// longer numbers any consumer can hold, and the validator's exact arithmetic
// on them gets slow.
const NumberExpMax = 400

// NumberProblem says why the JSON number text s is unusable, or "".
func NumberProblem(s string) string {
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		if len(s) > NumberExpMax {
			return "has more than " + strconv.Itoa(NumberExpMax) + " digits"
		}
		return ""
	}
	if i > NumberExpMax {
		return "has more than " + strconv.Itoa(NumberExpMax) + " digits"
	}
	exp, err := strconv.Atoi(s[i+1:])
	if err != nil || exp > NumberExpMax || exp < -NumberExpMax {
		return "has an exponent beyond ±" + strconv.Itoa(NumberExpMax)
	}
	return ""
}

// NextToken splits the first reference token off a non-empty JSON pointer,
// decoding its escapes.
func NextToken(ptr string) (tok, rest string) {
	ptr = ptr[1:] // the leading '/'
	tok = ptr
	if i := strings.IndexByte(ptr, '/'); i >= 0 {
		tok, rest = ptr[:i], ptr[i:]
	}
	if strings.Contains(tok, "~") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
	}
	return tok, rest
}

// IntegerText returns the decimal text of n if n is an integer, as JSON
// Schema counts them (1.0 and 1e2 are integers): the key of an event whose
// key is a number.
func IntegerText(n json.Number) (string, bool) {
	s := string(n)
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		if s == "-0" {
			return "0", true
		}
		return s, true
	}
	if len(s) > 400 {
		return "", false // refuse to expand exponents like 1e100000000
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || !r.IsInt() {
		return "", false
	}
	return r.Num().String(), true
}
