// Package topicsdiff compares two versions of a topic definitions file and
// reports the changes that break the catalog's contract, for a CI check
// before a changed file ships.
//
// A change is breaking when events valid under the old file may be refused
// under the new one, or consumers written against the old file may miss
// what they relied on:
//
//   - a topic removed;
//   - a topic's ordering Key changed;
//   - a property removed that was required;
//   - a property newly required (also in a new object that is required);
//   - a type narrowed: a type of the old "type" missing from the new one
//     (integer stays within number), or "type" added;
//   - an enum added, or a value removed from one;
//   - a const added or changed;
//   - additionalProperties: false added (or any schema where there was none);
//   - a bound tightened: minimum, exclusiveMinimum, minLength, minItems,
//     minProperties raised (or added); maximum, exclusiveMaximum, maxLength,
//     maxItems, maxProperties lowered (or added); multipleOf added or changed;
//   - a pattern added or changed.
//
// Everything else that changes is reported as information: a topic added, a
// property added (optional) or removed (optional), a type widened, an enum
// value added, a bound loosened, a pattern, enum, const or
// additionalProperties removed, a format, Version, Poison or Description
// changed. Properties, items, additionalProperties and $defs are compared
// recursively; keywords such as allOf or oneOf are compared as a whole
// (a change to them is breaking).
//
// Every change names a file and line: the new file's, or the old file's for
// something removed.
package topicsdiff

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/txoutbox/txoutbox/topics"
)

// Change is one difference between the old and the new file.
type Change struct {
	Breaking bool
	Topic    string // the topic's name, e.g. billing.InvoiceCreated
	Path     string // JSON pointer into the topic's schema; "" for the topic itself
	Msg      string
	File     string // the new file, or the old one for a removal
	Line     int    // 0 when unknown
}

func (c Change) String() string {
	kind := "info"
	if c.Breaking {
		kind = "breaking"
	}
	where := c.File
	if c.Line > 0 {
		where = fmt.Sprintf("%s:%d", c.File, c.Line)
	}
	what := c.Topic
	if c.Path != "" {
		what += " " + c.Path
	}
	return fmt.Sprintf("%s: %s: %s: %s", where, kind, what, c.Msg)
}

// HasBreaking reports whether any of changes is breaking.
func HasBreaking(changes []Change) bool {
	return slices.ContainsFunc(changes, func(c Change) bool { return c.Breaking })
}

