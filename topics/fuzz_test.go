package topics_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/topics"
)

// addFiles adds the files matching pattern to the seed corpus.
func addFiles(f *testing.F, pattern string) {
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files %s: %v", pattern, err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// FuzzParse: no input makes Parse panic or report a problem without a
// position, and whatever loads can be looked up in every spelling.
func FuzzParse(f *testing.F) {
	addFiles(f, "testdata/invalid/*.yaml")
	addFiles(f, "testdata/valid/*.yaml")
	addFiles(f, "testdata/bcevents/*.yaml")
	addFiles(f, rootDefinitions)
	f.Fuzz(func(t *testing.T, data []byte) {
		reg, err := topics.Parse("fuzz.yaml", data, topics.WithMaxSize(64<<10))
		if err != nil {
			if errors.Is(err, topics.ErrTooLarge) {
				return
			}
			var lerr *topics.LoadError
			if !errors.As(err, &lerr) || len(lerr.Errors) == 0 {
				t.Fatalf("err = %T %v, want *LoadError", err, err)
			}
			for _, d := range lerr.Errors {
				if d.File != "fuzz.yaml" || d.Line < 1 || d.Column < 1 || d.Msg == "" {
					t.Fatalf("problem without position or message: %#v", d)
				}
			}
			return
		}
		ts := reg.Topics()
		if len(ts) == 0 {
			t.Fatal("loaded without topics")
		}
		for _, tp := range ts {
			for _, spelling := range [][3]string{
				{tp.Category, tp.Entity, tp.Action},
				{strings.ToUpper(tp.Category), strings.ToLower(tp.Entity), strings.ToUpper(tp.Action)},
			} {
				if got, err := reg.Lookup(spelling[0], spelling[1], spelling[2]); got != tp || err != nil {
					t.Fatalf("Lookup%q = %v, %v; want %s", spelling, got, err, tp.Name)
				}
			}
			if got, ok := reg.Topic(tp.Name); got != tp || !ok {
				t.Fatalf("Topic(%q) = %v, %v", tp.Name, got, ok)
			}
			if _, err := json.Marshal(tp.Schema); err != nil {
				t.Fatalf("%s: schema is not JSON: %v", tp.Name, err)
			}
			if _, err := tp.Validate([]byte(`{"id":"x"}`)); err != nil {
				var verr *topics.ValidationError
				if !errors.As(err, &verr) {
					t.Fatalf("%s: Validate: %T %v", tp.Name, err, err)
				}
			}
		}
	})
}

// FuzzValidate: no data makes Validate panic; data it accepts is a
// non-empty JSON object, data it rejects gets a ValidationError, and a
// Key the schema guarantees is always found.
func FuzzValidate(f *testing.F) {
	addFiles(f, "testdata/events/*.json")
	var all []*topics.Topic
	for _, file := range []string{rootDefinitions, "testdata/valid/anchors.yaml", "testdata/valid/bc_events_style.yaml"} {
		reg, err := topics.Load(file)
		if err != nil {
			f.Fatal(err)
		}
		all = append(all, reg.Topics()...)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, tp := range all {
			key, err := tp.Validate(data)
			if err != nil {
				var verr *topics.ValidationError
				if !errors.As(err, &verr) || verr.Topic != tp.Name || len(verr.Causes) == 0 ||
					(verr.Path != "" && verr.Path[0] != '/') || key != "" {
					t.Fatalf("%s: Validate = %q, %#v", tp.Name, key, err)
				}
				continue
			}
			var obj map[string]any
			if json.Unmarshal(data, &obj) != nil || len(obj) == 0 {
				t.Fatalf("%s: accepted %q, which is not a non-empty JSON object", tp.Name, data)
			}
			// A declared Key is guaranteed by the schema; its value, which
			// may be the empty string, is the key.
			if v, ok := atPointer(obj, tp.Key); tp.Key != topics.DefaultKey && (!ok || (isString(v) && v != key) || (!isString(v) && key == "")) {
				t.Fatalf("%s: key %q, want the value at %s in accepted %q", tp.Name, key, tp.Key, data)
			}
		}
	})
}

// atPointer returns the value at a JSON pointer of plain tokens (no ~
// escapes, as in the definitions fuzzed here).
func atPointer(doc any, ptr string) (any, bool) {
	for _, tok := range strings.Split(ptr, "/")[1:] {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil, false
		}
		if doc, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return doc, true
}

func isString(v any) bool { _, ok := v.(string); return ok }
