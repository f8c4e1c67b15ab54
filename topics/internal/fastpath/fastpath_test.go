package fastpath_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/txoutbox/txoutbox/topics"
	"github.com/txoutbox/txoutbox/topics/internal/fastpath"
)

// fastDocs are documents for every topic of testdata/keywords.yaml and the
// example definitions, valid for some and invalid for others.
var fastDocs = []string{
	// types
	`{"n":1,"s":"x","b":true,"num":1.5,"a":[],"o":{},"i":2}`,
	`{"n":null}`, `{"n":1.0}`, `{"n":1.5}`, `{"n":1e2}`, `{"n":-0}`, `{"n":"1"}`,
	`{"i":1E2}`, `{"i":12345678901234567890}`, `{"i":1.25e1}`, `{"i":-1.0e-0}`,
	`{"s":1}`, `{"b":"true"}`, `{"num":"1"}`, `{"a":{}}`, `{"o":[]}`,
	// enum and const
	`{"e":"a"}`, `{"e":1}`, `{"e":1.0}`, `{"e":10e-1}`, `{"e":2.5}`, `{"e":25e-1}`, `{"e":true}`,
	`{"e":false}`, `{"e":null}`, `{"e":"é"}`, `{"e":"\u00e9"}`, `{"e":"b"}`, `{"e":{}}`, `{"e":[]}`,
	`{"x":{"x":1}}`, `{"x":[1]}`, `{"x":"b"}`, `{"x":{"x":2}}`, `{"x":"\u0062"}`,
	`{"c":10}`, `{"c":10.0}`, `{"c":1e1}`, `{"c":"10"}`, `{"z":"a\"b"}`, `{"z":"a\u0022b"}`, `{"z":"ab"}`,
	`{"f":false}`, `{"f":0}`,
	// numbers
	`{"r":0.5}`, `{"r":0.49}`, `{"r":1000}`, `{"r":1e3}`, `{"r":1000.0001}`, `{"r":"x"}`,
	`{"x":-1}`, `{"x":-0.999}`, `{"x":100.5}`, `{"x":100.4999}`,
	`{"m":0.75}`, `{"m":0.3}`, `{"m":5}`, `{"m":-1.25e1}`,
	`{"i":9}`, `{"i":-9}`, `{"i":10}`, `{"i":9223372036854775807}`, `{"i":9223372036854775808}`,
	`{"i":-9223372036854775808}`, `{"i":-9223372036854775809}`, `{"i":999999999999999999}`,
	`{"big":100000000000000000000}`, `{"big":99999999999999999999}`, `{"big":1e20}`, `{"big":5}`,
	// strings
	`{"s":"ab"}`, `{"s":"a"}`, `{"s":"abcd"}`, `{"s":"abcde"}`, `{"s":"éééé"}`, `{"s":"ééééé"}`,
	`{"s":"\u00e9\u00e9"}`, `{"s":"\n"}`, `{"s":"\\\\"}`,
	`{"p":"abc"}`, `{"p":"abé"}`, `{"p":"ab1"}`, `{"p":"\u0061"}`, `{"p":""}`, `{"q":"abc"}`, `{"q":"a"}`, `{"q":1}`,
	// objects
	`{"id":"x","extra":1}`, `{"id":"x"}`, `{"id":1,"extra":1}`, `{"id":"x","extra":1,"a":1,"b":2,"c":3,"d":4}`,
	`{"id":"x","extra":1,"closed":{"a":1}}`, `{"id":"x","extra":1,"closed":{"a":1,"b":2}}`,
	`{"id":"x","extra":1,"typed":{"n_1":1,"s_1":"x","other":true}}`,
	`{"id":"x","extra":1,"typed":{"n_1":"1"}}`, `{"id":"x","extra":1,"typed":{"other":1}}`,
	// arrays
	`{"pair":["a",1]}`, `{"pair":["a"]}`, `{"pair":["a",1,2]}`, `{"pair":[1,"a"]}`, `{"pair":[]}`,
	`{"ints":[1]}`, `{"ints":[]}`, `{"ints":[1,2,3,4]}`, `{"ints":[1,"2"]}`,
	`{"tail":["head",1,2.5]}`, `{"tail":["tail"]}`, `{"tail":["head","x"]}`,
	// applicators and references
	`{"id":"x","all":3}`, `{"id":"x","all":2}`, `{"id":"x","all":3.5}`,
	`{"id":7,"any":"s"}`, `{"id":"x","any":10}`, `{"id":"x","any":9}`,
	`{"id":"x","one":1}`, `{"id":"x","one":5}`, `{"id":"x","one":5.5}`, `{"id":"x","one":"s"}`,
	`{"id":"x","neg":1}`, `{"id":"x","neg":"s"}`,
	`{"id":"x","cond":"abc"}`, `{"id":"x","cond":"ab"}`, `{"id":"x","cond":1}`, `{"id":"x","cond":true}`,
	`{"id":"x","tree":{"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4}]}]}}`,
	`{"id":"x","tree":{"v":1,"kids":[{"v":2},{"v":3,"kids":[{"w":4}]}]}}`,
	`{"id":"x","both":1}`, `{"id":"x","both":0}`, `{"id":"x","both":1.5}`, `{"id":true}`, `{"id":1.0}`,
	// draft-07
	`{"id":"x","mail":"a@example.com"}`, `{"id":"x","mail":"not mail"}`, `{"day":"2026-02-28"}`,
	`{"day":"2026-02-30"}`, `{"day":20260228}`, `{"hidden":"not an integer"}`,
	`{"tuple":["a",1,true,false]}`, `{"tuple":["a",1,2]}`, `{"tuple":[1]}`,
	`{"closed":["a"]}`, `{"closed":["a","b"]}`, `{"none":[]}`, `{"none":[1]}`,
	// keys
	`{"a":{"b/c":5}}`, `{"a":{"b/c":-0}}`, `{"a":{"b/c":5.0}}`, `{"a":{"b/c":"5"}}`, `{"a":{}}`,
	`{"u":[1,2]}`, `{"u":[1,1]}`,
	// the example definitions
	`{"id":"inv-1","customer":{"id":"cus-1","name":"Ada"},"amount_cents":1250,"currency":"EUR","status":"open","due_date":"2026-12-31"}`,
	`{"id":"inv-1","customer":{"id":"cus-1","name":""},"amount_cents":1250,"currency":"EUR","status":"open","due_date":"2026-12-31"}`,
	`{"id":"pay-1","invoice_id":"inv-7","amount_cents":1}`, `{"id":"pay-1","invoice_id":"inv-7","amount_cents":0}`,
	`{"id":"c","name":"n","email":"e@example.com"}`, `{"id":"inv-1","amount_cents":1,"paid_at":"2026-11-23T10:00:00Z"}`,
	// what the tape leaves to the general path
	` {"id":"x"} `, `{"id":"x","id":"y"}`, `{"\u0069d":"x"}`, `{"id":"x"}{}`, `{}`, `[]`, `"x"`, `{"id":1e401}`,
	`{"id":` + strings.Repeat("9", 401) + `}`, `{"id":"\ud800"}`, `{"id":"x",}`, `{"id" "x"}`, `{"id":01}`,
	`{"id":-}`, `{"id":1.}`, `{"id":.5}`, `{"id":1e}`, `{"id":tru}`, `{"id":"` + "\x01" + `"}`, "{\"id\":\"\xff\"}",
	`{"id":"x"` + strings.Repeat(`,"a":[`, 120) + strings.Repeat(`]`, 120) + `}`,
}