// Diff parses both files (an error when either does not load, as a
// *topics.LoadError) and returns their differences, breaking ones first,
// each in file order.
func Diff(oldFile string, oldData []byte, newFile string, newData []byte) ([]Change, error) {
	oldReg, err := topics.Parse(oldFile, oldData)
	if err != nil {
		return nil, fmt.Errorf("old file: %w", err)
	}
	newReg, err := topics.Parse(newFile, newData)
	if err != nil {
		return nil, fmt.Errorf("new file: %w", err)
	}
	d := &differ{oldPos: newLocator(oldData), newPos: newLocator(newData)}
	for _, o := range oldReg.Topics() {
		n, ok := newReg.Topic(o.Name)
		if !ok {
			d.add(true, o, nil, "", "topic removed")
			continue
		}
		d.topic(o, n)
	}
	for _, n := range newReg.Topics() {
		if _, ok := oldReg.Topic(n.Name); !ok {
			d.add(false, nil, n, "", "topic added")
		}
	}
	slices.SortStableFunc(d.changes, func(a, b Change) int {
		if a.Breaking != b.Breaking {
			if a.Breaking {
				return -1
			}
			return 1
		}
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	return d.changes, nil
}

type differ struct {
	oldPos, newPos *locator
	changes        []Change
}

// add records a change at path of topic n (or of o when n is nil: a
// removal).
func (d *differ) add(breaking bool, o, n *topics.Topic, path, msg string) {
	c := Change{Breaking: breaking, Path: path, Msg: msg}
	switch {
	case n != nil:
		c.Topic, c.File, c.Line = n.Name, n.File, d.newPos.line(n.Line, path)
	default:
		c.Topic, c.File, c.Line = o.Name, o.File, d.oldPos.line(o.Line, path)
	}
	d.changes = append(d.changes, c)
}

func (d *differ) topic(o, n *topics.Topic) {
	if o.Key != n.Key {
		d.add(true, o, n, "", fmt.Sprintf("ordering Key changed from %s to %s", o.Key, n.Key))
	}
	if o.Version != n.Version {
		d.add(false, o, n, "", fmt.Sprintf("Version changed from %d to %d", o.Version, n.Version))
	}
	if o.Poison != n.Poison {
		d.add(false, o, n, "", fmt.Sprintf("Poison changed from %q to %q", o.Poison, n.Poison))
	}
	if o.Description != n.Description {
		d.add(false, o, n, "", "Description changed")
	}
	d.schema(o, n, "", o.Schema, n.Schema)
}

// schema compares the schemas os and ns at path.
func (d *differ) schema(ot, nt *topics.Topic, path string, os, ns map[string]any) {
	breaking := func(path, msg string) { d.add(true, ot, nt, path, msg) }
	info := func(path, msg string) { d.add(false, ot, nt, path, msg) }

	// type
	oldTypes, newTypes := types(os["type"]), types(ns["type"])
	switch {
	case oldTypes == nil && newTypes != nil:
		breaking(path, fmt.Sprintf("type %s added", strings.Join(newTypes, ", ")))
	case oldTypes != nil && newTypes == nil:
		info(path, "type removed")
	case oldTypes != nil:
		for _, t := range oldTypes {
			if !slices.Contains(newTypes, t) && (t != "integer" || !slices.Contains(newTypes, "number")) {
				breaking(path, fmt.Sprintf("type narrowed from %s to %s", strings.Join(oldTypes, ", "), strings.Join(newTypes, ", ")))
				break
			}
		}
		if !slices.Equal(oldTypes, newTypes) && !d.lastIs(path, "type narrowed") {
			info(path, fmt.Sprintf("type widened from %s to %s", strings.Join(oldTypes, ", "), strings.Join(newTypes, ", ")))
		}
	}

	// enum and const
	oe, oOK := os["enum"].([]any)
	ne, nOK := ns["enum"].([]any)
	switch {
	case !oOK && nOK:
		breaking(path+"/enum", "enum added: only "+list(ne)+" allowed")
	case oOK && !nOK:
		info(path, "enum removed")
	case oOK:
		var removed, added []any
		for _, v := range oe {
			if !containsJSON(ne, v) {
				removed = append(removed, v)
			}
		}
		for _, v := range ne {
			if !containsJSON(oe, v) {
				added = append(added, v)
			}
		}
		if len(removed) > 0 {
			breaking(path+"/enum", "enum values removed: "+list(removed))
		}
		if len(added) > 0 {
			info(path+"/enum", "enum values added: "+list(added))
		}
	}
	oc, oHas := os["const"]
	nc, nHas := ns["const"]
	switch {
	case nHas && (!oHas || !equalJSON(oc, nc)):
		breaking(path+"/const", "const added or changed to "+list([]any{nc}))
	case oHas && !nHas:
		info(path, "const removed")
	}

	// bounds
	for _, k := range []string{"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"} {
		d.bound(ot, nt, path, k, os[k], ns[k], 1)
	}
	for _, k := range []string{"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"} {
		d.bound(ot, nt, path, k, os[k], ns[k], -1)
	}
	for _, k := range []string{"multipleOf", "pattern"} {
		ov, oHas := os[k]
		nv, nHas := ns[k]
		switch {
		case nHas && (!oHas || !equalJSON(ov, nv)):
			breaking(path+"/"+k, k+" added or changed to "+list([]any{nv}))
		case oHas && !nHas:
			info(path, k+" removed")
		}
	}
	if of, nf := os["format"], ns["format"]; !equalJSON(of, nf) {
		info(path, fmt.Sprintf("format changed from %v to %v", cmp.Or(of, any("none")), cmp.Or(nf, any("none"))))
	}

	// required and properties
	oldReq, newReq := strings_(os["required"]), strings_(ns["required"])
	oldProps, _ := os["properties"].(map[string]any)
	newProps, _ := ns["properties"].(map[string]any)
	for _, name := range sortedKeys(oldProps) {
		p := path + "/properties/" + escape(name)
		np, ok := newProps[name]
		switch {
		case !ok && slices.Contains(oldReq, name):
			d.add(true, ot, nil, p, "required property removed")
		case !ok:
			d.add(false, ot, nil, p, "optional property removed")
		default:
			d.sub(ot, nt, p, oldProps[name], np)
		}
	}
	for _, name := range sortedKeys(newProps) {
		if _, ok := oldProps[name]; !ok && !slices.Contains(newReq, name) {
			info(path+"/properties/"+escape(name), "optional property added")
		}
	}
	for _, name := range newReq {
		if !slices.Contains(oldReq, name) {
			msg := "property newly required: "
			if _, ok := oldProps[name]; !ok {
				msg = "required property added: "
			}
			breaking(path+"/required", msg+name)
		}
	}
	for _, name := range oldReq {
		if !slices.Contains(newReq, name) {
			if _, ok := newProps[name]; ok {
				info(path+"/required", "property no longer required: "+name)
			}
		}
	}

	// additionalProperties, items, $defs
	oa, oHasA := os["additionalProperties"]
	na, nHasA := ns["additionalProperties"]
	switch {
	case nHasA && na == false && (!oHasA || oa != false):
		breaking(path+"/additionalProperties", "additionalProperties: false added: no other properties allowed")
	case oHasA && oa == false && (!nHasA || na != false):
		info(path, "additionalProperties: false removed")
	case oHasA || nHasA:
		d.sub(ot, nt, path+"/additionalProperties", oa, na)
	}
	d.sub(ot, nt, path+"/items", os["items"], ns["items"])
	oldDefs, _ := os["$defs"].(map[string]any)
	newDefs, _ := ns["$defs"].(map[string]any)
	for _, name := range sortedKeys(oldDefs) {
		d.sub(ot, nt, path+"/$defs/"+escape(name), oldDefs[name], newDefs[name])
	}

	// everything else as a whole
	skip := []string{"type", "enum", "const", "minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties",
		"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "multipleOf", "pattern", "format",
		"required", "properties", "additionalProperties", "items", "$defs",
		"description", "title", "examples", "default", "$comment", "deprecated", "$schema"}
	for _, k := range sortedKeys(mergeKeys(os, ns)) {
		if slices.Contains(skip, k) {
			continue
		}
		if !equalJSON(os[k], ns[k]) {
			breaking(path+"/"+escape(k), k+" changed")
		}
	}
}

// sub compares two subschemas; a missing or boolean one is compared as a
// whole.
func (d *differ) sub(ot, nt *topics.Topic, path string, o, n any) {
	om, oOK := o.(map[string]any)
	nm, nOK := n.(map[string]any)
	switch {
	case oOK && nOK:
		d.schema(ot, nt, path, om, nm)
	case o == nil && n == nil:
	case equalJSON(o, n):
	case o == nil || o == true:
		d.add(true, ot, nt, path, "schema added")
	case n == nil || n == true:
		d.add(false, ot, nt, path, "schema removed")
	default:
		d.add(true, ot, nt, path, "schema changed")
	}
}

// bound compares a numeric bound k; dir 1 means a higher value is
// tighter (a minimum), -1 a lower one (a maximum).
func (d *differ) bound(ot, nt *topics.Topic, path, k string, o, n any, dir int) {
	ov, oOK := number(o)
	nv, nOK := number(n)
	switch {
	case !oOK && !nOK:
	case !oOK:
		d.add(true, ot, nt, path+"/"+k, fmt.Sprintf("%s %s added", k, nv.RatString()))
	case !nOK:
		d.add(false, ot, nt, path, k+" removed")
	case ov.Cmp(nv)*dir < 0:
		d.add(true, ot, nt, path+"/"+k, fmt.Sprintf("%s tightened from %s to %s", k, ov.RatString(), nv.RatString()))
	case ov.Cmp(nv) != 0:
		d.add(false, ot, nt, path+"/"+k, fmt.Sprintf("%s loosened from %s to %s", k, ov.RatString(), nv.RatString()))
	}
}

func (d *differ) lastIs(path, prefix string) bool {
	if len(d.changes) == 0 {
		return false
	}
	c := d.changes[len(d.changes)-1]
	return c.Path == path && strings.HasPrefix(c.Msg, prefix)
}

func number(v any) (*big.Rat, bool) {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case float64:
		s = fmt.Sprint(v)
	case int, int64:
		s = fmt.Sprint(v)
	default:
		return nil, false
	}
	r, ok := new(big.Rat).SetString(s)
	return r, ok
}

func types(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		s := strings_(v)
		slices.Sort(s)
		return s
	}
	return nil
}

