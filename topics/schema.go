package topics

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"gopkg.in/yaml.v3"

	"github.com/txoutbox/txoutbox/topics/internal/jsonrule"
)

// printer renders the validator's messages; English, as the rest of the package.
var printer = message.NewPrinter(language.English)

// schemaBase is the base URL of topic schemas. The .invalid domain never
// resolves, so a relative $ref can never reach the network.
const schemaBase = "https://txoutbox.invalid/topics/"

// schemaURL is the URL each topic's schema is compiled under.
const schemaURL = schemaBase + "schema.json"

// schemaCompiler compiles the schemas of one file.
type schemaCompiler struct {
	formatAssertions bool
}

func newSchemaCompiler(o options) *schemaCompiler {
	return &schemaCompiler{formatAssertions: o.formatAssertions}
}

// compile compiles one topic's schema. Each gets a compiler of its own, so
// that a $ref cannot reach the schema of another topic; the metaschemas
// are shared by all compilers.
func (s *schemaCompiler) compile(doc any) (*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if s.formatAssertions {
		c.AssertFormat()
	}
	c.UseLoader(refusingLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	return c.Compile(schemaURL)
}

// refusingLoader keeps schemas self-contained: loading definitions never
// reads files or the network.
type refusingLoader struct{}

func (refusingLoader) Load(string) (any, error) {
	return nil, errors.New("schemas may only refer to their own parts")
}

var jsonNumberRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

// schemaDepthMax bounds how deeply a schema may nest: compiling one costs
// time quadratic in its depth (0.7 s at 400 levels), and real schemas stay
// far below it.
const schemaDepthMax = 64

// toJSON converts a YAML node into JSON-compatible values: map[string]any,
// []any, string, json.Number, bool and nil. site is the outermost alias the
// node was reached through, nil if none; every node below an alias is
// charged to the expansion budget and a bomb is reported where it is used.
func (p *parser) toJSON(n *yaml.Node, site *yaml.Node, depth int) (any, bool) {
	if depth > schemaDepthMax {
		if !p.tooDeep {
			p.tooDeep = true
			p.errorf(n, "flatten it with $defs and $ref", "schema nested deeper than %d levels", schemaDepthMax)
		}
		return nil, false
	}
	if n.Kind == yaml.AliasNode {
		if site == nil {
			site = n
		}
		if n = p.resolveAt(n, site); n == nil {
			return nil, false
		}
	}
	if site != nil && !p.charge(site, 1) {
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		es, ok := p.entries(n)
		obj := make(map[string]any, len(es))
		for _, e := range es {
			v, vok := p.toJSON(e.value, cmp.Or(site, e.via), depth+1)
			ok = ok && vok
			obj[e.key.Value] = v
			if p.bombed {
				return nil, false
			}
		}
		return obj, ok
	case yaml.SequenceNode:
		arr := make([]any, len(n.Content))
		ok := true
		for i, c := range n.Content {
			var cok bool
			arr[i], cok = p.toJSON(c, site, depth+1)
			ok = ok && cok
			if p.bombed {
				return nil, false
			}
		}
		return arr, ok
	case yaml.ScalarNode:
		return p.scalar(n)
	}
	p.errorf(n, "", "unexpected YAML node")
	return nil, false
}

func (p *parser) scalar(n *yaml.Node) (any, bool) {
	switch tag := n.ShortTag(); tag {
	case "!!str":
		if !p.unambiguous(n) {
			return nil, false
		}
		return n.Value, true
	case "!!timestamp", "!!binary":
		return n.Value, true
	case "!!null":
		return nil, true
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			p.errorf(n, "", "invalid boolean %q", n.Value)
			return nil, false
		}
		return b, true
	case "!!int", "!!float":
		num, ok := yamlNumber(n)
		if !ok {
			p.errorf(n, "JSON has no NaN or infinity", "%s is not a JSON number", n.Value)
			return nil, false
		}
		if problem := jsonrule.NumberProblem(num); problem != "" {
			p.errorf(n, "", "number %s %s", n.Value, problem)
			return nil, false
		}
		return json.Number(num), true
	default:
		p.errorf(n, "schemas hold plain YAML: strings, numbers, booleans, null, lists and mappings",
			"unsupported YAML tag %s", n.Tag)
		return nil, false
	}
}

// yaml11Bools are the plain scalars YAML 1.1, and so the Python client's
// loader, reads as booleans, while YAML 1.2 and this package read strings.
var yaml11Bools = map[string]string{
	"yes": "true", "Yes": "true", "YES": "true", "on": "true", "On": "true", "ON": "true",
	"no": "false", "No": "false", "NO": "false", "off": "false", "Off": "false", "OFF": "false",
}

