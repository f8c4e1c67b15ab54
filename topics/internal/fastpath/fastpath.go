// Package fastpath is the fast path of topics' validation: it accepts valid
// event data without the general path's costs.
//
// The general path, in package topics, decodes the data into maps and
// slices and has the JSON Schema validator walk them keeping the records it
// needs to explain a failure: about 10 µs and 80 allocations for a small
// event, most of what Publish costs. The fast path parses the data into a
// tape and checks it against a plan compiled once per topic from the
// validator's own compiled schema, answering only "certainly valid" or "not
// certainly valid". Valid data is done there; anything else takes the
// general path, which decides and explains. So the errors stay those of the
// general path, and the fast path only has to be right when it says valid.
//
// A plan covers the keywords topic schemas use: type, enum, const, format,
// $ref, the object, array, string and number keywords, and the applicators
// allOf, anyOf, oneOf, not and if/then/else. A schema with any other keyword
// (unevaluatedProperties, $dynamicRef, uniqueItems, ...) or a $ref cycle
// that does not descend into the data gets no plan, and always takes the
// general path.
package fastpath

import (
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"sync"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/txoutbox/txoutbox/topics/internal/jsonrule"
)

// plan is the fast path's form of one compiled schema.
type plan struct {
	boolean *bool // a true or false schema
	draft   int

	types  typeSet // 0: any
	enums  []*enumPlan
	format func(any) error
	ref    *plan

	// objects
	minProps, maxProps int            // -1: none
	names              []string       // properties and required names, by bit
	bits               map[string]int // names → bit, when there are many
	props              []*plan        // by bit; nil for a name only required
	required           uint64
	patterns           []patternPlan
	additional         any  // nil, false or *plan
	members            bool // some keyword applies to the members

	// arrays
	minItems, maxItems int     // -1: none
	prefix             []*plan // the first elements' schemas
	rest               any     // the other elements': nil, false or *plan

	// strings
	minLen, maxLen int // -1: none
	pattern        jsonschema.Regexp

	// numbers
	minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf *numBound

	allOf, anyOf, oneOf        []*plan
	not, cond, then, otherwise *plan
}

type patternPlan struct {
	re jsonschema.Regexp
	p  *plan
}

// typeSet is a set of JSON Schema types.
type typeSet uint8

const (
	typeNull typeSet = 1 << iota
	typeBoolean
	typeNumber
	typeInteger
	typeString
	typeArray
	typeObject
)

var typeNames = map[string]typeSet{
	"null": typeNull, "boolean": typeBoolean, "number": typeNumber, "integer": typeInteger,
	"string": typeString, "array": typeArray, "object": typeObject,
}

// enumPlan is the values of an enum, or a const's one value.
type enumPlan struct {
	strings   []string
	numbers   []*numBound
	bools     []bool
	null      bool
	composite bool // an object or array value: such data is left to the general path
}

// numBound is a number of the schema: exactly, and as an int64 when it is
// an integer that fits.
type numBound struct {
	rat     *big.Rat
	i       int64
	isInt64 bool
}

func newNumBound(r *big.Rat) *numBound {
	b := &numBound{rat: r}
	if r.IsInt() && r.Num().IsInt64() {
		b.i, b.isInt64 = r.Num().Int64(), true
	}
	return b
}

// planMaxNames bounds the properties and required names of one object
// schema, so their presence fits in a uint64.
const planMaxNames = 64

// compilePlan returns the plan of s, or nil when s uses what plans do not
// cover.
func compilePlan(s *jsonschema.Schema) *plan {
	c := planCompiler{plans: map[*jsonschema.Schema]*plan{}}
	p := c.compile(s)
	if c.unsupported || p == nil || c.cyclic() {
		return nil
	}
	return p
}

type planCompiler struct {
	plans       map[*jsonschema.Schema]*plan
	unsupported bool
}

