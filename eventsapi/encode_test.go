package eventsapi

import (
	"encoding/json"
	"testing"
	"time"
)

// encodeCases are events whose every field json.Marshal writes in some way
// of its own: escapes, invalid UTF-8, HTML characters, line separators,
// data with whitespace, times with zones and nanoseconds.
func encodeCases() []Event {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC)
	full := Event{
		Position: 42, ID: "0190-abc", Topic: "billing.InvoiceCreated", Category: "billing", Entity: "Invoice", Action: "Created",
		Key: "inv-1", Tenant: "acme", ActorID: "user-123", ActorType: "user", JobID: "job-1", CausationID: "cause-1",
		DedupeKey: "dk-1", Source: "billing-api", Traceparent: "00-abc-def-01", Format: "cloudevents",
		Time: t0, ReceivedAt: t0.Add(3 * time.Millisecond), Data: json.RawMessage(`{"id":"inv-1","amount":1234}`),
	}
	odd := full
	odd.ID = "quote\" back\\slash \n\t\x01 <tag> & \u2028\u2029 é 😀 \xff\xfe"
	odd.Key = "<script>"
	odd.Data = json.RawMessage("{\n  \"html\": \"<b>&amp;</b>\",\n  \"sep\": \"\u2028\", \"euro\": \"€\", \"n\": [1, 2.5e3, true, null]\n}")
	zoned := full
	zoned.Time = time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", -(5*60*60+30*60)))
	zoned.ReceivedAt = time.Time{}
	empty := Event{}
	nullData := full
	nullData.Data = json.RawMessage("null")
	str := full
	str.Data = json.RawMessage(` "just a string" `)
	job := full
	job.Target = Target{Collection: "c-1", Project: "p<1>", Layout: "l-1"}
	job.Sender, job.DependsOn, job.Status, job.Description, job.Retries = "worker-7", "0190-src", JobInProgress, "resize <all> images", 3
	job.RequestMetadata = json.RawMessage(`{ "request": "<POST /x>" }`)
	job.UpdatedAt = t0.Add(time.Second)
	partTarget := full
	partTarget.Target = Target{Project: "p-only"}
	live := full
	live.Position, live.Live, live.Progress = 0, true, json.RawMessage(`{"done": 4, "total": 10}`)
	return []Event{full, odd, zoned, empty, nullData, str, job, partTarget, live}
}

func TestAppendEventJSONMatchesMarshal(t *testing.T) {
	t.Parallel()
	for i, ev := range encodeCases() {
		want, err := json.Marshal(&ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendEventJSON(nil, &ev)
		if err != nil || string(got) != string(want) {
			t.Errorf("case %d:\n got %s (%v)\nwant %s", i, got, err, want)
		}
	}
}

// TestAppendEventJSONFailsAsMarshal: what json.Marshal cannot encode,
// appendEventJSON refuses too, and the hub sends such data as null.
func TestAppendEventJSONFailsAsMarshal(t *testing.T) {
	t.Parallel()
	bad := encodeCases()[0]
	bad.Data = json.RawMessage(`{"unfinished":`)
	far := encodeCases()[0]
	far.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, ev := range []Event{bad, far} {
		if _, err := json.Marshal(&ev); err == nil {
			t.Fatalf("case %d: json.Marshal took it", i)
		}
		if _, err := appendEventJSON(nil, &ev); err == nil {
			t.Errorf("case %d: appendEventJSON took it", i)
		}
	}
}

func FuzzAppendEventJSON(f *testing.F) {
	for _, ev := range encodeCases() {
		f.Add(ev.ID, ev.Key, []byte(ev.Data), ev.Time.UnixNano())
	}
	f.Fuzz(func(t *testing.T, id, key string, data []byte, ns int64) {
		ev := encodeCases()[0]
		ev.ID, ev.Key, ev.Data, ev.Time = id, key, data, time.Unix(0, ns).UTC()
		want, werr := json.Marshal(&ev)
		got, gerr := appendEventJSON(nil, &ev)
		if (werr == nil) != (gerr == nil) || (werr == nil && string(got) != string(want)) {
			t.Errorf("got %s (%v)\nwant %s (%v)", got, gerr, want, werr)
		}
	})
}

func BenchmarkEncodeEvent(b *testing.B) {
	ev := encodeCases()[0]
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(&ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("appendEventJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = appendEventJSON(buf[:0], &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}