// unambiguous reports an unquoted string that the Python client would read
// as a boolean: the same file must mean the same thing to both.
func (p *parser) unambiguous(n *yaml.Node) bool {
	b, ok := yaml11Bools[n.Value]
	if !ok || n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return true
	}
	p.errorf(n, fmt.Sprintf("quote it (%q) for a string, or write %s", n.Value, b),
		"unquoted %s is the boolean %s to the Python client but a string here", n.Value, b)
	return false
}

// yamlNumber returns the JSON text of a YAML number, keeping the written
// digits when they already are JSON so that 0.1 stays exactly 0.1.
func yamlNumber(n *yaml.Node) (string, bool) {
	if jsonNumberRE.MatchString(n.Value) {
		return n.Value, true
	}
	if n.ShortTag() == "!!int" {
		var i int64
		if n.Decode(&i) == nil {
			return strconv.FormatInt(i, 10), true
		}
		var u uint64
		if n.Decode(&u) == nil {
			return strconv.FormatUint(u, 10), true
		}
		if b, ok := new(big.Int).SetString(n.Value, 0); ok {
			return b.String(), true
		}
	}
	var f float64
	if n.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return "", false
	}
	return strconv.FormatFloat(f, 'g', -1, 64), true
}

// deepCopy copies JSON-compatible values.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}

// Keywords of JSON Schema 2020-12 and draft-07, and annotations common in
// the wild that must not be mistaken for typos.
var (
	subschemaKeywords = []string{"additionalItems", "additionalProperties", "contains", "contentSchema",
		"else", "if", "not", "propertyNames", "then", "unevaluatedItems", "unevaluatedProperties"}
	schemaMapKeywords  = []string{"$defs", "definitions", "dependentSchemas", "patternProperties", "properties"}
	schemaListKeywords = []string{"allOf", "anyOf", "oneOf", "prefixItems"}
	otherKeywords      = []string{"$anchor", "$comment", "$dynamicAnchor", "$dynamicRef", "$id", "$recursiveAnchor",
		"$recursiveRef", "$ref", "$schema", "$vocabulary", "const", "contentEncoding", "contentMediaType",
		"default", "dependencies", "dependentRequired", "deprecated", "description", "enum", "examples",
		"exclusiveMaximum", "exclusiveMinimum", "format", "items", "maxContains", "maximum", "maxItems",
		"maxLength", "maxProperties", "minContains", "minimum", "minItems", "minLength", "minProperties",
		"multipleOf", "pattern", "readOnly", "required", "title", "type", "uniqueItems", "writeOnly"}
	annotationKeywords = []string{"example", "nullable", "discriminator", "externalDocs", "xml"}
	allKeywords        = slices.Concat(subschemaKeywords, schemaMapKeywords, schemaListKeywords, otherKeywords)
	jsonTypes          = []string{"array", "boolean", "integer", "null", "number", "object", "string"}
)

// lintSchema reports what JSON Schema silently accepts but is almost
// certainly a mistake: an unknown keyword that is a near-miss of a real one
// ("requried"), or a property schema written outside "properties". Other
// unknown keywords are annotations and pass.
func (p *parser) lintSchema(root *yaml.Node, v any, path []string) {
	obj, ok := v.(map[string]any)
	if !ok {
		return
	}
	for k, sub := range obj {
		at := append(slices.Clip(path), k)
		switch {
		case slices.Contains(subschemaKeywords, k):
			p.lintSchema(root, sub, at)
		case k == "items":
			if arr, ok := sub.([]any); ok {
				for i, s := range arr {
					p.lintSchema(root, s, append(slices.Clip(at), strconv.Itoa(i)))
				}
			} else {
				p.lintSchema(root, sub, at)
			}
		case slices.Contains(schemaMapKeywords, k):
			if m, ok := sub.(map[string]any); ok {
				for name, s := range m {
					p.lintSchema(root, s, append(slices.Clip(at), name))
				}
			}
		case slices.Contains(schemaListKeywords, k):
			if arr, ok := sub.([]any); ok {
				for i, s := range arr {
					p.lintSchema(root, s, append(slices.Clip(at), strconv.Itoa(i)))
				}
			}
		case slices.Contains(otherKeywords, k), slices.Contains(annotationKeywords, k), strings.HasPrefix(k, "x-"):
		default:
			if s := suggest(k, allKeywords); s != "" {
				p.errorf(locate(root, at, true), fmt.Sprintf("did you mean %q?", s), "unknown JSON Schema keyword %q", k)
			} else if sub == nil {
				// {description: Paid, in cents} reads as description "Paid"
				// and a key "in cents" with no value.
				p.errorf(locate(root, at, true), "in a {...} mapping a comma ends the value before it: quote text that contains commas",
					"unknown JSON Schema keyword %q with no value", k)
			} else if m, ok := sub.(map[string]any); ok && m["type"] != nil {
				p.errorf(locate(root, at, true), "property schemas go under properties:",
					"unknown JSON Schema keyword %q", k)
			}
		}
	}
}

