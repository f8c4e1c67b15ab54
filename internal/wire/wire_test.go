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

	"github.com/ThreeDotsLabs/watermill/message"
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

func testMessage(id, key, job string) *message.Message {
	msg := message.NewMessage(id, []byte(`{"id":"`+key+`","amount_cents":1250,"currency":"EUR"}`))
	for k, v := range map[string]string{
		outbox.MetaTopic:       "billing.InvoiceCreated",
		outbox.MetaCategory:    "billing",
		outbox.MetaEntity:      "Invoice",
		outbox.MetaAction:      "Created",
		outbox.MetaActorID:     "user-4711",
		outbox.MetaActorType:   outbox.ActorUser,
		outbox.MetaJobID:       job,
		outbox.MetaSource:      "billing-service",
		outbox.MetaKey:         key,
		outbox.MetaTraceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		outbox.MetaTime:        "2026-11-23T10:00:00.123456789Z",
	} {
		msg.Metadata.Set(k, v)
	}
	return msg
}

func testEvent(t *testing.T, id, key, job string) wire.Event {
	t.Helper()
	ev, err := wire.FromMessage(testMessage(id, key, job))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestFromMessage(t *testing.T) {
	t.Parallel()
	ev := testEvent(t, "0190f5e0-0000-7000-8000-000000000001", "inv-1", "job-1")
	want := wire.Event{
		ID: "0190f5e0-0000-7000-8000-000000000001", Topic: "billing.InvoiceCreated",
		Category: "billing", Entity: "Invoice", Action: "Created",
		ActorID: "user-4711", ActorType: "user", JobID: "job-1", Source: "billing-service", Key: "inv-1",
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Time:        time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC),
	}
	want.Data = json.RawMessage(`{"id":"inv-1","amount_cents":1250,"currency":"EUR"}`)
	if !reflect.DeepEqual(ev, want) {
		t.Errorf("FromMessage:\ngot  %+v\nwant %+v", ev, want)
	}
}

func TestFromMessageInvalid(t *testing.T) {
	t.Parallel()
	for name, mutate := range map[string]func(*message.Message){
		"no id":       func(m *message.Message) { m.UUID = "" },
		"no topic":    func(m *message.Message) { delete(m.Metadata, outbox.MetaTopic); delete(m.Metadata, outbox.MetaAction) },
		"bad payload": func(m *message.Message) { m.Payload = []byte(`{"id":`) },
		"no payload":  func(m *message.Message) { m.Payload = nil },
		"bad time":    func(m *message.Message) { m.Metadata.Set(outbox.MetaTime, "yesterday") },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			msg := testMessage("id-1", "k", "j")
			mutate(msg)
			if _, err := wire.FromMessage(msg); !errors.Is(err, wire.ErrInvalidEvent) {
				t.Errorf("FromMessage = %v, want ErrInvalidEvent", err)
			}
		})
	}
	// The topic is rebuilt from its parts when only MetaTopic is missing.
	msg := testMessage("id-1", "k", "j")
	delete(msg.Metadata, outbox.MetaTopic)
	if ev, err := wire.FromMessage(msg); err != nil || ev.Topic != "billing.InvoiceCreated" {
		t.Errorf("FromMessage without topic = %q, %v", ev.Topic, err)
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

// FromOutbox carries the envelope over as the message path does, trusting
// the data.
func TestFromOutbox(t *testing.T) {
	t.Parallel()
	msg := testMessage("0190f5e0-0000-7000-8000-000000000001", "inv-1", "job-1")
	want, err := wire.FromMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	want.DataValid = true
	e := &outbox.Event{
		ID: uuid.MustParse(msg.UUID), Topic: "billing.InvoiceCreated", Category: "billing", Entity: "Invoice", Action: "Created",
		Data: want.Data, ActorID: "user-4711", ActorType: outbox.ActorUser, JobID: "job-1", Source: "billing-service",
		Key: "inv-1", Traceparent: want.Traceparent, Time: want.Time, DedupeKey: "not on the wire",
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
