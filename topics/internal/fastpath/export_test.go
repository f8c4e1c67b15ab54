package fastpath

import (
	"encoding/json"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func init() {
	// Package topics, which these tests load definitions with, gets no fast
	// path: its Validate is the general path, the reference.
	testHookNoPath = true
}

// Compile is New for the tests: the fast path of s, or nil.
func Compile(s *jsonschema.Schema) *Path { return newPath(s) }

// Decide returns the plan's answer on data: valid or not, and whether the
// tape took data and the plan was sure of its answer.
func (f *Path) Decide(data []byte) (valid, decided bool) {
	t := &tape{data: data}
	if !t.parse() || t.toks[0].kind != tokObject || t.toks[0].n == 0 {
		return false, false
	}
	c := checker{t: t}
	valid = c.valid(f.root, 0)
	return valid, !c.unsure
}

// Decode parses data on a tape and returns the value it holds as
// encoding/json decodes it with UseNumber, and how many of the tape's
// tokens that left unread; ok is false when the tape refuses data.
func Decode(data []byte) (v any, unread int, ok bool) {
	t := &tape{data: data}
	if !t.parse() {
		return nil, 0, false
	}
	v, next := t.decode(0)
	return v, len(t.toks) - next, true
}

// decode returns the value at token i as encoding/json decodes it with
// UseNumber, and the index after it.
func (t *tape) decode(i int) (any, int) {
	tok := t.toks[i]
	switch tok.kind {
	case tokNull:
		return nil, i + 1
	case tokBool:
		return tok.truth, i + 1
	case tokNumber:
		return json.Number(t.text(i)), i + 1
	case tokString:
		s, ok := t.string(i)
		if !ok {
			panic("undecodable string")
		}
		return s, i + 1
	case tokArray:
		a := []any{}
		j := i + 1
		for range tok.n {
			var v any
			v, j = t.decode(j)
			a = append(a, v)
		}
		return a, j
	}
	m := map[string]any{}
	j := i + 1
	for range tok.n {
		k, _ := t.string(j)
		m[k], j = t.decode(j + 1)
	}
	return m, j
}
