package topics_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/topics"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	reg := loadRoot(t)
	created := lookup(t, reg, "", "Invoice", "Created")
	const valid = `{"id":"inv-1","customer":{"id":"cus-1","name":"Ada"},"amount_cents":1250,"currency":"EUR","status":"open","due_date":"2026-12-31"}`
	if key, err := created.Validate([]byte(valid)); key != "inv-1" || err != nil {
		t.Fatalf("Validate(valid) = %q, %v", key, err)
	}

	cases := []struct {
		name, data, path, msg string
		causes                []string // nil: only the first failure
	}{
		{"wrong type", strings.Replace(valid, `1250`, `"1250"`, 1), "/amount_cents", "got string, want integer", nil},
		{"nested", strings.Replace(valid, `"name":"Ada"`, `"name":7`, 1), "/customer/name", "got number, want string", nil},
		{"enum", strings.Replace(valid, `"EUR"`, `"XBT"`, 1), "/currency", "value must be one of 'EUR', 'GBP', 'USD'", nil},
		{"minimum", strings.Replace(valid, `1250`, `-1`, 1), "/amount_cents", "minimum: got -1, want 0", nil},
		{"missing", `{"id":"inv-1"}`, "", "missing properties 'customer', 'amount_cents', 'currency', 'status', 'due_date'", nil},
		{"all failures", `{"id":1,"customer":{"id":"c"},"amount_cents":1.5,"currency":"EUR","status":"open","due_date":"d"}`,
			"/amount_cents", "got number, want integer", []string{
				"/amount_cents: got number, want integer",
				"/customer: missing property 'name'",
				"/id: got number, want string",
			}},
		// The envelope rules of the events API.
		{"array", `[1]`, "", "data must be a JSON object, got array", nil},
		{"string", `"x"`, "", "data must be a JSON object, got string", nil},
		{"null", `null`, "", "data must be a JSON object, got null", nil},
		{"empty object", `{}`, "", "data must have at least one property", nil},
		{"invalid JSON", `{"id":`, "", "invalid JSON: unexpected EOF", nil},
		{"trailing data", valid + `{}`, "", "invalid JSON: invalid character after top-level value", nil},
		{"empty", ``, "", "invalid JSON: EOF", nil},
		{"not UTF-8", "{\"id\":\"\xff\"}", "", "invalid JSON: not valid UTF-8", nil},
		{"huge exponent", strings.Replace(valid, `1250`, `1e1000000`, 1), "/amount_cents", "number has an exponent beyond ±400", nil},
		{"long number", strings.Replace(valid, `1250`, strings.Repeat("9", 500), 1), "/amount_cents", "number has more than 400 digits", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			key, err := created.Validate([]byte(c.data))
			var verr *topics.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("Validate = %q, %v; want *ValidationError", key, err)
			}
			if key != "" {
				t.Errorf("key = %q for invalid data", key)
			}
			if verr.Topic != "billing.InvoiceCreated" || verr.Category != "billing" || verr.Entity != "Invoice" || verr.Action != "Created" {
				t.Errorf("error names %s (%s, %s, %s)", verr.Topic, verr.Category, verr.Entity, verr.Action)
			}
			if verr.Path != c.path || verr.Msg != c.msg {
				t.Errorf("Path, Msg = %q, %q; want %q, %q", verr.Path, verr.Msg, c.path, c.msg)
			}
			if c.causes != nil && !slices.Equal(verr.Causes, c.causes) {
				t.Errorf("Causes = %q, want %q", verr.Causes, c.causes)
			}
			if len(verr.Causes) == 0 {
				t.Error("no Causes")
			}
		})
	}
}

func TestValidationErrorText(t *testing.T) {
	t.Parallel()
	tp := lookup(t, loadRoot(t), "", "Invoice", "Paid")
	_, err := tp.Validate([]byte(`{"id":"inv-1","amount_cents":"12","paid_at":"x"}`))
	if got, want := err.Error(), "invalid data for billing.InvoicePaid at /amount_cents: got string, want integer"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	_, err = tp.Validate([]byte(`{"id":"inv-1"}`))
	if got, want := err.Error(), "invalid data for billing.InvoicePaid: missing properties 'amount_cents', 'paid_at'"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var verr *topics.ValidationError
	if errors.As(err, &verr); !slices.Equal(verr.Causes, []string{"(root): missing properties 'amount_cents', 'paid_at'"}) {
		t.Errorf("Causes = %q", verr.Causes)
	}
}

func TestValidateKey(t *testing.T) {
	t.Parallel()
	reg := loadRoot(t)
	received := lookup(t, reg, "", "Payment", "Received")
	key, err := received.Validate([]byte(`{"id":"pay-1","invoice_id":"inv-7","amount_cents":1}`))
	if key != "inv-7" || err != nil {
		t.Errorf("keyed by /invoice_id: %q, %v", key, err)
	}
	// The schema guarantees the key: without it the data is invalid.
	if _, err := received.Validate([]byte(`{"id":"pay-1","amount_cents":1}`)); err == nil {
		t.Error("data without the key passed")
	}
	// A key with the pointer's escapes.
	reg2, err := topics.Parse("escaped.yaml", []byte(`DefaultCategory: billing
Topics:
  - Action: Created
    Entity: Invoice
    Description: Keyed by a property whose name needs escaping.
    Key: /a~1b/c~0d
    Schema:
      type: object
      required: [a/b]
      properties:
        a/b: {type: object, required: ["c~d"], properties: {"c~d": {type: integer}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	key, err = lookup(t, reg2, "", "Invoice", "Created").Validate([]byte(`{"a/b":{"c~d":-0}}`))
	if key != "0" || err != nil {
		t.Errorf("escaped key: %q, %v; want 0", key, err)
	}
}

func TestValidateUnloadedTopic(t *testing.T) {
	t.Parallel()
	tp := &topics.Topic{Name: "billing.InvoiceCreated"}
	if _, err := tp.Validate([]byte(`{"id":"x"}`)); !hasPath(err, "") {
		t.Errorf("Validate on a Topic not from a Registry = %v, want a ValidationError", err)
	}
}
