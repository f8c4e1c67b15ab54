package outboxtest

import (
	"strings"
	"testing"
)

func TestSubset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, got, want string
		reason          string // "" when got contains want
	}{
		{"empty object", `{"id": "inv-1"}`, `{}`, ""},
		{"member", `{"id": "inv-1", "status": "open"}`, `{"status": "open"}`, ""},
		{"nested", `{"customer": {"id": "cus-7", "name": "Ada"}}`, `{"customer": {"name": "Ada"}}`, ""},
		{"number by value", `{"n": 1250}`, `{"n": 1.25e3}`, ""},
		{"decimal", `{"n": 0.1}`, `{"n": 0.10}`, ""},
		{"large integers exactly", `{"n": 12345678901234567890}`, `{"n": 12345678901234567891}`,
			"data/n is 12345678901234567890, want 12345678901234567891"},
		{"number is not a string", `{"n": 1250}`, `{"n": "1250"}`, `data/n is 1250, want "1250"`},
		{"bool", `{"b": true}`, `{"b": false}`, "data/b is true, want false"},
		{"null present", `{"x": null}`, `{"x": null}`, ""},
		{"null missing", `{}`, `{"x": null}`, "data/x is missing, want null"},
		{"missing first in key order", `{}`, `{"b": 1, "a": 2}`, "data/a is missing, want 2"},
		{"wrong type", `{"customer": "cus-7"}`, `{"customer": {"id": "cus-7"}}`, `data/customer is "cus-7", want {"id":"cus-7"}`},
		{"array elements", `{"l": [{"a": 1, "b": 2}, {"a": 3}]}`, `{"l": [{"a": 1}, {"a": 3}]}`, ""},
		{"array element differs", `{"l": [{"a": 1}, {"a": 3}]}`, `{"l": [{"a": 1}, {"a": 4}]}`, "data/l/1/a is 3, want 4"},
		{"array length", `{"l": [1, 2, 3]}`, `{"l": [1, 2]}`, "data/l has 3 elements, want 2: [1,2]"},
		{"pointer escaping", `{"a/b": {"c~d": 1}}`, `{"a/b": {"c~d": 2}}`, "data/a~1b/c~0d is 1, want 2"},
		{"top-level", `"x"`, `{}`, `data is "x", want {}`},
		{"long values trimmed", `{"s": "` + strings.Repeat("x", 200) + `"}`, `{"s": "y"}`, `data/s is "` + strings.Repeat("x", 119) + `…, want "y"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decode([]byte(tt.got))
			if err != nil {
				t.Fatal(err)
			}
			want, err := decode([]byte(tt.want))
			if err != nil {
				t.Fatal(err)
			}
			if reason := subset(got, want, "data"); reason != tt.reason {
				t.Errorf("subset(%s, %s)\n got  %q\n want %q", tt.got, tt.want, reason, tt.reason)
			}
		})
	}
}
