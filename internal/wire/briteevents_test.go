package wire_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
)

func TestBriteGolden(t *testing.T) {
	t.Parallel()
	ev := testEvent(t, "0190f5e0-0000-7000-8000-000000000001", "inv-1", "job-1")
	single, err := wire.EncodeBrite(&ev)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "briteevents_single.json", indent(t, single))

	bulk, err := wire.EncodeBriteBulk([]wire.Event{ev, testEvent(t, "0190f5e0-0000-7000-8000-000000000002", "inv-2", "job-1")})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "briteevents_bulk.json", indent(t, bulk))

	// The API rejects extra fields: the body has exactly these five.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(single, &fields); err != nil {
		t.Fatal(err)
	}
	if len(fields) != 5 {
		t.Errorf("body has %d fields, want category, entity, action, data, actor: %s", len(fields), single)
	}
}

func TestBriteRoundTrip(t *testing.T) {
	t.Parallel()
	ev := testEvent(t, "id-1", "inv-1", "job-1")
	body, err := wire.EncodeBrite(&ev)
	if err != nil {
		t.Fatal(err)
	}
	b, err := wire.DecodeBrite(body)
	if err != nil {
		t.Fatal(err)
	}
	got := b.Event()
	if got.Topic != ev.Topic || got.ActorID != ev.ActorID || got.ActorType != ev.ActorType || string(got.Data) != string(ev.Data) {
		t.Errorf("round trip = %+v, want %+v", got, ev)
	}

	bulk, err := wire.EncodeBriteBulk([]wire.Event{ev, ev})
	if err != nil {
		t.Fatal(err)
	}
	bs, err := wire.DecodeBriteBulk(bulk)
	if err != nil || len(bs) != 2 {
		t.Fatalf("DecodeBriteBulk = %d records, %v", len(bs), err)
	}
}

func TestBriteEncodeInvalid(t *testing.T) {
	t.Parallel()
	ev := testEvent(t, "id-1", "inv-1", "job-1")
	noActor := ev
	noActor.ActorID = ""
	if _, err := wire.EncodeBrite(&noActor); !errors.Is(err, wire.ErrInvalidEvent) {
		t.Errorf("EncodeBrite without actor = %v", err)
	}
	noParts := ev
	noParts.Entity = ""
	if _, err := wire.EncodeBriteBulk([]wire.Event{ev, noParts}); !errors.Is(err, wire.ErrInvalidEvent) {
		t.Errorf("EncodeBriteBulk without entity = %v", err)
	}
	if _, err := wire.EncodeBriteBulk(make([]wire.Event, wire.BriteBulkMax+1)); !errors.Is(err, wire.ErrInvalidEvent) {
		t.Errorf("EncodeBriteBulk of %d = %v", wire.BriteBulkMax+1, err)
	}
}