func (c *planCompiler) compile(s *jsonschema.Schema) *plan {
	if s == nil || c.unsupported {
		return nil
	}
	if p, ok := c.plans[s]; ok {
		return p
	}
	p := &plan{draft: s.DraftVersion, minProps: -1, maxProps: -1, minItems: -1, maxItems: -1, minLen: -1, maxLen: -1}
	c.plans[s] = p
	if s.Bool != nil {
		p.boolean = s.Bool
		return p
	}
	if len(s.Extensions) > 0 || s.RecursiveRef != nil || s.DynamicRef != nil ||
		s.PropertyNames != nil || len(s.Dependencies) > 0 || len(s.DependentRequired) > 0 ||
		len(s.DependentSchemas) > 0 || s.UnevaluatedProperties != nil || s.UnevaluatedItems != nil ||
		s.Contains != nil || s.UniqueItems ||
		s.ContentEncoding != nil || s.ContentMediaType != nil || s.ContentSchema != nil {
		c.unsupported = true
		return nil
	}

	if s.Types != nil {
		for _, name := range s.Types.ToStrings() {
			p.types |= typeNames[name]
		}
	}
	if s.Const != nil {
		p.enums = append(p.enums, c.enum([]any{*s.Const}))
	}
	if s.Enum != nil {
		p.enums = append(p.enums, c.enum(s.Enum.Values))
	}
	if s.Format != nil {
		// The fast path calls a format with strings only; every built-in
		// one passes other values, and any other takes the general path.
		for _, v := range []any{nil, true, json.Number("1"), []any{}, map[string]any{}} {
			if s.Format.Validate(v) != nil {
				c.unsupported = true
				return nil
			}
		}
		p.format = s.Format.Validate
	}
	p.ref = c.compile(s.Ref)

	// objects
	p.minProps, p.maxProps = intOr(s.MinProperties), intOr(s.MaxProperties)
	bits := map[string]int{}
	bit := func(name string) int {
		b, ok := bits[name]
		if !ok {
			b = len(p.names)
			bits[name] = b
			p.names = append(p.names, name)
			p.props = append(p.props, nil)
		}
		return b
	}
	for name, sub := range s.Properties {
		p.props[bit(name)] = c.compile(sub)
	}
	for _, name := range s.Required {
		p.required |= 1 << bit(name)
	}
	if len(p.names) > planMaxNames {
		c.unsupported = true
		return nil
	}
	for re, sub := range s.PatternProperties {
		p.patterns = append(p.patterns, patternPlan{re, c.compile(sub)})
	}
	p.additional = c.additional(s.AdditionalProperties)
	p.members = len(p.names) > 0 || len(p.patterns) > 0 || p.additional != nil
	if len(p.names) > scanNamesMax {
		p.bits = bits
	}

	// arrays
	p.minItems, p.maxItems = intOr(s.MinItems), intOr(s.MaxItems)
	if s.DraftVersion < 2020 {
		switch items := s.Items.(type) {
		case *jsonschema.Schema:
			p.rest = c.compile(items)
		case []*jsonschema.Schema:
			p.prefix = c.compileAll(items)
			p.rest = c.additional(s.AdditionalItems)
		case nil:
			p.rest = c.additional(s.AdditionalItems)
		}
	} else {
		p.prefix = c.compileAll(s.PrefixItems)
		if s.Items2020 != nil {
			p.rest = c.compile(s.Items2020)
		}
	}

	// strings
	p.minLen, p.maxLen = intOr(s.MinLength), intOr(s.MaxLength)
	p.pattern = s.Pattern

	// numbers
	for _, b := range []struct {
		dst **numBound
		r   *big.Rat
	}{
		{&p.minimum, s.Minimum}, {&p.maximum, s.Maximum},
		{&p.exclusiveMinimum, s.ExclusiveMinimum}, {&p.exclusiveMaximum, s.ExclusiveMaximum},
		{&p.multipleOf, s.MultipleOf},
	} {
		if b.r != nil {
			*b.dst = newNumBound(b.r)
		}
	}
	if p.multipleOf != nil && p.multipleOf.rat.Sign() == 0 {
		c.unsupported = true
		return nil
	}

	p.allOf, p.anyOf, p.oneOf = c.compileAll(s.AllOf), c.compileAll(s.AnyOf), c.compileAll(s.OneOf)
	p.not, p.cond, p.then, p.otherwise = c.compile(s.Not), c.compile(s.If), c.compile(s.Then), c.compile(s.Else)
	return p
}

func (c *planCompiler) compileAll(ss []*jsonschema.Schema) []*plan {
	var ps []*plan
	for _, s := range ss {
		ps = append(ps, c.compile(s))
	}
	return ps
}

// additional compiles additionalProperties or additionalItems: nil or bool
// or a schema.
func (c *planCompiler) additional(v any) any {
	switch v := v.(type) {
	case bool:
		if !v {
			return false
		}
	case *jsonschema.Schema:
		return c.compile(v)
	}
	return nil
}

