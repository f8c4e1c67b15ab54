package gen

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/txoutbox/txoutbox/topics"
)

// schemaBuilder turns one topic's JSON Schema into Go types, appending their
// declarations to the generator's.
type schemaBuilder struct {
	g        *generator
	topic    *topics.Topic
	schema   map[string]any
	rootName string
	// refs maps a $ref to its Go type; "" while a $ref that gets no name of
	// its own is being built, so that a cycle through it ends in any.
	refs map[string]string
}

// root declares name as the type of the topic's data.
func (b *schemaBuilder) root(name string, doc []string) {
	b.rootName = name
	if d, ok := b.schema["description"].(string); ok {
		doc = append(append(doc, ""), commentLines(d)...)
	}
	if isStruct(b.schema) {
		b.structType(b.schema, name, doc)
		return
	}
	if vals, ok := stringEnum(b.schema); ok {
		b.enumType(name, vals, doc)
		return
	}
	typ, _ := b.expr(b.schema, name+"Value", "the type of "+name)
	if bad := badNames(b.schema); len(bad) > 0 {
		doc = append(doc, "", "It is a map because these properties cannot be Go struct fields: "+strings.Join(bad, ", ")+".")
	}
	b.g.decls = append(b.g.decls, &definedDecl{name: name, typ: typ, doc: doc})
}

// expr returns the Go type of the values s describes, declaring the named
// types it needs; name is the one a new named type gets, what says in its
// doc comment what it is ("the type of Invoice.Customer"). nullable reports
// whether the schema admits null.
func (b *schemaBuilder) expr(v any, name, what string) (typ string, nullable bool) {
	s, ok := v.(map[string]any)
	if !ok {
		return "any", false // true, false or no schema at all
	}
	if ref, ok := s["$ref"].(string); ok {
		return b.ref(ref)
	}
	kind, nullable := kindOf(s)
	switch kind {
	case "string":
		if vals, ok := stringEnum(s); ok {
			tname := b.g.reserve(name)
			b.enumType(tname, vals, []string{tname + " is " + what + "."})
			return tname, nullable
		}
		return "string", nullable
	case "integer":
		return "int64", nullable
	case "number":
		return "float64", nullable
	case "boolean":
		return "bool", nullable
	case "array":
		elem, en := b.expr(s["items"], name+"Item", "an element of "+strings.TrimPrefix(what, "the type of "))
		return "[]" + pointerIf(en, elem), nullable
	case "object":
		if isStruct(s) {
			tname := b.g.reserve(name)
			b.structType(s, tname, []string{tname + " is " + what + "."})
			return tname, nullable
		}
		if ap, ok := s["additionalProperties"].(map[string]any); ok {
			elem, en := b.expr(ap, name+"Value", "a value of "+strings.TrimPrefix(what, "the type of "))
			return "map[string]" + pointerIf(en, elem), nullable
		}
		return "map[string]any", nullable
	}
	return "any", nullable
}

// ref returns the Go type of a local $ref. A reference to an object or a
// string enum is a named type of its own, declared once per schema
// however often it is used, so recursive schemas work.
func (b *schemaBuilder) ref(ref string) (string, bool) {
	target, last, ok := resolveRef(b.schema, ref)
	if !ok {
		return "any", false // anchors and the like: valid, but no type to give
	}
	_, nullable := kindOf(target)
	if typ, ok := b.refs[ref]; ok {
		if typ == "" {
			return "any", false
		}
		return typ, nullable
	}
	name := b.rootName + exported(last)
	what := fmt.Sprintf("%s in the schema of %s", ref, b.topic.Name)
	var doc []string
	if d, ok := target["description"].(string); ok {
		doc = append([]string{""}, commentLines(d)...)
	}
	if isStruct(target) {
		tname := b.g.reserve(name)
		b.refs[ref] = tname
		b.structType(target, tname, append([]string{tname + " is " + what + "."}, doc...))
		return tname, nullable
	}
	if vals, ok := stringEnum(target); ok {
		tname := b.g.reserve(name)
		b.refs[ref] = tname
		b.enumType(tname, vals, append([]string{tname + " is " + what + "."}, doc...))
		return tname, nullable
	}
	b.refs[ref] = ""
	typ, nullable := b.expr(target, name, what)
	b.refs[ref] = typ
	return typ, nullable
}

// resolveRef follows a "#/a/b" reference inside root; last is the final
// token of the pointer ("b"), used to name the type.
func resolveRef(root map[string]any, ref string) (target map[string]any, last string, ok bool) {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, "", false
	}
	frag, err := url.PathUnescape(frag)
	if err != nil {
		return nil, "", false
	}
	if frag == "" {
		return root, "", true
	}
	if !strings.HasPrefix(frag, "/") {
		return nil, "", false
	}
	var v any = root
	for _, tok := range strings.Split(frag[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "", false
		}
		v, last = m[tok], tok
	}
	target, ok = v.(map[string]any)
	return target, last, ok
}

// structType declares a struct for an object schema with properties.
func (b *schemaBuilder) structType(s map[string]any, name string, doc []string) {
	d := &structDecl{name: name, doc: doc}
	b.g.decls = append(b.g.decls, d)
	props, _ := s["properties"].(map[string]any)
	required := requiredOf(s)
	fields := map[string]bool{}
	for _, p := range propertyOrder(s) {
		fname := exported(p)
		if fname == "" {
			fname = "Field"
		}
		for i, base := 2, fname; fields[fname]; i++ {
			fname = base + strconv.Itoa(i)
		}
		fields[fname] = true

		ps, _ := props[p].(map[string]any)
		typ, nullable := b.expr(ps, name+fname, "the type of "+name+"."+fname)
		req := slices.Contains(required, p)
		tag := p
		switch {
		case nilable(typ):
			if !req {
				tag += ",omitempty"
			}
		case !req:
			typ, tag = "*"+typ, tag+",omitempty"
		case nullable:
			typ = "*" + typ
		}
		d.fields = append(d.fields, fieldDecl{name: fname, typ: typ, tag: tag, doc: b.notes(ps)})
	}
}

