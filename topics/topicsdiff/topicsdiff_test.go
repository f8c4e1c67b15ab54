package topicsdiff_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/topics"
	"github.com/txoutbox/txoutbox/topics/topicsdiff"
)

// base is the old file of every case; each case edits a copy of it.
const base = `DefaultCategory: billing
Topics:
  - Action: Created
    Entity: Invoice
    Schema:
      type: object
      required: [id, amount]
      properties:
        id: {type: string}
        amount: {type: integer, minimum: 0}
        currency: {type: string, enum: [EUR, USD]}
        note: {type: string}
        lines:
          type: array
          items: {type: object, properties: {sku: {type: string, maxLength: 20}}}
  - Action: Paid
    Entity: Invoice
    Schema: {type: object, properties: {id: {type: string}}}
`

func TestDiff(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		old, new string // replaced in base to make the new file
		want     []string
		breaking bool
	}{
		{"unchanged", "", "", nil, false},
		{"topic removed", "  - Action: Paid\n    Entity: Invoice\n    Schema: {type: object, properties: {id: {type: string}}}\n", "",
			[]string{"old.yaml:16: breaking: billing.InvoicePaid: topic removed"}, true},
		{"topic added", "  - Action: Paid\n", "  - Action: Sent\n    Entity: Invoice\n    Schema: {type: object}\n  - Action: Paid\n",
			[]string{"new.yaml:16: info: billing.InvoiceSent: topic added"}, false},
		{"required property added", "required: [id, amount]", "required: [id, amount, customer]",
			[]string{"new.yaml:7: breaking: billing.InvoiceCreated /required: required property added: customer"}, true},
		{"property newly required", "required: [id, amount]", "required: [id, amount, note]",
			[]string{"new.yaml:7: breaking: billing.InvoiceCreated /required: property newly required: note"}, true},
		{"required property removed", "        amount: {type: integer, minimum: 0}\n", "",
			[]string{"old.yaml:10: breaking: billing.InvoiceCreated /properties/amount: required property removed"}, true},
		{"optional property removed", "        note: {type: string}\n", "",
			[]string{"old.yaml:12: info: billing.InvoiceCreated /properties/note: optional property removed"}, false},
		{"optional property added", "        note: {type: string}\n", "        note: {type: string}\n        memo: {type: string}\n",
			[]string{"new.yaml:13: info: billing.InvoiceCreated /properties/memo: optional property added"}, false},
		{"type narrowed", "amount: {type: integer", "amount: {type: string",
			[]string{"new.yaml:10: breaking: billing.InvoiceCreated /properties/amount: type narrowed from integer to string"}, true},
		{"type widened", "amount: {type: integer", "amount: {type: number",
			[]string{"new.yaml:10: info: billing.InvoiceCreated /properties/amount: type widened from integer to number"}, false},
		{"enum value removed", "enum: [EUR, USD]", "enum: [EUR]",
			[]string{"new.yaml:11: breaking: billing.InvoiceCreated /properties/currency/enum: enum values removed: \"USD\""}, true},
		{"enum value added", "enum: [EUR, USD]", "enum: [EUR, USD, GBP]",
			[]string{"new.yaml:11: info: billing.InvoiceCreated /properties/currency/enum: enum values added: \"GBP\""}, false},
		{"enum added", "note: {type: string}", "note: {type: string, enum: [a]}",
			[]string{"new.yaml:12: breaking: billing.InvoiceCreated /properties/note/enum: enum added: only \"a\" allowed"}, true},
		{"additionalProperties false added", "      required: [id, amount]\n", "      required: [id, amount]\n      additionalProperties: false\n",
			[]string{"new.yaml:8: breaking: billing.InvoiceCreated /additionalProperties: additionalProperties: false added: no other properties allowed"}, true},
		{"minimum raised", "minimum: 0", "minimum: 1",
			[]string{"new.yaml:10: breaking: billing.InvoiceCreated /properties/amount/minimum: minimum tightened from 0 to 1"}, true},
		{"minimum lowered", "minimum: 0", "minimum: -1",
			[]string{"new.yaml:10: info: billing.InvoiceCreated /properties/amount/minimum: minimum loosened from 0 to -1"}, false},
		{"nested maxLength lowered", "maxLength: 20", "maxLength: 10",
			[]string{"new.yaml:15: breaking: billing.InvoiceCreated /properties/lines/items/properties/sku/maxLength: maxLength tightened from 20 to 10"}, true},
		{"pattern added", "id: {type: string}\n        amount", "id: {type: string, pattern: \"^inv-\"}\n        amount",
			[]string{"new.yaml:9: breaking: billing.InvoiceCreated /properties/id/pattern: pattern added or changed to \"^inv-\""}, true},
		{"key changed", "    Entity: Invoice\n", "    Entity: Invoice\n    Key: /amount\n",
			[]string{"new.yaml:3: breaking: billing.InvoiceCreated: ordering Key changed from /id to /amount"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			newFile := base
			if c.old != "" {
				if !strings.Contains(base, c.old) {
					t.Fatalf("base lacks %q", c.old)
				}
				newFile = strings.Replace(base, c.old, c.new, 1)
			}
			changes, err := topicsdiff.Diff("old.yaml", []byte(base), "new.yaml", []byte(newFile))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ch := range changes {
				got = append(got, ch.String())
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			if topicsdiff.HasBreaking(changes) != c.breaking {
				t.Errorf("HasBreaking = %v, want %v", !c.breaking, c.breaking)
			}
		})
	}
}

func TestDiffRefusesInvalidFiles(t *testing.T) {
	t.Parallel()
	_, err := topicsdiff.Diff("old.yaml", []byte(base), "new.yaml", []byte("DefaultCategory: Billing\nTopics: []\n"))
	var lerr *topics.LoadError
	if !errors.As(err, &lerr) || !strings.HasPrefix(err.Error(), "new file: ") {
		t.Errorf("Diff with an invalid new file: %v, want a *topics.LoadError", err)
	}
}
