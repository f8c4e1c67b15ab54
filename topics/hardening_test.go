package topics_test

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/txoutbox/txoutbox/topics"
)

// TestParseHostileInput feeds Parse files built to hurt a parser: nesting
// past any sane depth, encodings other than UTF-8, control characters, a
// value as large as the size limit allows. Each is a *LoadError with a
// position (or ErrTooLarge), never a panic or a stack overflow, and no
// message carries a raw control character into a terminal or CI log.
func TestParseHostileInput(t *testing.T) {
	t.Parallel()
	const head = "Version: 1\nDefaultCategory: billing\nTopics: "
	var deepBlock strings.Builder
	deepBlock.WriteString(head + "\n")
	for i := range 2000 {
		deepBlock.WriteString(strings.Repeat(" ", i+1) + "-\n")
	}
	for name, in := range map[string]string{
		"flow nesting 100000 deep":   head + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n",
		"block nesting 2000 deep":    deepBlock.String(),
		"schema nesting 3000 deep":   head + "\n  - {Action: Created, Entity: Invoice, Description: d, Schema: " + strings.Repeat(`{"items":`, 3000) + "{}" + strings.Repeat("}", 3000) + "}\n",
		"UTF-16 with a BOM":          "\xff\xfeV\x00e\x00r\x00s\x00i\x00o\x00n\x00:\x00 \x001\x00\n\x00",
		"NUL in a value":             "Version: 1\nDefaultCategory: bill\x00ing\nTopics: []\n",
		"escape sequence in a value": "Version: 1\nDefaultCategory: \x1b[2Jbilling\nTopics: []\n",
		"escaped control characters": head + "\n  - {Action: \"Cre\\e[31mated\\u0000\", Entity: Invoice, Description: d, Schema: {type: object}}\n",
		"a 3 MiB scalar":             "Version: 1\nDefaultCategory: " + strings.Repeat("a", 3<<20) + "\nTopics: []\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := topics.Parse("hostile.yaml", []byte(in))
			if errors.Is(err, topics.ErrTooLarge) {
				return
			}
			var lerr *topics.LoadError
			if !errors.As(err, &lerr) || len(lerr.Errors) == 0 {
				t.Fatalf("err = %T %v, want *topics.LoadError", err, err)
			}
			for _, d := range lerr.Errors {
				if d.Line < 1 || len(d.Error()) > 4096 || strings.ContainsFunc(d.Error(), unicode.IsControl) {
					t.Errorf("problem without a position, too long to read, or with raw control characters: %.200q", d.Error())
				}
			}
		})
	}
}
