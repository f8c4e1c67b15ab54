package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or writes it there with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file:\ngot:  %s\nwant: %s", name, got, want)
	}
}

// indent makes a golden file readable; the comparison is on the indented
// form of the exact bytes, so field order still counts.
func indent(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatalf("indent %s: %v", b, err)
	}
	return append(out.Bytes(), '\n')
}

// testEvent is an outbox event as the relay reads it, in its wire form.
func testEvent(t testing.TB, id, key, job string) wire.Event {
	t.Helper()
	ev, err := wire.FromOutbox(testOutboxEvent("0190f5e0-0000-7000-8000-000000000000", key, job))
	if err != nil {
		t.Fatal(err)
	}
	ev.ID = id // the wire carries any id
	return ev
}

func testOutboxEvent(id, key, job string) *outbox.Event {
	return &outbox.Event{
		ID: uuid.MustParse(id), Topic: "billing.InvoiceCreated", Category: "billing", Entity: "Invoice", Action: "Created",
		Data:    []byte(`{"id":"` + key + `","amount_cents":1250,"currency":"EUR"}`),
		ActorID: "user-4711", ActorType: outbox.ActorUser, JobID: job, Source: "billing-service", Key: key,
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Time:        time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC),
		DedupeKey:   "invoice " + key + ", created",
	}
}

func TestParseFormat(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]wire.Format{"cloudevents": wire.FormatCloudEvents, " BriteEvents ": wire.FormatBriteEvents} {
		if got, err := wire.ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := wire.ParseFormat("kafka"); err == nil || !strings.Contains(err.Error(), "kafka") {
		t.Errorf("ParseFormat(kafka) = %v", err)
	}
}

func TestSplitTopic(t *testing.T) {
	t.Parallel()
	tests := []struct{ topic, category, entity, action string }{
		{"billing.InvoiceCreated", "billing", "Invoice", "Created"},
		{"billing.LineItemCreated", "billing", "LineItem", "Created"},
		{"shipping.ParcelSent", "shipping", "Parcel", "Sent"},
		{"com.example.order.created", "", "", ""},
		{"billing.Invoice", "", "", ""},
		{"billing.invoiceCreated", "", "", ""},
		{"Billing.InvoiceCreated", "", "", ""},
		{"billing.InvoiceCreated2", "", "", ""},
		{"", "", "", ""},
	}
	for _, tt := range tests {
		c, e, a, ok := wire.SplitTopic(tt.topic)
		if c != tt.category || e != tt.entity || a != tt.action || ok != (tt.category != "") {
			t.Errorf("SplitTopic(%q) = %q %q %q %v; want %q %q %q", tt.topic, c, e, a, ok, tt.category, tt.entity, tt.action)
		}
		if ok && wire.TopicName(c, e, a) != tt.topic {
			t.Errorf("TopicName(SplitTopic(%q)) = %q", tt.topic, wire.TopicName(c, e, a))
		}
	}
}

// FromOutbox carries the envelope over, trusting the data.
func TestFromOutbox(t *testing.T) {
	t.Parallel()
	e := testOutboxEvent("0190f5e0-0000-7000-8000-000000000001", "inv-1", "job-1")
	e.Target = outbox.Target{Collection: "acme", Project: "q4-close"}
	want := wire.Event{
		ID: "0190f5e0-0000-7000-8000-000000000001", Topic: "billing.InvoiceCreated",
		Category: "billing", Entity: "Invoice", Action: "Created",
		ActorID: "user-4711", ActorType: "user", JobID: "job-1", Source: "billing-service", Key: "inv-1",
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		DedupeKey:   "invoice inv-1, created",
		Time:        time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC),
		Data:        json.RawMessage(`{"id":"inv-1","amount_cents":1250,"currency":"EUR"}`),
		DataValid:   true,
		Target:      outbox.Target{Collection: "acme", Project: "q4-close"},
	}
	got, err := wire.FromOutbox(e)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("FromOutbox:\ngot  %+v, %v\nwant %+v", got, err, want)
	}

	e.Topic = ""
	if got, err := wire.FromOutbox(e); err != nil || got.Topic != "billing.InvoiceCreated" {
		t.Errorf("FromOutbox without topic = %q, %v; want it built from its parts", got.Topic, err)
	}
	for name, mutate := range map[string]func(*outbox.Event){
		"no topic": func(e *outbox.Event) { e.Topic, e.Action = "", "" },
		"no data":  func(e *outbox.Event) { e.Data = nil },
	} {
		bad := *e
		mutate(&bad)
		if _, err := wire.FromOutbox(&bad); !errors.Is(err, wire.ErrInvalidEvent) {
			t.Errorf("%s: FromOutbox = %v, want ErrInvalidEvent", name, err)
		}
	}
}
