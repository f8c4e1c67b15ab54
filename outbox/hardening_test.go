package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/topics"
)

// TestPublishRefusesHostileData feeds Publish data that cannot be stored or
// sent as it is: each gets a typed error at Publish, before any transaction
// sees it, and nothing is written.
func TestPublishRefusesHostileData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	valid := `"customer":{"id":"cus-1","name":"Ada"},"amount_cents":1,"currency":"EUR","status":"open","due_date":"2026-12-31"`
	withAmount := func(v any) map[string]any {
		inv := invoice("inv-1")
		inv["amount_cents"] = v
		return inv
	}
	var encErr *outbox.EncodeError
	var verr *topics.ValidationError
	for _, tc := range []struct {
		name string
		data any
		is   func(error) bool
	}{
		{"+Inf", withAmount(math.Inf(1)), func(err error) bool { return errors.As(err, &encErr) }},
		{"-Inf", withAmount(math.Inf(-1)), func(err error) bool { return errors.As(err, &encErr) }},
		{"NaN in a nested slice", withAmount([]float64{1, math.NaN()}), func(err error) bool { return errors.As(err, &encErr) }},
		{"a channel", withAmount(make(chan int)), func(err error) bool { return errors.As(err, &encErr) }},
		{"a cycle through a slice", func() any { s := []any{nil}; s[0] = s; return withAmount(s) }(), func(err error) bool { return errors.As(err, &encErr) }},
		{"raw JSON, not UTF-8", raw(`{"id":"inv-` + "\xff\xfe" + `",` + valid + `}`), func(err error) bool { return errors.As(err, &verr) }},
		{"raw JSON, two documents", raw(`{"id":"inv-1",` + valid + `} {}`), func(err error) bool { return errors.As(err, &encErr) }},
		{"raw JSON nested 20000 deep", raw(`{"id":"inv-1",` + valid + `,"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`), func(err error) bool { return errors.As(err, &encErr) }},
		{"raw JSON, a string", raw(`"inv-1"`), func(err error) bool { return errors.As(err, &verr) }},
		{"raw JSON, null", raw(`null`), func(err error) bool { return errors.As(err, &verr) }},
		{"over the default size limit", withAmount(strings.Repeat("9", outbox.MaxEventBytesDefault)), func(err error) bool { return errors.Is(err, outbox.ErrEventTooLarge) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := b.client.UserSession("user-42", "")
			err := sess.Publish(ctx, "Created", "Invoice", tc.data)
			if err == nil || !tc.is(err) {
				t.Fatalf("Publish = %v (%T)", err, err)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("error is %d bytes long: %.100s...", len(err.Error()), err)
			}
			if sess.Len() != 0 {
				t.Errorf("refused data was buffered")
			}
		})
	}
	if n := countEvents(t, b.pool, "true"); n != 0 {
		t.Fatalf("%d refused events were written", n)
	}
}

// TestPublishRefusesBadTraceparents gives sessions traceparents that W3C
// trace context says to ignore. A session given one explicitly refuses to
// publish (middleware drops them before they get here).
func TestPublishRefusesBadTraceparents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tp := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // version 00 has no more fields
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",          // no flags
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",       // upper case
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",       // forbidden version
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",       // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",       // zero parent id
		"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",       // wrong separators
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",       // not hex
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\x00",   // NUL
		good + strings.Repeat("-ab", 2000),                              // version 00, huge
	} {
		sess := b.client.UserSession("user-42", "", outbox.WithTraceparent(tp))
		if err := sess.Publish(ctx, "Created", "Invoice", invoice("inv-1")); !errors.Is(err, outbox.ErrInvalidTraceparent) {
			t.Errorf("traceparent %.80q: Publish = %v, want ErrInvalidTraceparent", tp, err)
		}
	}
	sess := b.client.UserSession("user-42", "", outbox.WithTraceparent(good))
	if err := sess.Publish(ctx, "Created", "Invoice", invoice("inv-1")); err != nil {
		t.Fatalf("valid traceparent: %v", err)
	}
	if n := countEvents(t, b.pool, "true"); n != 0 {
		t.Fatalf("%d events written without a flush", n)
	}
}