func strings_(v any) []string {
	a, _ := v.([]any)
	var s []string
	for _, x := range a {
		if str, ok := x.(string); ok {
			s = append(s, str)
		}
	}
	return s
}

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb) || reflect.DeepEqual(a, b)
}

func containsJSON(vs []any, v any) bool {
	return slices.ContainsFunc(vs, func(x any) bool { return equalJSON(x, v) })
}

func list(vs []any) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		b, _ := json.Marshal(v)
		s[i] = string(b)
	}
	return strings.Join(s, ", ")
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func mergeKeys(a, b map[string]any) map[string]any {
	m := make(map[string]any, len(a)+len(b))
	for k := range a {
		m[k] = nil
	}
	for k := range b {
		m[k] = nil
	}
	return m
}

// escape escapes a JSON pointer token.
func escape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// locator finds the line of a schema location in a definitions file.
type locator struct {
	topics map[int]*yaml.Node // a topic's mapping node by its line
}

func newLocator(data []byte) *locator {
	l := &locator{topics: map[int]*yaml.Node{}}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return l
	}
	if ts := value(doc.Content[0], "Topics"); ts != nil && ts.Kind == yaml.SequenceNode {
		for _, t := range ts.Content {
			t = deref(t)
			l.topics[t.Line] = t
		}
	}
	return l
}

// line returns the line of path (a JSON pointer into the schema) in the
// topic at topicLine: the deepest node of the path the file spells out.
func (l *locator) line(topicLine int, path string) int {
	n := l.topics[topicLine]
	if n == nil {
		return topicLine
	}
	line := n.Line
	k, n := entry(n, "Schema")
	if n == nil || path == "" {
		return line
	}
	line = k.Line
	for _, tok := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		if k, n = entry(n, tok); n == nil {
			break
		}
		line = k.Line
	}
	return line
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// value returns the value of key in mapping n, or nil.
func value(n *yaml.Node, key string) *yaml.Node {
	_, v := entry(n, key)
	return v
}

// entry returns the key node and the value of key in mapping n, or nils.
func entry(n *yaml.Node, key string) (k, v *yaml.Node) {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], deref(n.Content[i+1])
		}
	}
	return nil, nil
}
