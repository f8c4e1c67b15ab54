package asyncapi

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/topics"
)

// The AsyncAPI 3.0.0 JSON Schema, vendored from asyncapi/spec-json-schemas
// (schemas/3.0.0.json; Apache 2.0, see testdata/asyncapi-3.0.0/LICENSE and
// NOTICE).
const specSchema = "testdata/asyncapi-3.0.0/3.0.0.json"

const definitions = `DefaultCategory: billing
Topics:
  - Action: Created
    Entity: Invoice
    Description: A new invoice was issued
    Schema:
      type: object
      required: [id, amount_cents, lines]
      properties:
        id: {type: string}
        amount_cents: {type: integer, minimum: 0, maximum: 1.5e9}
        lines: {type: array, items: {$ref: "#/$defs/line"}}
      $defs:
        line: {type: object, properties: {sku: {type: string}}}
  - Action: Paid
    Entity: Invoice
    Category: payments
    Schema: {type: object, properties: {id: {type: string}}}
`

func TestDocumentValidates(t *testing.T) {
	t.Parallel()
	reg, err := topics.Parse("topic_definitions.yaml", []byte(definitions))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	f, err := os.Open(specSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spec, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource(specSchema, spec); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(specSchema)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []wire.Format{wire.FormatBriteEvents, wire.FormatCloudEvents} {
		for _, asJSON := range []bool{false, true} {
			doc, err := Document(reg, format, "billing events")
			if err != nil {
				t.Fatal(err)
			}
			out, err := Encode(doc, asJSON)
			if err != nil {
				t.Fatal(err)
			}
			v := decode(t, out, asJSON)
			if err := sch.Validate(v); err != nil {
				t.Errorf("%s (JSON %v) is not valid AsyncAPI 3.0.0: %v\n%s", format, asJSON, err, out)
			}
			for _, want := range []string{"billing.InvoiceCreated", "payments.InvoicePaid", "#/components/schemas/billing.InvoiceCreated/$defs/line"} {
				if !bytes.Contains(out, []byte(want)) {
					t.Errorf("%s: the document lacks %q", format, want)
				}
			}
			// The data schema, read back, still means what the topic's does.
			data := v.(map[string]any)["components"].(map[string]any)["schemas"].(map[string]any)["billing.InvoiceCreated"].(map[string]any)
			amount := data["properties"].(map[string]any)["amount_cents"].(map[string]any)
			if n, ok := amount["minimum"].(json.Number); !ok || n.String() != "0" {
				t.Errorf("%s: amount_cents minimum reads back as %#v", format, amount["minimum"])
			}
		}
	}
	// The schema does refuse a document breaking the spec.
	bad, _ := Document(reg, wire.FormatBriteEvents, "x")
	bad["operations"].(map[string]any)["send.billing.InvoiceCreated"].(map[string]any)["action"] = "publish" // AsyncAPI 2's word
	out, _ := Encode(bad, true)
	if err := sch.Validate(decode(t, out, true)); err == nil {
		t.Error("an operation with action publish validates")
	}
	brite, _ := Document(reg, wire.FormatBriteEvents, "x")
	out, _ = Encode(brite, true)
	for _, want := range []string{wire.HeaderJobID, wire.HeaderIdempotencyKey, wire.HeaderTenant, wire.HeaderTraceparent, `"additionalProperties": false`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("briteevents: the document lacks %q", want)
		}
	}
	ce, _ := Document(reg, wire.FormatCloudEvents, "x")
	out, _ = Encode(ce, true)
	for _, want := range []string{`"specversion"`, `"partitionkey"`, `"traceparent"`, `"tenant"`, wire.ContentTypeCloudEventBatch} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("cloudevents: the document lacks %q", want)
		}
	}
	if _, err := Document(reg, "avro", "x"); err == nil || !strings.Contains(err.Error(), "unknown wire format") {
		t.Errorf("Document(avro): %v", err)
	}
}

// decode reads a document as the validator wants it: JSON values with
// json.Number numbers.
func decode(t *testing.T, out []byte, asJSON bool) any {
	t.Helper()
	if !asJSON {
		var y any
		if err := yaml.Unmarshal(out, &y); err != nil {
			t.Fatal(err)
		}
		var err error
		if out, err = json.Marshal(y); err != nil {
			t.Fatal(err)
		}
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