// fastTopic is a topic and the fast path of its schema. In these tests
// package topics gets no fast path of its own (see export_test.go): the
// topic's Validate is the general path.
type fastTopic struct {
	*topics.Topic
	fast *fastpath.Path // nil when the schema has no plan
}

// fastTopics loads the topics the fast path is tested on.
func fastTopics(t testing.TB) []fastTopic {
	t.Helper()
	var all []fastTopic
	for _, file := range []string{"testdata/keywords.yaml", "../../../topic_definitions.yaml",
		"../../testdata/valid/anchors.yaml", "../../testdata/valid/bc_events_style.yaml"} {
		reg, err := topics.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, tp := range reg.Topics() {
			all = append(all, fastTopic{tp, fastpath.Compile(compileTopic(t, tp))})
		}
	}
	return all
}

// compileTopic compiles a topic's schema as package topics does with its
// default options.
func compileTopic(t testing.TB, tp *topics.Topic) *jsonschema.Schema {
	t.Helper()
	b, err := json.Marshal(tp.Schema)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	url := "https://txoutbox.invalid/topics/" + tp.Name + ".json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("%s: %v", tp.Name, err)
	}
	return s
}

// TestFastPathAgrees checks the fast path against the general path on every
// topic and document: whenever the tape takes a document, the plan's answer
// must be the general path's, and whatever the fast path accepts, the
// general path accepts with the same key.
func TestFastPathAgrees(t *testing.T) {
	t.Parallel()
	all := fastTopics(t)
	decided := 0
	for _, tp := range all {
		for _, doc := range fastDocs {
			if fastAgrees(t, tp, []byte(doc)) {
				decided++
			}
		}
	}
	// Most documents are decided on the fast path, the point of having one.
	if total := len(all) * len(fastDocs); decided < total*3/4 {
		t.Errorf("the fast path decided %d of %d (topic, document) pairs", decided, total)
	}
}

