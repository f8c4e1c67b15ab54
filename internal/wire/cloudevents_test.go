package wire_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
)

func TestCloudEventsGolden(t *testing.T) {
	t.Parallel()
	a := testEvent(t, "0190f5e0-0000-7000-8000-000000000001", "inv-1", "job-1")
	b := testEvent(t, "0190f5e0-0000-7000-8000-000000000002", "inv-2", "job-2")
	b.Traceparent, b.Tenant, b.CausationID = "", "acme", a.ID
	b.Target = outbox.Target{Collection: "acme", Project: "q4-close", Layout: "ledger"}
	body, err := wire.AppendCloudEventBatch(nil, []wire.Event{a, b})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "cloudevents_batch.json", indent(t, body))
}

func TestCloudEventsRoundTrip(t *testing.T) {
	t.Parallel()
	a := testEvent(t, "id-1", "inv-1", "job-1")
	a.Tenant, a.CausationID = "acme", "id-0"
	a.Target = outbox.Target{Collection: "c/1", Project: "p \"2\"", Layout: "ünï"}
	a.Data = []byte("{\n  \"id\": \"inv-1\", \"note\": \"line\\nbreak \\u00e9\"\n}")
	body, err := wire.AppendCloudEventBatch(nil, []wire.Event{a})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), "\n") {
		t.Errorf("batch body spans lines: %s", body)
	}
	got, err := wire.DecodeCloudEventBatch(body)
	if err != nil {
		t.Fatal(err)
	}
	g := got[0]
	var wantData, gotData any
	_ = json.Unmarshal(a.Data, &wantData)
	_ = json.Unmarshal(g.Data, &gotData)
	if g.ID != a.ID || g.Topic != a.Topic || g.Key != a.Key || g.JobID != a.JobID || g.ActorID != a.ActorID ||
		g.ActorType != a.ActorType || g.Source != a.Source || g.Traceparent != a.Traceparent || g.Tenant != a.Tenant ||
		g.CausationID != a.CausationID || g.DedupeKey != a.DedupeKey || g.Target != a.Target || g.DedupeKey == "" || !g.Time.Equal(a.Time) || gotData.(map[string]any)["note"] != wantData.(map[string]any)["note"] {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", g, a)
	}

	one, err := wire.AppendCloudEvent(nil, &a)
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := wire.DecodeCloudEvent(one); err != nil || ev.ID != a.ID {
		t.Errorf("DecodeCloudEvent = %+v, %v", ev, err)
	}
}