func TestDecodeBriteInvalid(t *testing.T) {
	t.Parallel()
	const ok = `{"category":"billing","entity":"Invoice","action":"Created","data":{"id":"1"},"actor":{"id":"user-1","type":"user"}}`
	for name, tc := range map[string]struct {
		body string
		want error
	}{
		"not JSON":      {`{"category":`, wire.ErrSyntax},
		"empty":         {``, wire.ErrSyntax},
		"trailing data": {ok + `{}`, wire.ErrSyntax},
		"extra field":   {strings.Replace(ok, `"data"`, `"id":"x","data"`, 1), wire.ErrInvalidEvent},
		"missing actor": {`{"category":"billing","entity":"Invoice","action":"Created","data":{"id":"1"}}`, wire.ErrInvalidEvent},
		"null data":     {strings.Replace(ok, `{"id":"1"}`, `null`, 1), wire.ErrInvalidEvent},
		"wrong type":    {strings.Replace(ok, `"billing"`, `7`, 1), wire.ErrInvalidEvent},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := wire.DecodeBrite([]byte(tc.body)); !errors.Is(err, tc.want) {
				t.Errorf("DecodeBrite = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := wire.DecodeBrite([]byte(ok)); err != nil {
		t.Errorf("DecodeBrite(valid) = %v", err)
	}
	if _, err := wire.DecodeBriteBulk([]byte(ok)); !errors.Is(err, wire.ErrInvalidEvent) {
		t.Errorf("DecodeBriteBulk(object) = %v", err)
	}
	if _, err := wire.DecodeBriteBulk([]byte(`null`)); !errors.Is(err, wire.ErrInvalidEvent) {
		t.Errorf("DecodeBriteBulk(null) = %v", err)
	}
}

func TestBriteHeaders(t *testing.T) {
	t.Parallel()
	events := make([]wire.Event, 120)
	ids := make([]string, len(events))
	for i := range events {
		ids[i] = strings.Repeat("0", 35) + string(rune('a'+i%26))
		events[i] = wire.Event{ID: ids[i], JobID: "job-9"}
	}

	h := http.Header{}
	wire.BriteHeaders(h, events[:1], false)
	if h.Get(wire.HeaderJobID) != "job-9" || h.Get(wire.HeaderIdempotencyKey) != ids[0] || len(h.Values(wire.HeaderEventIDs)) != 0 {
		t.Errorf("single headers = %v", h)
	}

	h = http.Header{}
	wire.BriteHeaders(h, events, true)
	if got := h.Get(wire.HeaderIdempotencyKey); got != wire.BulkIdempotencyKey(ids) || !strings.HasPrefix(got, "sha256:") {
		t.Errorf("bulk Idempotency-Key = %q", got)
	}
	if lines := h.Values(wire.HeaderEventIDs); len(lines) != 3 {
		t.Errorf("%d ids on %d header lines, want 3 lines of at most 50", len(ids), len(lines))
	}
	if got := wire.EventIDsFromHeader(h); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("EventIDsFromHeader = %v", got)
	}
	if wire.BulkIdempotencyKey(ids[:2]) == wire.BulkIdempotencyKey(ids[:1]) {
		t.Error("a resend of a subset has the same idempotency key")
	}
	if len(h.Values(wire.HeaderDedupeKeys)) != 0 {
		t.Errorf("dedupe keys sent for events without one: %q", h.Values(wire.HeaderDedupeKeys))
	}
}

// Dedupe keys travel by event id, whatever characters they hold, only for
// the events that have one, on lines that stay small however long the keys.
func TestBriteDedupeKeysHeader(t *testing.T) {
	t.Parallel()
	keys := []string{"pay, inv=1 100%", "", "ünïcode/key+plus", strings.Repeat("k", 1000)}
	events := make([]wire.Event, 60)
	for i := range events {
		events[i] = wire.Event{ID: fmt.Sprintf("ev-%d", i), DedupeKey: keys[i%len(keys)]}
	}
	h := http.Header{}
	wire.BriteHeaders(h, events, true)
	for _, line := range h.Values(wire.HeaderDedupeKeys) {
		if len(line) > 4000 || strings.ContainsAny(line, " ") {
			t.Errorf("header line of %d bytes: %.60s…", len(line), line)
		}
	}
	got, err := wire.DedupeKeysFromHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if got[ev.ID] != ev.DedupeKey {
			t.Errorf("event %s: dedupe key %q, want %q", ev.ID, got[ev.ID], ev.DedupeKey)
		}
	}
	if len(got) != 45 {
		t.Errorf("%d keys, want the 45 events that have one", len(got))
	}

	h = http.Header{}
	wire.BriteHeaders(h, events[:1], false)
	if got, err := wire.DedupeKeysFromHeader(h); err != nil || got["ev-0"] != keys[0] {
		t.Errorf("single post: %v, %v", got, err)
	}
	for _, bad := range []string{"no-equals", "=key", "ev-1=%zz", "ev-1=", "ev-1=a,ev-1=b"} {
		h := http.Header{wire.HeaderDedupeKeys: {bad}}
		if _, err := wire.DedupeKeysFromHeader(h); !errors.Is(err, wire.ErrInvalidEvent) {
			t.Errorf("%q: %v, want ErrInvalidEvent", bad, err)
		}
	}
}

func TestBriteBulkResultRecordErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		body string
		n    int
		want []string
		err  error
	}{
		"all accepted":       {`{"failedRecords":0,"records":["Success","Success"]}`, 2, []string{"", ""}, nil},
		"no records listed":  {`{"failedRecords":0}`, 2, []string{"", ""}, nil},
		"codes":              {`{"failedRecords":2,"records":["Success","ProvisionedThroughputExceededException","ValidationError"]}`, 3, []string{"", wire.BriteErrThroughputExceeded, "ValidationError"}, nil},
		"stream records":     {`{"failedRecords":1,"records":[{"SequenceNumber":"1"},{"ErrorCode":"InternalFailureException","ErrorMessage":"x"}]}`, 2, []string{"", wire.BriteErrInternalFailure}, nil},
		"echoed events":      {`{"failedRecords":1,"records":[{"category":"x"},"InternalFailureException"]}`, 2, []string{"", wire.BriteErrInternalFailure}, nil},
		"too few records":    {`{"failedRecords":1,"records":["InternalFailureException"]}`, 2, nil, wire.ErrAmbiguousBulkResult},
		"codes do not match": {`{"failedRecords":2,"records":["Success","InternalFailureException"]}`, 2, nil, wire.ErrAmbiguousBulkResult},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var r wire.BriteBulkResult
			if err := json.Unmarshal([]byte(tc.body), &r); err != nil {
				t.Fatal(err)
			}
			got, err := r.RecordErrors(tc.n)
			if !errors.Is(err, tc.err) {
				t.Fatalf("RecordErrors = %v, want %v", err, tc.err)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("RecordErrors = %q, want %q", got, tc.want)
			}
		})
	}
	if !wire.IsRetryableBriteError(wire.BriteErrThroughputExceeded) || wire.IsRetryableBriteError("ValidationError") {
		t.Error("IsRetryableBriteError misclassifies")
	}
}

func TestBriteValidate(t *testing.T) {
	t.Parallel()
	valid := wire.BriteEvent{Category: "billing", Entity: "LineItem", Action: "Created", Data: json.RawMessage(`{"id":"1"}`),
		Actor: wire.BriteActor{ID: "ééééé", Type: "third-party"}}
	if err := valid.Validate(); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
	for name, edit := range map[string]func(b *wire.BriteEvent){
		"category":   func(b *wire.BriteEvent) { b.Category = "TESTING" },
		"entity":     func(b *wire.BriteEvent) { b.Entity = "test" },
		"action":     func(b *wire.BriteEvent) { b.Action = "created" },
		"data":       func(b *wire.BriteEvent) { b.Data = json.RawMessage(` { } `) },
		"actor.id":   func(b *wire.BriteEvent) { b.Actor.ID = "éééé" },
		"actor.type": func(b *wire.BriteEvent) { b.Actor.Type = "robot" },
	} {
		b := valid
		edit(&b)
		if err := b.Validate(); !errors.Is(err, wire.ErrInvalidEvent) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: Validate = %v, want an error naming it", name, err)
		}
	}
}

func TestDecodeBriteActorExtraFields(t *testing.T) {
	t.Parallel()
	body := `{"category":"billing","entity":"Invoice","action":"Created","data":{"id":"1"},"actor":{"id":"user-1","type":"user","name":"Ada"}}`
	b, err := wire.DecodeBrite([]byte(body))
	if err != nil || b.Actor.ID != "user-1" || b.Actor.Type != "user" {
		t.Errorf("DecodeBrite = %+v, %v", b, err)
	}
	if _, err := wire.DecodeBrite([]byte(`{"category":"billing","entity":"Invoice","action":"Created","data":{"id":"1"},"actor":{"id":7,"type":"user"}}`)); !errors.Is(err, wire.ErrInvalidEvent) {
		t.Errorf("DecodeBrite(actor.id a number) = %v", err)
	}
}