func (c *planCompiler) enum(values []any) *enumPlan {
	e := &enumPlan{}
	for _, v := range values {
		switch v := v.(type) {
		case nil:
			e.null = true
		case bool:
			e.bools = append(e.bools, v)
		case string:
			e.strings = append(e.strings, v)
		case json.Number, float32, float64, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
			r, ok := new(big.Rat).SetString(fmt.Sprint(v))
			if !ok {
				c.unsupported = true
				return e
			}
			e.numbers = append(e.numbers, newNumBound(r))
		default:
			e.composite = true
		}
	}
	return e
}

func intOr(p *int) int {
	if p == nil {
		return -1
	}
	return *p
}

// cyclic reports a cycle of plans applied to one and the same value
// ($ref, allOf, anyOf, oneOf, not, if, then, else), which the validator
// reports as an error and the fast path must not follow forever. Cycles
// through parts of the value (a tree's children) end with the data.
func (c *planCompiler) cyclic() bool {
	const visiting, done = 1, 2
	state := map[*plan]int{}
	var visit func(p *plan) bool
	visit = func(p *plan) bool {
		if p == nil || state[p] == done {
			return false
		}
		if state[p] == visiting {
			return true
		}
		state[p] = visiting
		same := append([]*plan{p.ref, p.not, p.cond, p.then, p.otherwise}, p.allOf...)
		for _, q := range append(append(same, p.anyOf...), p.oneOf...) {
			if visit(q) {
				return true
			}
		}
		state[p] = done
		return false
	}
	for _, p := range c.plans {
		if visit(p) {
			return true
		}
	}
	return false
}

// checker checks a parsed tape against plans. Whatever it cannot decide
// exactly sets unsure, and the general path decides instead.
type checker struct {
	t      *tape
	unsure bool
}

// valid reports whether the value at token i is valid against p, mirroring
// the validator's (*Schema).validate keyword by keyword.
func (c *checker) valid(p *plan, i int) bool {
	if p.boolean != nil {
		return *p.boolean
	}
	tok := &c.t.toks[i]
	if p.types != 0 && !c.typed(p.types, i) {
		return false
	}
	for _, e := range p.enums {
		if !c.in(e, i) {
			return false
		}
	}
	if p.format != nil && tok.kind == tokString {
		s, ok := c.t.string(i)
		if !ok {
			c.unsure = true
			return false
		}
		if p.format(s) != nil {
			return false
		}
	}
	if p.ref != nil {
		ok := c.valid(p.ref, i)
		if p.draft < 2019 || !ok {
			// Before 2019-09, $ref's siblings are ignored.
			return ok
		}
	}
	var ok bool
	switch tok.kind {
	case tokObject:
		ok = c.object(p, i)
	case tokArray:
		ok = c.array(p, i)
	case tokString:
		ok = c.string(p, i)
	case tokNumber:
		ok = c.number(p, i)
	default:
		ok = true
	}
	return ok && c.applicators(p, i)
}

func (c *checker) applicators(p *plan, i int) bool {
	for _, q := range p.allOf {
		if !c.valid(q, i) {
			return false
		}
	}
	if len(p.anyOf) > 0 {
		matched := false
		for _, q := range p.anyOf {
			if c.valid(q, i) {
				matched = true
				break
			}
		}
		if !matched {
			return false
		}
	}
	if len(p.oneOf) > 0 {
		n := 0
		for _, q := range p.oneOf {
			if c.valid(q, i) {
				if n++; n > 1 {
					return false
				}
			}
		}
		if n != 1 {
			return false
		}
	}
	if p.not != nil && c.valid(p.not, i) {
		return false
	}
	if p.cond != nil {
		if c.valid(p.cond, i) {
			return p.then == nil || c.valid(p.then, i)
		}
		return p.otherwise == nil || c.valid(p.otherwise, i)
	}
	return true
}

func (c *checker) typed(types typeSet, i int) bool {
	switch c.t.toks[i].kind {
	case tokNull:
		return types&typeNull != 0
	case tokBool:
		return types&typeBoolean != 0
	case tokString:
		return types&typeString != 0
	case tokArray:
		return types&typeArray != 0
	case tokObject:
		return types&typeObject != 0
	}
	return types&typeNumber != 0 || types&typeInteger != 0 && c.integer(i)
}