func TestCloudEventDefaults(t *testing.T) {
	t.Parallel()
	ev := wire.Event{ID: "id-1", Topic: "billing.InvoiceCreated", Data: []byte(`{"id":"1"}`)}
	body, err := wire.AppendCloudEvent(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"specversion":"1.0","id":"id-1","source":"txoutbox","type":"billing.InvoiceCreated","datacontenttype":"application/json","data":{"id":"1"}}`
	if string(body) != want {
		t.Errorf("minimal event:\ngot  %s\nwant %s", body, want)
	}
	for name, e := range map[string]wire.Event{
		"no id":    {Topic: "t", Data: []byte(`{}`)},
		"no topic": {ID: "i", Data: []byte(`{}`)},
		"bad data": {ID: "i", Topic: "t", Data: []byte(`{`)},
	} {
		if _, err := wire.AppendCloudEvent(nil, &e); !errors.Is(err, wire.ErrInvalidEvent) {
			t.Errorf("%s: AppendCloudEvent = %v", name, err)
		}
	}
}

func TestDecodeCloudEventInvalid(t *testing.T) {
	t.Parallel()
	const ok = `{"specversion":"1.0","id":"1","source":"s","type":"billing.InvoiceCreated","data":{"id":"1"}}`
	for name, tc := range map[string]struct {
		body string
		want error
	}{
		"not JSON":             {`[{"specversion"`, wire.ErrSyntax},
		"not an array":         {ok, wire.ErrInvalidEvent},
		"null":                 {`null`, wire.ErrInvalidEvent},
		"spec version":         {`[` + strings.Replace(ok, `"1.0"`, `"0.3"`, 1) + `]`, wire.ErrInvalidEvent},
		"no source":            {`[` + strings.Replace(ok, `"source":"s",`, ``, 1) + `]`, wire.ErrInvalidEvent},
		"no data":              {`[` + strings.Replace(ok, `,"data":{"id":"1"}`, ``, 1) + `]`, wire.ErrInvalidEvent},
		"xml data":             {`[` + strings.Replace(ok, `"data"`, `"datacontenttype":"text/xml","data"`, 1) + `]`, wire.ErrInvalidEvent},
		"bad time":             {`[` + strings.Replace(ok, `"data"`, `"time":"noon","data"`, 1) + `]`, wire.ErrInvalidEvent},
		"base64 not JSON":      {`[` + strings.Replace(ok, `"data":{"id":"1"}`, `"data_base64":"aGVsbG8="`, 1) + `]`, wire.ErrInvalidEvent},
		"data and data_base64": {`[` + strings.Replace(ok, `"data"`, `"data_base64":"e30=","data"`, 1) + `]`, wire.ErrInvalidEvent},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := wire.DecodeCloudEventBatch([]byte(tc.body)); !errors.Is(err, tc.want) {
				t.Errorf("DecodeCloudEventBatch = %v, want %v", err, tc.want)
			}
		})
	}
	b64 := strings.Replace(ok, `"data":{"id":"1"}`, `"data_base64":"eyJpZCI6IjEifQ=="`, 1)
	if ev, err := wire.DecodeCloudEvent([]byte(b64)); err != nil || string(ev.Data) != `{"id":"1"}` {
		t.Errorf("data_base64: %s, %v", ev.Data, err)
	}
	if evs, err := wire.DecodeCloudEventBatch([]byte(`[]`)); err != nil || len(evs) != 0 {
		t.Errorf("empty batch: %v, %v", evs, err)
	}
}

func TestIsCloudEventsContentType(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string][2]bool{
		"application/cloudevents-batch+json":                {true, true},
		"application/cloudevents+json; charset=utf-8":       {true, false},
		"application/json":                                  {false, false},
		"application/cloudevents-batch+json; charset=utf-8": {true, true},
		";;": {false, false},
	} {
		ok, batch := wire.IsCloudEventsContentType(ct)
		if ok != want[0] || batch != want[1] {
			t.Errorf("IsCloudEventsContentType(%q) = %v, %v", ct, ok, batch)
		}
	}
}

// TestStringEscaping checks the hand-written string encoder against
// encoding/json on awkward input: whatever it writes must decode back to the
// input (with invalid UTF-8 replaced, as encoding/json does).
func TestStringEscaping(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\t\r\n", "é ü 日本 🎉",
		"bad \xff utf8", "line\u2028sep\u2029", "<html>&amp;",
	} {
		ev := wire.Event{ID: s, Topic: "t", Data: []byte(`{}`)}
		body, err := wire.AppendCloudEvent(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ ID string }
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%q: %v in %s", s, err, body)
		}
		want := strings.ToValidUTF8(s, string(utf8.RuneError))
		if got.ID != want {
			t.Errorf("escaped %q decodes to %q", s, got.ID)
		}
	}
}

// BenchmarkAppendCloudEventBatch encodes 500 events whose data is written
// as PostgreSQL's json_build_object writes it (with spaces): checked, as
// events from elsewhere are, and trusted, as the relay's are.
func BenchmarkAppendCloudEventBatch(b *testing.B) {
	for _, trusted := range []bool{false, true} {
		b.Run(map[bool]string{false: "checked", true: "trusted"}[trusted], func(b *testing.B) {
			events := make([]wire.Event, 500)
			for i := range events {
				ev := testEvent(b, "0190f5e0-0000-7000-8000-000000000001", "inv-1", "job-1")
				ev.Data = []byte(`{"id" : "inv-1", "customer" : {"id" : "cus-1", "name" : "Customer"}, "amount_cents" : 1250, "currency" : "EUR", "status" : "open"}`)
				ev.DataValid = trusted
				events[i] = ev
			}
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = wire.AppendCloudEventBatch(buf[:0], events); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(events))/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// The target's levels travel as extension attributes, each only when named,
// under names CloudEvents allows: lower-case letters and digits, at most 20.
func TestCloudEventTargetExtensions(t *testing.T) {
	t.Parallel()
	for _, target := range []outbox.Target{{}, {Collection: "c1"}, {Collection: "c1", Project: "p1"}, {Collection: "c1", Project: "p1", Layout: "l1"}} {
		ev := wire.Event{ID: "id-1", Topic: "billing.InvoiceCreated", Data: []byte(`{"id":"1"}`), Target: target}
		body, err := wire.AppendCloudEvent(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		var attrs map[string]json.RawMessage
		if err := json.Unmarshal(body, &attrs); err != nil {
			t.Fatal(err)
		}
		named := 0
		for name, level := range map[string]string{"targetcollection": target.Collection, "targetproject": target.Project, "targetlayout": target.Layout} {
			if len(name) > 20 || strings.ToLower(name) != name {
				t.Errorf("extension name %q breaks the CloudEvents naming rule", name)
			}
			if _, ok := attrs[name]; ok != (level != "") {
				t.Errorf("target %+v: attribute %s present %v", target, name, ok)
			}
			if level != "" {
				named++
			}
		}
		got, err := wire.DecodeCloudEvent(body)
		if err != nil || got.Target != target {
			t.Errorf("target %+v: decoded %+v, %v", target, got.Target, err)
		}
		if len(attrs) != 6+named {
			t.Errorf("target %+v: %d attributes: %s", target, len(attrs), body)
		}
	}
}