func TestDecodeBriteBulkNamesRecord(t *testing.T) {
	t.Parallel()
	const ok = `{"category":"billing","entity":"Invoice","action":"Created","data":{"id":"1"},"actor":{"id":"user-1","type":"user"}}`
	for name, tc := range map[string]struct {
		record string
		want   error
	}{
		"malformed":   {`{"category":,}`, wire.ErrSyntax},
		"extra field": {strings.Replace(ok, `"data"`, `"id":"x","data"`, 1), wire.ErrInvalidEvent},
		"wrong type":  {strings.Replace(ok, `"billing"`, `7`, 1), wire.ErrInvalidEvent},
		"missing":     {`{"category":"billing"}`, wire.ErrInvalidEvent},
		"not object":  {`"billing.InvoiceCreated"`, wire.ErrInvalidEvent},
	} {
		_, err := wire.DecodeBriteBulk([]byte("[" + ok + "," + tc.record + "]"))
		if !errors.Is(err, tc.want) || !strings.HasPrefix(err.Error(), "record 1: ") {
			t.Errorf("%s: DecodeBriteBulk = %v, want %v naming record 1", name, err, tc.want)
		}
	}
	bs, err := wire.DecodeBriteBulk([]byte(" [ " + ok + " , " + ok + " ] "))
	if err != nil || len(bs) != 2 {
		t.Errorf("DecodeBriteBulk(two) = %d, %v", len(bs), err)
	}
	if bs, err := wire.DecodeBriteBulk([]byte(`[]`)); err != nil || bs == nil {
		t.Errorf("DecodeBriteBulk([]) = %#v, %v", bs, err)
	}
	for _, body := range []string{`[` + ok, `[` + ok + `]{}`, `[` + ok + ` ` + ok + `]`} {
		if _, err := wire.DecodeBriteBulk([]byte(body)); !errors.Is(err, wire.ErrSyntax) {
			t.Errorf("DecodeBriteBulk(%.30s…) = %v, want %v", body, err, wire.ErrSyntax)
		}
	}
}

// A target travels in one header, whatever characters its levels hold; the
// body stays what the bc-events API validates; and events of different
// targets never share a request.
func TestBriteTargetHeader(t *testing.T) {
	t.Parallel()
	plain := testEvent(t, "id-1", "inv-1", "job-1")
	wantBody, err := wire.EncodeBrite(&plain)
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []outbox.Target{
		{Collection: "c1"},
		{Collection: "c1", Project: "p1"},
		{Collection: "acme; project=evil", Project: "a=b, c%20 d+e", Layout: "ünï/cø"},
		{Layout: "l1"}, // the receiver decides whether upper levels may be left out
	} {
		ev := plain
		ev.Target = target
		for _, bulk := range []bool{false, true} {
			h := http.Header{}
			wire.BriteHeaders(h, []wire.Event{ev}, bulk)
			if v := h.Get(wire.HeaderTarget); strings.ContainsAny(v, ",\r\n") {
				t.Errorf("header %q holds a comma or line break", v)
			}
			got, err := wire.TargetFromHeader(h)
			if err != nil || got != target {
				t.Errorf("bulk %v: target %+v: read back %+v, %v (header %q)", bulk, target, got, err, h.Get(wire.HeaderTarget))
			}
		}
		body, err := wire.EncodeBrite(&ev)
		if err != nil || string(body) != string(wantBody) {
			t.Errorf("target %+v changed the body: %s", target, body)
		}
		if wire.BriteRequestKey(&ev) == wire.BriteRequestKey(&plain) {
			t.Errorf("target %+v: same request key as an event without a target", target)
		}
	}
	if got := wire.TargetHeader(outbox.Target{Collection: "c 1", Project: "p;2"}); got != "collection=c+1; project=p%3B2" {
		t.Errorf("TargetHeader = %q", got)
	}

	h := http.Header{}
	wire.BriteHeaders(h, []wire.Event{plain}, false)
	if _, ok := h[wire.HeaderTarget]; ok {
		t.Errorf("target header sent for an event without one: %q", h.Values(wire.HeaderTarget))
	}
	if got, err := wire.TargetFromHeader(h); err != nil || !got.IsZero() {
		t.Errorf("no header: %+v, %v", got, err)
	}
	a, b := plain, plain
	a.Target.Collection, b.Target.Collection = "c1", "c2"
	if wire.BriteRequestKey(&a) == wire.BriteRequestKey(&b) {
		t.Error("events of two collections share a request key")
	}

	for _, bad := range [][]string{
		{""}, {";"}, {"collection"}, {"collection="}, {"tenant=t1"}, {"collection=%zz"},
		{"collection=c1; collection=c2"}, {"collection=c1", "project=p1"},
	} {
		h := http.Header{wire.HeaderTarget: bad}
		if got, err := wire.TargetFromHeader(h); !errors.Is(err, wire.ErrInvalidEvent) {
			t.Errorf("%q: %+v, %v, want ErrInvalidEvent", bad, got, err)
		}
	}
}