// integer reports whether a number is an integer as JSON Schema counts them
// (1.0 and 1e2 are).
func (c *checker) integer(i int) bool {
	if _, ok := c.int64(i); ok {
		return true
	}
	r := c.rat(i)
	return r != nil && r.IsInt()
}

// int64 returns a number written as an integer of at most 18 digits.
func (c *checker) int64(i int) (int64, bool) {
	text := c.t.text(i)
	neg := text[0] == '-'
	if neg {
		text = text[1:]
	}
	if len(text) > 18 {
		return 0, false
	}
	var n int64
	for _, d := range text {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

func (c *checker) rat(i int) *big.Rat {
	r, ok := new(big.Rat).SetString(string(c.t.text(i)))
	if !ok {
		c.unsure = true
		return nil
	}
	return r
}

// cmp compares the number at token i with b; ok is false when the number
// cannot be read, which the tape's checks rule out.
func (c *checker) cmp(i int, b *numBound) (int, bool) {
	if n, ok := c.int64(i); ok && b.isInt64 {
		switch {
		case n < b.i:
			return -1, true
		case n > b.i:
			return 1, true
		}
		return 0, true
	}
	r := c.rat(i)
	if r == nil {
		return 0, false
	}
	return r.Cmp(b.rat), true
}

func (c *checker) in(e *enumPlan, i int) bool {
	tok := &c.t.toks[i]
	switch tok.kind {
	case tokNull:
		return e.null
	case tokBool:
		for _, b := range e.bools {
			if b == tok.truth {
				return true
			}
		}
	case tokString:
		for _, s := range e.strings {
			if c.equal(i, s) {
				return true
			}
		}
	case tokNumber:
		for _, b := range e.numbers {
			if d, ok := c.cmp(i, b); !ok {
				return false
			} else if d == 0 {
				return true
			}
		}
	default:
		if e.composite {
			c.unsure = true
		}
	}
	return false
}

// equal reports whether the string at token i is s.
func (c *checker) equal(i int, s string) bool {
	if !c.t.toks[i].escaped {
		return string(c.t.text(i)) == s
	}
	v, ok := c.t.string(i)
	if !ok {
		c.unsure = true
	}
	return ok && v == s
}

func (c *checker) object(p *plan, i int) bool {
	tok := &c.t.toks[i]
	if p.minProps >= 0 && int(tok.n) < p.minProps || p.maxProps >= 0 && int(tok.n) > p.maxProps {
		return false
	}
	if !p.members {
		return p.required == 0
	}
	var seen uint64
	for k, m := i+1, 0; m < int(tok.n); m++ {
		name, v := c.t.text(k), k+1
		evaluated := false
		if b := p.bit(name); b >= 0 {
			seen |= 1 << b
			if q := p.props[b]; q != nil {
				evaluated = true
				if !c.valid(q, v) {
					return false
				}
			}
		}
		for _, pp := range p.patterns {
			if match(pp.re, name) {
				evaluated = true
				if !c.valid(pp.p, v) {
					return false
				}
			}
		}
		if !evaluated && !c.extra(p.additional, v) {
			return false
		}
		k = int(c.t.toks[v].next)
	}
	return seen&p.required == p.required
}

// scanNamesMax is the most names looked up by comparing them one by one,
// which for a few short names is faster than hashing.
const scanNamesMax = 12

// bit returns the bit of a property or required name, or -1.
func (p *plan) bit(name []byte) int {
	if p.bits != nil {
		if b, ok := p.bits[string(name)]; ok {
			return b
		}
		return -1
	}
	for b, n := range p.names {
		if len(n) == len(name) && n == string(name) {
			return b
		}
	}
	return -1
}

// extra checks a value no other keyword covered against
// additionalProperties or additionalItems.
func (c *checker) extra(additional any, i int) bool {
	switch a := additional.(type) {
	case bool:
		return a
	case *plan:
		return c.valid(a, i)
	}
	return true
}

func match(re jsonschema.Regexp, b []byte) bool {
	if re, ok := re.(*regexp.Regexp); ok {
		return re.Match(b)
	}
	return re.MatchString(string(b))
}

func (c *checker) array(p *plan, i int) bool {
	tok := &c.t.toks[i]
	if p.minItems >= 0 && int(tok.n) < p.minItems || p.maxItems >= 0 && int(tok.n) > p.maxItems {
		return false
	}
	for e, m := i+1, 0; m < int(tok.n); m++ {
		var ok bool
		if m < len(p.prefix) {
			ok = c.valid(p.prefix[m], e)
		} else {
			ok = c.extra(p.rest, e)
		}
		if !ok {
			return false
		}
		e = int(c.t.toks[e].next)
	}
	return true
}

func (c *checker) string(p *plan, i int) bool {
	if p.minLen < 0 && p.maxLen < 0 && p.pattern == nil {
		return true
	}
	var s string
	if c.t.toks[i].escaped {
		var ok bool
		if s, ok = c.t.string(i); !ok {
			c.unsure = true
			return false
		}
	}
	if p.minLen >= 0 || p.maxLen >= 0 {
		n := utf8.RuneCountInString(s)
		if !c.t.toks[i].escaped {
			n = utf8.RuneCount(c.t.text(i))
		}
		if p.minLen >= 0 && n < p.minLen || p.maxLen >= 0 && n > p.maxLen {
			return false
		}
	}
	if p.pattern != nil {
		if c.t.toks[i].escaped {
			return p.pattern.MatchString(s)
		}
		return match(p.pattern, c.t.text(i))
	}
	return true
}

func (c *checker) number(p *plan, i int) bool {
	if !c.within(i, p.minimum, 0, 1) || !c.within(i, p.maximum, -1, 0) ||
		!c.within(i, p.exclusiveMinimum, 1, 1) || !c.within(i, p.exclusiveMaximum, -1, -1) {
		return false
	}
	if m := p.multipleOf; m != nil {
		if n, ok := c.int64(i); ok && m.isInt64 {
			return n%m.i == 0
		}
		r := c.rat(i)
		return r != nil && r.Quo(r, m.rat).IsInt()
	}
	return true
}

// within reports whether the number at token i compares with b (-1, 0 or
// 1) within [lo, hi]; true when there is no b.
func (c *checker) within(i int, b *numBound, lo, hi int) bool {
	if b == nil {
		return true
	}
	d, ok := c.cmp(i, b)
	return ok && lo <= d && d <= hi
}

// Path is a topic's fast path: its schema's plan, and tapes to reuse. It is
// safe for concurrent use.
type Path struct {
	root  *plan
	tapes sync.Pool // *tape
}

// New returns the fast path of s, or nil when s uses what plans do not
// cover.
func New(s *jsonschema.Schema) *Path {
	if testHookNoPath {
		return nil
	}
	return newPath(s)
}

// testHookNoPath, set by this package's tests, makes New return nil, so that
// package topics validates on its general path alone: the reference those
// tests check the fast path against.
var testHookNoPath bool

func newPath(s *jsonschema.Schema) *Path {
	p := compilePlan(s)
	if p == nil {
		return nil
	}
	return &Path{root: p}
}

// Validate reports whether data is certainly valid and, when it is, returns
// its ordering key: the string or integer at the JSON pointer key, or "" if
// there is none. With keyChecked, data without a key is not certainly valid
// (the general path then explains). False says nothing about data: the
// general path decides.
func (f *Path) Validate(data []byte, key string, keyChecked bool) (string, bool) {
	t, _ := f.tapes.Get().(*tape)
	if t == nil {
		t = &tape{}
	}
	defer func() {
		// Keep no reference to the data, nor a tape grown by a large event.
		*t = tape{toks: t.toks[:0]}
		if cap(t.toks) <= tapeKeepMax {
			f.tapes.Put(t)
		}
	}()
	t.data = data
	if !t.parse() || t.toks[0].kind != tokObject || t.toks[0].n == 0 {
		return "", false
	}
	c := checker{t: t}
	if !c.valid(f.root, 0) || c.unsure {
		return "", false
	}
	k, ok := t.keyAt(key)
	if !ok && keyChecked {
		return "", false
	}
	return k, true
}

// tapeKeepMax is the most tokens of a tape kept for reuse.
const tapeKeepMax = 4096

// keyAt is the general path's key rule on a tape: the string or integer at
// the JSON pointer ptr.
func (t *tape) keyAt(ptr string) (string, bool) {
	i := 0
	for len(ptr) > 0 {
		if t.toks[i].kind != tokObject {
			return "", false
		}
		var tok string
		tok, ptr = jsonrule.NextToken(ptr)
		if i = t.named(i, tok); i < 0 {
			return "", false
		}
	}
	switch t.toks[i].kind {
	case tokString:
		return t.string(i)
	case tokNumber:
		return jsonrule.IntegerText(json.Number(t.text(i)))
	}
	return "", false
}