// fastAgrees checks one topic and document, and reports whether the fast
// path decided it.
func fastAgrees(t *testing.T, tp fastTopic, data []byte) bool {
	t.Helper()
	wantKey, wantErr := tp.Validate(data)
	if tp.fast == nil {
		return false
	}
	// topics' Validate returns what the fast path accepts, and takes the
	// general path for the rest: the two must agree on what it accepts.
	for _, keyChecked := range []bool{false, true} {
		if key, ok := tp.fast.Validate(data, tp.Key, keyChecked); ok && (wantErr != nil || key != wantKey) {
			t.Fatalf("%s: the fast path accepts %s with key %q (keyChecked=%v); the general path: %q, %v",
				tp.Name, data, key, keyChecked, wantKey, wantErr)
		}
	}
	valid, decided := tp.fast.Decide(data)
	if !decided {
		return false
	}
	if valid != (wantErr == nil) {
		t.Errorf("%s: the plan says valid=%v for %s; the general path: %v", tp.Name, valid, data, wantErr)
	}
	return true
}

func TestFastPathPlans(t *testing.T) {
	t.Parallel()
	for _, tp := range fastTopics(t) {
		if got, want := tp.fast != nil, tp.Name != "fast.KeywordUnplanned"; got != want {
			t.Errorf("%s: has a fast path: %v, want %v", tp.Name, got, want)
		}
	}
	compile := func(schema string) *jsonschema.Schema {
		t.Helper()
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
		if err != nil {
			t.Fatal(err)
		}
		c := jsonschema.NewCompiler()
		c.AssertContent() // topics do not, but a plan must not ignore it
		if err := c.AddResource("s.json", doc); err != nil {
			t.Fatal(err)
		}
		s, err := c.Compile("s.json")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, c := range []struct {
		schema  string
		planned bool
	}{
		{`{"type":"object","properties":{"a":{"$ref":"#"}}}`, true},
		{`{"$defs":{"a":{"allOf":[{"$ref":"#/$defs/b"}]},"b":{"anyOf":[{"$ref":"#/$defs/a"}]}},"$ref":"#/$defs/a"}`, false},
		{`{"not":{"$ref":"#"}}`, false},
		{`{"$dynamicAnchor":"x","properties":{"a":{"$dynamicRef":"#x"}}}`, false},
		{`{"unevaluatedProperties":false}`, false},
		{`{"contains":{"type":"integer"}}`, false},
		{`{"dependentRequired":{"a":["b"]}}`, false},
		{`{"propertyNames":{"maxLength":3}}`, false},
		{`{"contentMediaType":"application/json"}`, false},
	} {
		if got := fastpath.Compile(compile(c.schema)) != nil; got != c.planned {
			t.Errorf("%s: planned %v, want %v", c.schema, got, c.planned)
		}
	}
}

// TestTapeMatchesJSON checks that what the tape parses, encoding/json
// decodes to the same values.
func TestTapeMatchesJSON(t *testing.T) {
	t.Parallel()
	for _, doc := range fastDocs {
		tapeDecodes(t, []byte(doc))
	}
}

func tapeDecodes(t *testing.T, data []byte) {
	t.Helper()
	got, unread, ok := fastpath.Decode(data)
	if !ok {
		return
	}
	want, err := jsonschema.UnmarshalJSON(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("the tape parsed %q, encoding/json: %v", data, err)
	}
	if unread != 0 || !reflect.DeepEqual(got, want) {
		t.Fatalf("the tape read %q as %#v (%d tokens unread), encoding/json as %#v", data, got, unread, want)
	}
}

// FuzzFastPath: the fast path never accepts what the general path refuses,
// and what the tape parses decodes as encoding/json decodes it.
func FuzzFastPath(f *testing.F) {
	for _, doc := range fastDocs {
		f.Add([]byte(doc))
	}
	files, _ := filepath.Glob("../../testdata/events/*.json")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	all := fastTopics(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		tapeDecodes(t, data)
		for _, tp := range all {
			fastAgrees(t, tp, data)
		}
	})
}