// enumType declares a string type with a constant per value.
func (b *schemaBuilder) enumType(name string, vals []string, doc []string) {
	d := &enumDecl{name: name, doc: doc}
	b.g.decls = append(b.g.decls, d)
	for i, v := range vals {
		suffix := constSuffix(v)
		switch {
		case v == "":
			suffix = "Empty"
		case suffix == "":
			suffix = "Value" + strconv.Itoa(i+1)
		}
		d.consts = append(d.consts, enumConst{name: b.g.reserve(name + suffix), value: v})
	}
}

// notes is a field's doc comment: the property's description and what its
// Go type cannot say (format, const, enum values of other types than string).
func (b *schemaBuilder) notes(s map[string]any) []string {
	if s == nil {
		return nil
	}
	desc, _ := s["description"].(string)
	if ref, ok := s["$ref"].(string); ok {
		if t, _, ok := resolveRef(b.schema, ref); ok {
			if desc == "" {
				desc, _ = t["description"].(string)
			}
			s = t
		}
	}
	lines := commentLines(desc)
	if f, ok := s["format"].(string); ok {
		note := "Format: " + f + "."
		if f == "date-time" {
			note = "Format: date-time (RFC 3339, e.g. t.Format(time.RFC3339))."
		}
		lines = append(lines, note)
	}
	if c, ok := s["const"]; ok {
		lines = append(lines, "Always "+jsonText(c)+".")
	}
	if e, ok := s["enum"].([]any); ok {
		if _, isString := stringEnum(s); !isString {
			vals := make([]string, len(e))
			for i, v := range e {
				vals[i] = jsonText(v)
			}
			lines = append(lines, "One of "+strings.Join(vals, ", ")+".")
		}
	}
	return lines
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// kindOf returns the JSON type a schema describes ("" when it allows several
// or says nothing) and whether it also allows null.
func kindOf(s map[string]any) (kind string, nullable bool) {
	var types []string
	switch t := s["type"].(type) {
	case string:
		types = []string{t}
	case []any:
		for _, v := range t {
			if v, ok := v.(string); ok {
				types = append(types, v)
			}
		}
	}
	if i := slices.Index(types, "null"); i >= 0 {
		nullable = true
		types = slices.Delete(types, i, i+1)
	}
	if e, ok := s["enum"].([]any); ok && slices.Contains(e, nil) {
		nullable = true
	}
	switch {
	case len(types) == 1:
		return types[0], nullable
	case len(types) == 2 && slices.Contains(types, "integer") && slices.Contains(types, "number"):
		return "number", nullable
	case len(types) > 1:
		return "", nullable
	}
	if _, ok := stringEnum(s); ok {
		return "string", nullable
	}
	if _, ok := s["const"].(string); ok {
		return "string", nullable
	}
	for _, k := range []string{"properties", "required", "additionalProperties"} {
		if _, ok := s[k]; ok {
			return "object", nullable
		}
	}
	if _, ok := s["items"]; ok {
		return "array", nullable
	}
	return "", nullable
}

// stringEnum returns the values of an enum whose values are all strings
// (null aside), without repeats.
func stringEnum(s map[string]any) ([]string, bool) {
	e, ok := s["enum"].([]any)
	if !ok {
		return nil, false
	}
	var vals []string
	for _, v := range e {
		switch v := v.(type) {
		case nil:
		case string:
			if !slices.Contains(vals, v) {
				vals = append(vals, v)
			}
		default:
			return nil, false
		}
	}
	return vals, len(vals) > 0
}

// isStruct reports whether an object schema becomes a struct: it names
// properties, all of which can be JSON struct tags.
func isStruct(s map[string]any) bool {
	if k, _ := kindOf(s); k != "object" {
		return false
	}
	props, _ := s["properties"].(map[string]any)
	return (len(props) > 0 || len(requiredOf(s)) > 0) && len(badNames(s)) == 0
}

// badNames returns the quoted property names of s, sorted, that cannot be
// JSON struct tags.
func badNames(s map[string]any) []string {
	props, _ := s["properties"].(map[string]any)
	names := requiredOf(s)
	for p := range props {
		if !slices.Contains(names, p) {
			names = append(names, p)
		}
	}
	var bad []string
	for _, p := range names {
		if !validTag(p) {
			bad = append(bad, strconv.Quote(p))
		}
	}
	slices.Sort(bad)
	return bad
}

// propertyOrder lists an object schema's properties as the generated code
// and the docs show them: the required ones in the order of the required
// list, then the others by name.
func propertyOrder(s map[string]any) []string {
	props, _ := s["properties"].(map[string]any)
	order := requiredOf(s)
	var optional []string
	for p := range props {
		if !slices.Contains(order, p) {
			optional = append(optional, p)
		}
	}
	slices.Sort(optional)
	return append(order, optional...)
}

func requiredOf(s map[string]any) []string {
	r, _ := s["required"].([]any)
	var out []string
	for _, v := range r {
		if v, ok := v.(string); ok && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func nilable(typ string) bool {
	return typ == "any" || strings.HasPrefix(typ, "[]") || strings.HasPrefix(typ, "map[")
}

func pointerIf(nullable bool, typ string) string {
	if nullable && !nilable(typ) {
		return "*" + typ
	}
	return typ
}
