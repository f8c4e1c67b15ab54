package topics_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/txoutbox/txoutbox/topics"
)

const rootDefinitions = "../topic_definitions.yaml"

// loadRoot loads the example definitions at the module root, which the
// examples and other packages' tests publish to.
func loadRoot(t testing.TB) *topics.Registry {
	t.Helper()
	return load(t, rootDefinitions)
}

func load(t testing.TB, path string, opts ...topics.Option) *topics.Registry {
	t.Helper()
	reg, err := topics.Load(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func lookup(t testing.TB, reg *topics.Registry, category, entity, action string) *topics.Topic {
	t.Helper()
	tp, err := reg.Lookup(category, entity, action)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func TestRootDefinitions(t *testing.T) {
	t.Parallel()
	reg := loadRoot(t)
	if got := reg.DefaultCategory(); got != "billing" {
		t.Errorf("DefaultCategory() = %q, want billing", got)
	}
	want := []string{
		"billing.CustomerCreated", "billing.CustomerUpdated",
		"billing.InvoiceCancelled", "billing.InvoiceCreated", "billing.InvoiceOverdue", "billing.InvoicePaid",
		"billing.PaymentReceived", "billing.PaymentRefunded",
		"notifications.ReminderSent",
	}
	var names []string
	for _, tp := range reg.Topics() {
		names = append(names, tp.Name)
		if len(tp.Description) < 15 {
			t.Errorf("%s: description %q is too short to document the topic", tp.Name, tp.Description)
		}
		if tp.File != rootDefinitions || tp.Line < 1 {
			t.Errorf("%s: defined at %s:%d, want %s with a line", tp.Name, tp.File, tp.Line, rootDefinitions)
		}
	}
	if !slices.Equal(names, want) {
		t.Errorf("Topics() = %v, want %v (sorted by name)", names, want)
	}

	// The data other packages publish, with the key each must yield.
	cases := []struct {
		entity, action, category, data, key string
	}{
		{"Invoice", "Created", "", `{"id":"inv-1","customer":{"id":"cus-1","name":"Ada"},"amount_cents":1250,"currency":"EUR","status":"open","due_date":"2026-12-31"}`, "inv-1"},
		{"Invoice", "Paid", "", `{"id":"inv-1","amount_cents":1250,"paid_at":"2026-11-23T10:00:00Z"}`, "inv-1"},
		{"Invoice", "Cancelled", "", `{"id":"inv-1","reason":"duplicate"}`, "inv-1"},
		{"Invoice", "Overdue", "", `{"id":"inv-1","days_overdue":3}`, "inv-1"},
		{"Payment", "Received", "", `{"id":"pay-1","invoice_id":"inv-1","amount_cents":1250}`, "inv-1"},
		{"Payment", "Refunded", "", `{"id":"pay-1","invoice_id":"inv-1","amount_cents":250}`, "inv-1"},
		{"Customer", "Created", "", `{"id":"cus-1","name":"Ada","email":"ada@example.com"}`, "cus-1"},
		{"Customer", "Updated", "", `{"id":"cus-1","name":"Ada Lovelace"}`, "cus-1"},
		{"Reminder", "Sent", "notifications", `{"id":"rem-1","invoice_id":"inv-1","channel":"sms"}`, "inv-1"},
	}
	for _, c := range cases {
		tp := lookup(t, reg, c.category, c.entity, c.action)
		key, err := tp.Validate([]byte(c.data))
		if err != nil || key != c.key {
			t.Errorf("%s: Validate(%s) = %q, %v; want %q, nil", tp.Name, c.data, key, err, c.key)
		}
	}
	if tp := lookup(t, reg, "", "Payment", "Received"); tp.Key != "/invoice_id" {
		t.Errorf("PaymentReceived key = %q, want /invoice_id", tp.Key)
	}
}

// TestParseValid loads each file in testdata/valid, among them one written
// for the Python client with none of txoutbox's keys.
func TestParseValid(t *testing.T) {
	t.Parallel()
	cases := map[string][]string{
		"bc_events_style.yaml": {
			"documents.DocumentSent /id 1 ",
			"policies.PolicyCreated /id 1 ",
			"policies.PolicyTermCancelled /id 1 ",
			"policies.PolicyTermIssued /id 1 ",
		},
		"anchors.yaml": {
			"shipping.ParcelLost /carrier_ref 1 ",
			"shipping.ParcelPacked /order/id 3 block",
			"shipping.ParcelShipped /order/id 1 skip",
		},
	}
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases) {
		t.Fatalf("testdata/valid has %d files, the test knows %d", len(files), len(cases))
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg := load(t, filepath.Join("testdata/valid", name))
			var got []string
			for _, tp := range reg.Topics() {
				got = append(got, fmt.Sprintf("%s %s %d %s", tp.Name, tp.Key, tp.Version, tp.Poison))
			}
			if !slices.Equal(got, want) {
				t.Errorf("topics:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestBCEventsStyle(t *testing.T) {
	t.Parallel()
	reg := load(t, "testdata/valid/bc_events_style.yaml")
	created := lookup(t, reg, "", "policy", "created")
	// draft-07 named by $schema, with a definitions/$ref pair.
	if _, err := created.Validate([]byte(`{"id":"p1","policyNumber":"P-1","insured":{"email":"x"}}`)); !hasPath(err, "/insured") {
		t.Errorf("insured without name: err = %v, want a failure at /insured", err)
	}
	// No id in the schema: the default key is simply absent.
	sent := lookup(t, reg, "documents", "document", "sent")
	if key, err := sent.Validate([]byte(`{"documentId":"d1"}`)); key != "" || err != nil {
		t.Errorf("Validate without an id = %q, %v; want \"\", nil", key, err)
	}
	// An integer id that is not the key, and one that is.
	cancelled := lookup(t, reg, "", "PolicyTerm", "Cancelled")
	if key, err := cancelled.Validate([]byte(`{"policyTermId":7,"id":42}`)); key != "42" || err != nil {
		t.Errorf("Validate = %q, %v; want the integer id as key", key, err)
	}
}

func TestAnchors(t *testing.T) {
	t.Parallel()
	reg := load(t, "testdata/valid/anchors.yaml")
	shipped := lookup(t, reg, "", "Parcel", "Shipped")
	// The merge key brought $defs along; explicit keys overrode the rest.
	if shipped.Schema["description"] == nil || shipped.Schema["$defs"] == nil {
		t.Errorf("merged schema lacks description or $defs: %v", shipped.Schema)
	}
	key, err := shipped.Validate([]byte(`{"id":"p1","order":{"id":"o-9"},"weight_grams":500,"carrier":"ups"}`))
	if key != "o-9" || err != nil {
		t.Errorf("Validate = %q, %v; want key o-9", key, err)
	}
	if _, err := shipped.Validate([]byte(`{"id":"p1","order":{"id":""},"weight_grams":500,"carrier":"ups"}`)); !hasPath(err, "/order/id") {
		t.Errorf("empty order id: err = %v, want a failure at /order/id (aliased minLength)", err)
	}
	lost := lookup(t, reg, "", "parcel", "lost")
	for data, want := range map[string]string{
		`{"carrier_ref":12}`:                    "12",
		`{"carrier_ref":-3}`:                    "-3",
		`{"carrier_ref":1.0}`:                   "1",
		`{"carrier_ref":12e2}`:                  "1200",
		`{"carrier_ref":123456789012345678901}`: "123456789012345678901",
	} {
		if key, err := lost.Validate([]byte(data)); key != want || err != nil {
			t.Errorf("Validate(%s) = %q, %v; want %q", data, key, err, want)
		}
	}
}

func hasPath(err error, path string) bool {
	var verr *topics.ValidationError
	return errors.As(err, &verr) && verr.Path == path
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	_, err := topics.Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "load topic definitions: ") {
		t.Errorf("missing file: err = %v, want a wrapped fs.ErrNotExist", err)
	}
	if _, err := topics.Load("testdata"); err == nil || strings.Count(err.Error(), "testdata") != 1 {
		t.Errorf("directory: err = %v, want an error naming it once", err)
	}

	data, err := os.ReadFile(rootDefinitions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topics.Load(rootDefinitions, topics.WithMaxSize(100)); !errors.Is(err, topics.ErrTooLarge) {
		t.Errorf("Load over the limit: err = %v, want ErrTooLarge", err)
	}
	if _, err := topics.Parse("big.yaml", data, topics.WithMaxSize(int64(len(data)-1))); !errors.Is(err, topics.ErrTooLarge) {
		t.Errorf("Parse over the limit: err = %v, want ErrTooLarge", err)
	}
	if _, err := topics.Parse("exact.yaml", data, topics.WithMaxSize(int64(len(data)))); err != nil {
		t.Errorf("Parse at the limit: %v", err)
	}
	big := append([]byte("# "+strings.Repeat("x", topics.MaxSizeDefault)+"\n"), data...)
	if _, err := topics.Parse("big.yaml", big); !errors.Is(err, topics.ErrTooLarge) {
		t.Errorf("Parse over the default limit: err = %v, want ErrTooLarge", err)
	}

	// A *DefinitionError can be picked out of a *LoadError.
	_, err = topics.Parse("x.yaml", []byte("DefaultCategory: billing\nTopics: []\n"))
	var derr *topics.DefinitionError
	if !errors.As(err, &derr) || derr.Line != 2 || derr.Msg != "Topics is empty" {
		t.Errorf("errors.As(*DefinitionError) = %+v from %v", derr, err)
	}
}

// TestFormatAssertions: "format" is an annotation unless asked for, as in bc-events.
func TestFormatAssertions(t *testing.T) {
	t.Parallel()
	data := []byte(`{"id":"cus-1","name":"Ada","email":"not an address"}`)
	lenient := lookup(t, loadRoot(t), "", "Customer", "Created")
	if _, err := lenient.Validate(data); err != nil {
		t.Errorf("format asserted by default: %v", err)
	}
	strict := load(t, rootDefinitions, topics.WithFormatAssertions())
	if _, err := lookup(t, strict, "", "Customer", "Created").Validate(data); !hasPath(err, "/email") {
		t.Errorf("WithFormatAssertions: err = %v, want a failure at /email", err)
	}
}

func TestSchemaIsJSON(t *testing.T) {
	t.Parallel()
	tp := lookup(t, loadRoot(t), "", "Invoice", "Created")
	b, err := json.Marshal(tp.Schema)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"minimum":0`) || !strings.Contains(string(b), `"enum":["EUR","GBP","USD"]`) {
		t.Errorf("schema JSON = %s", b)
	}
	props := tp.Schema["properties"].(map[string]any)
	if _, ok := props["amount_cents"].(map[string]any)["minimum"].(json.Number); !ok {
		t.Errorf("numbers are %T, want json.Number", props["amount_cents"].(map[string]any)["minimum"])
	}
}

func TestYAMLScalars(t *testing.T) {
	t.Parallel()
	const file = `DefaultCategory: billing
Topics:
  - Action: Created
    Entity: Invoice
    Description: YAML spellings of JSON values.
    Schema:
      type: object
      required: [id]
      properties:
        id: {type: string}
        hex: {type: integer, maximum: 0x1F}
        under: {type: integer, maximum: 1_000}
        half: {type: number, multipleOf: .5}
        plus: {type: integer, minimum: +3}
        huge: {type: integer, maximum: 123456789012345678901234567890}
        flag: {const: true}
        none: {const: null}
        day: {const: 2024-01-31}
`
	reg, err := topics.Parse("scalars.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	tp := lookup(t, reg, "", "Invoice", "Created")
	props, _ := json.Marshal(tp.Schema["properties"])
	for _, want := range []string{`"maximum":31`, `"maximum":1000`, `"multipleOf":0.5`, `"minimum":3`,
		`"maximum":123456789012345678901234567890`, `"const":true`, `"const":null`, `"const":"2024-01-31"`} {
		if !strings.Contains(string(props), want) {
			t.Errorf("schema %s lacks %s", props, want)
		}
	}
	if _, err := tp.Validate([]byte(`{"id":"a","hex":32}`)); !hasPath(err, "/hex") {
		t.Errorf("hex maximum not applied: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	reg := loadRoot(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				tp, err := reg.Lookup("", "invoice", "paid")
				if err != nil {
					t.Error(err)
					return
				}
				key, err := tp.Validate(fmt.Appendf(nil, `{"id":"inv-%d-%d","amount_cents":%d,"paid_at":"x"}`, g, i, i))
				if err != nil || key != fmt.Sprintf("inv-%d-%d", g, i) {
					t.Errorf("Validate = %q, %v", key, err)
					return
				}
				_ = reg.Topics()
			}
		}()
	}
	wg.Wait()
}