// locate returns the YAML node at path below root (its key node when key is
// true), or the deepest node on the way when the path leaves the YAML.
func locate(root *yaml.Node, path []string, key bool) *yaml.Node {
	n := deref(root)
	for i, tok := range path {
		switch n.Kind {
		case yaml.MappingNode:
			k, v := findKey(n, tok, 0)
			if k == nil {
				return n
			}
			if key && i == len(path)-1 {
				return k
			}
			n = deref(v)
		case yaml.SequenceNode:
			idx, err := strconv.Atoi(tok)
			if err != nil || idx < 0 || idx >= len(n.Content) {
				return n
			}
			n = deref(n.Content[idx])
		default:
			return n
		}
	}
	return n
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// findKey finds a key in a mapping, looking into merged mappings too.
func findKey(m *yaml.Node, name string, depth int) (key, value *yaml.Node) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := deref(m.Content[i])
		if k.Kind != yaml.ScalarNode {
			continue
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, deref(m.Content[i+1]))
		} else if k.Value == name {
			return k, m.Content[i+1]
		}
	}
	if depth > 16 {
		return nil, nil
	}
	for _, mg := range merges {
		cands := []*yaml.Node{mg}
		if mg.Kind == yaml.SequenceNode {
			cands = mg.Content
		}
		for _, c := range cands {
			if c = deref(c); c.Kind == yaml.MappingNode {
				if k, v := findKey(c, name, depth+1); k != nil {
					return k, v
				}
			}
		}
	}
	return nil, nil
}

// keyProblem says why schema does not guarantee a string or an integer at
// the JSON pointer ptr in every valid event, and how to fix it; "" when it
// does. Each step of the path must be a required property of an object.
func keyProblem(schema map[string]any, ptr string) (msg, hint string) {
	toks, err := splitPointer(ptr)
	if err != nil || len(toks) == 0 {
		return "not a JSON pointer to a property", ""
	}
	cur, where := schema, "the data"
	for i, tok := range toks {
		if cur, msg = followRef(schema, cur); msg != "" {
			return msg, "declare the key's path in the topic's schema"
		}
		if i > 0 && cur["type"] != "object" {
			return where + " is not declared type: object", "declare it as an object with the key as a required property"
		}
		req, _ := cur["required"].([]any)
		if !slices.Contains(req, any(tok)) {
			return fmt.Sprintf("%q is not required in %s", tok, where), fmt.Sprintf("add %q to required, so every event has a key", tok)
		}
		props, _ := cur["properties"].(map[string]any)
		next, ok := props[tok].(map[string]any)
		if !ok {
			return fmt.Sprintf("%q has no schema under properties in %s", tok, where), "declare it under properties with type: string or type: integer"
		}
		cur, where = next, pointer(toks[:i+1])
	}
	if cur, msg = followRef(schema, cur); msg != "" {
		return msg, "declare the key's type in the topic's schema"
	}
	if t := cur["type"]; t != "string" && t != "integer" {
		return "the key must have type string or integer", "declare it type: string or type: integer"
	}
	return "", ""
}

// followRef resolves a local "$ref": "#/..." so the key check sees through
// shared definitions.
func followRef(root, s map[string]any) (map[string]any, string) {
	for range 32 {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s, ""
		}
		frag, ok := strings.CutPrefix(ref, "#")
		if !ok {
			return nil, fmt.Sprintf("cannot follow $ref %q", ref)
		}
		frag, err := url.PathUnescape(frag)
		toks, perr := splitPointer(frag)
		if err != nil || perr != nil {
			return nil, fmt.Sprintf("cannot follow $ref %q", ref)
		}
		var v any = root
		for _, tok := range toks {
			m, _ := v.(map[string]any)
			v = m[tok]
		}
		if s, ok = v.(map[string]any); !ok {
			return nil, fmt.Sprintf("cannot follow $ref %q", ref)
		}
	}
	return nil, "$ref chain too long"
}