// Postgres text cannot hold a NUL byte or invalid UTF-8. Publish must refuse
// such a value with a typed error naming the field, instead of letting Flush
// fail and abort the caller's business transaction.
func TestPublishRefusesTextPostgresCannotStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	withNUL := invoice("inv\x00-1")
	cases := []struct {
		name  string
		field string
		sess  *outbox.Session
		data  map[string]any
		opts  []outbox.PublishOption
	}{
		{"key from data", "key", b.client.UserSession("user-42", ""), withNUL, nil},
		{"WithKey NUL", "key", b.client.UserSession("user-42", ""), invoice("a"), []outbox.PublishOption{outbox.WithKey("k\x00")}},
		{"WithKey not UTF-8", "key", b.client.UserSession("user-42", ""), invoice("a"), []outbox.PublishOption{outbox.WithKey("k\xff")}},
		{"dedupe key", "dedupe key", b.client.UserSession("user-42", ""), invoice("a"), []outbox.PublishOption{outbox.WithDedupeKey("d\x00")}},
		{"tenant", "tenant", b.client.UserSession("user-42", "", outbox.WithTenant("t\x00")), invoice("a"), nil},
		{"job id", "job id", b.client.ServiceSession("job\x00"), invoice("a"), nil},
		{"user id", "actor id", b.client.UserSession("user\x00-42", ""), invoice("a"), nil},
	}
	for _, tc := range cases {
		err := tc.sess.Publish(ctx, "Created", "Invoice", tc.data, tc.opts...)
		var ferr *outbox.FieldError
		if !errors.As(err, &ferr) || !errors.Is(err, outbox.ErrInvalidField) {
			t.Errorf("%s: err = %v, want *outbox.FieldError", tc.name, err)
			continue
		}
		if ferr.Field != tc.field {
			t.Errorf("%s: error names field %q, want %q", tc.name, ferr.Field, tc.field)
		}
		if tc.sess.Len() != 0 {
			t.Errorf("%s: the refused event was buffered", tc.name)
		}
	}
}

// A target must name its levels from the top, each storable and bounded:
// Publish refuses any other with a *TargetError and buffers nothing.
func TestPublishRefusesInvalidTargets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	long := strings.Repeat("x", outbox.MaxTargetBytes+1)
	for name, target := range map[string]outbox.Target{
		"project without collection": {Project: "p1"},
		"layout without project":     {Collection: "c1", Layout: "l1"},
		"layout alone":               {Layout: "l1"},
		"collection too long":        {Collection: long},
		"layout too long":            {Collection: "c1", Project: "p1", Layout: long},
		"NUL byte":                   {Collection: "c\x00"},
		"not UTF-8":                  {Collection: "c1", Project: "p\xff"},
	} {
		sess := b.client.UserSession("user-42", "")
		err := sess.Publish(ctx, "Created", "Invoice", invoice("a"), outbox.WithTarget(target))
		var terr *outbox.TargetError
		if !errors.As(err, &terr) || !errors.Is(err, outbox.ErrInvalidTarget) {
			t.Errorf("%s: err = %v, want *outbox.TargetError", name, err)
			continue
		}
		if terr.Target != target || terr.Topic != "billing.InvoiceCreated" {
			t.Errorf("%s: error names %q %+v", name, terr.Topic, terr.Target)
		}
		if sess.Len() != 0 {
			t.Errorf("%s: the refused event was buffered", name)
		}
	}
	for _, target := range []outbox.Target{{}, {Collection: "c1"}, {Collection: "c1", Project: "p1"}, {Collection: "c1", Project: "p1", Layout: "l1"}} {
		sess := b.client.UserSession("user-42", "")
		if err := sess.Publish(ctx, "Created", "Invoice", invoice("a"), outbox.WithTarget(target)); err != nil {
			t.Errorf("target %+v: %v", target, err)
		} else if got := sess.Unflushed()[0].Target; got != target {
			t.Errorf("buffered target %+v, want %+v", got, target)
		}
	}
}