// schemaCompileError turns what the JSON Schema compiler reports about t's
// schema into positioned problems.
func (p *parser) schemaCompileError(t *Topic, root *yaml.Node, err error) {
	var sve *jsonschema.SchemaValidationError
	var ve *jsonschema.ValidationError
	if errors.As(err, &sve) && errors.As(sve.Err, &ve) {
		seen := map[string]bool{}
		for _, leaf := range leaves(ve) {
			loc := pointer(leaf.InstanceLocation)
			if seen[loc] {
				continue
			}
			seen[loc] = true
			n := locate(root, leaf.InstanceLocation, false)
			hint := ""
			last := ""
			if l := leaf.InstanceLocation; len(l) > 0 {
				last = l[len(l)-1]
			}
			switch {
			case last == "type" && n.Kind == yaml.ScalarNode:
				if s := suggest(n.Value, jsonTypes); s != "" {
					hint = fmt.Sprintf("did you mean %q?", s)
				}
			case last == "pattern" || slices.Contains(leaf.InstanceLocation, "patternProperties"):
				hint = re2Hint
			}
			p.errorf(n, hint, "invalid JSON Schema at %s: %s", causePath(loc), leaf.ErrorKind.LocalizedString(printer))
		}
		return
	}
	var rxe *jsonschema.InvalidRegexError
	if errors.As(err, &rxe) {
		p.errorf(locate(root, urlPath(rxe.URL), false), re2Hint,
			"invalid regular expression %q: %v", rxe.Regex, rxe.Err)
		return
	}
	var pnf *jsonschema.JSONPointerNotFoundError
	if errors.As(err, &pnf) {
		_, ptr, _ := strings.Cut(pnf.URL, "#")
		if s, err := url.PathUnescape(ptr); err == nil {
			ptr = s
		}
		p.refError(t, root, pnf.URL, "points at nothing: the topic's schema has no "+ptr)
		return
	}
	var anf *jsonschema.AnchorNotFoundError
	if errors.As(err, &anf) {
		_, anchor, _ := strings.Cut(anf.Reference, "#")
		p.refError(t, root, anf.Reference, fmt.Sprintf("points at nothing: the topic's schema has no $anchor %q", anchor))
		return
	}
	var lue *jsonschema.LoadURLError
	if errors.As(err, &lue) {
		p.refError(t, root, lue.URL, "points outside the topic's schema")
		return
	}
	msg := strings.ReplaceAll(strings.ReplaceAll(err.Error(), schemaURL, ""), schemaBase, "")
	p.errorf(root, "", "invalid JSON Schema: %s", msg)
}

// refError reports the $ref in t's schema that resolves to target, a URL
// the compiler could not resolve, in the words of the file: the $ref as
// written and the topic's name, never the URL the schema is compiled under.
func (p *parser) refError(t *Topic, root *yaml.Node, target, what string) {
	name := t.Name
	if name == "" {
		name = "the topic"
	}
	n, ref := root, strings.TrimPrefix(strings.TrimPrefix(target, schemaURL), schemaBase)
	if path, written, ok := findRef(t.Schema, nil, target); ok {
		n, ref = locate(root, path, false), written
	}
	p.errorf(n, `a $ref is a JSON pointer into the same topic's Schema, e.g. "#/$defs/address"; other topics and files cannot be referred to`,
		"$ref %q in %s %s", ref, name, what)
}

// findRef returns the path to the first $ref or $dynamicRef below v, in
// key order, that resolves to target, and the reference as written. A
// target without a fragment matches every reference into that document.
func findRef(v any, path []string, target string) (at []string, ref string, ok bool) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			at := append(slices.Clip(path), k)
			if s, isStr := v[k].(string); isStr && (k == "$ref" || k == "$dynamicRef") && sameURL(resolveRef(s), target) {
				return at, s, true
			}
			if at, ref, ok := findRef(v[k], at, target); ok {
				return at, ref, true
			}
		}
	case []any:
		for i, e := range v {
			if at, ref, ok := findRef(e, append(slices.Clip(path), strconv.Itoa(i)), target); ok {
				return at, ref, true
			}
		}
	}
	return nil, "", false
}

// resolveRef returns the absolute URL of a reference in a topic's schema,
// "" when it is not a URL.
func resolveRef(ref string) string {
	base, _ := url.Parse(schemaURL)
	u, err := url.Parse(ref)
	if err != nil {
		return ""
	}
	return base.ResolveReference(u).String()
}

// sameURL reports whether the reference u resolves to target; fragments
// are compared unescaped, and not at all when target has none.
func sameURL(u, target string) bool {
	if u == "" {
		return false
	}
	doc, frag, _ := strings.Cut(u, "#")
	tdoc, tfrag, hasFrag := strings.Cut(target, "#")
	if doc != tdoc {
		return false
	}
	if !hasFrag {
		return true
	}
	f, err1 := url.PathUnescape(frag)
	tf, err2 := url.PathUnescape(tfrag)
	return err1 == nil && err2 == nil && f == tf
}

const re2Hint = "patterns use Go's RE2 syntax, which has no lookaround or backreferences"

// leaves returns the innermost errors, the ones that say what is wrong.
func leaves(e *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return []*jsonschema.ValidationError{e}
	}
	var out []*jsonschema.ValidationError
	for _, c := range e.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

// urlPath returns the JSON pointer in a schema URL's fragment as tokens.
func urlPath(u string) []string {
	_, frag, _ := strings.Cut(u, "#")
	frag, err := url.PathUnescape(frag)
	if err != nil {
		return nil
	}
	toks, _ := splitPointer(frag)
	return toks
}
