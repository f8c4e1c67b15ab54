package brokersink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

func TestTemplate(t *testing.T) {
	ev := &outbox.Event{Topic: "billing.InvoiceCreated", Category: "billing", Entity: "Invoice", Action: "Created"}
	noSlash := func(s string) error {
		if strings.Contains(s, "/") {
			return errors.New("no slash")
		}
		return nil
	}
	for _, tc := range []struct {
		tmpl, tenant, want string
	}{
		{"{topic}", "", "billing.InvoiceCreated"},
		{"{tenant}/{category}/{action}", "acme", "acme/billing/Created"},
		{"{tenant}/{category}/{action}", "", "_/billing/Created"},
		{"events/{entity}", "", "events/Invoice"},
		{"all", "", "all"},
	} {
		tmpl, err := ParseTemplate(tc.tmpl, "_", nil)
		if err != nil {
			t.Fatal(err)
		}
		ev.Tenant = tc.tenant
		if got, err := tmpl.Expand(ev, noSlash); err != nil || got != tc.want {
			t.Errorf("%s with tenant %q = %q, %v; want %q", tc.tmpl, tc.tenant, got, err, tc.want)
		}
	}
	tmpl, _ := ParseTemplate("{tenant}/x", "_", nil)
	ev.Tenant = "a/b"
	if _, err := tmpl.Expand(ev, noSlash); err == nil || !strings.Contains(err.Error(), `{tenant} "a/b": no slash`) {
		t.Errorf("tenant a/b: %v", err)
	}
	for _, bad := range []string{"", "{x}", "a}", "{a", "{topic}{"} {
		if _, err := ParseTemplate(bad, "_", nil); !errors.Is(err, ErrTemplate) {
			t.Errorf("ParseTemplate(%q) = %v, want ErrTemplate", bad, err)
		}
	}
	if _, err := ParseTemplate("a/{topic}", "_", noSlash); err == nil {
		t.Error("a literal the sink refuses was taken")
	}
}

// events returns events with the given keys, in order, their topics t0, t1
// ... by the digit after the key ("a0" is key a, topic t0).
func events(spec ...string) []*outbox.Event {
	evs := make([]*outbox.Event, len(spec))
	for i, s := range spec {
		evs[i] = &outbox.Event{ID: uuid.New(), Key: s[:1], Topic: "t" + s[1:], Data: []byte(fmt.Sprint(i))}
	}
	return evs
}

func names(evs []*outbox.Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.Key+ev.Topic[1:])
	}
	return strings.Join(s, " ")
}

func TestSplit(t *testing.T) {
	sameTopic := func(a, b *outbox.Event) bool { return a.Topic == b.Topic }
	evs := events("a0", "b0", "a0", "a1", "b0", "a0", "c1")
	wave, rest := split(evs, sameTopic)
	if names(wave) != "a0 b0 a0 b0 c1" || names(rest) != "a1 a0" {
		t.Errorf("same topic together: wave %q, rest %q", names(wave), names(rest))
	}
	wave, rest = split(evs, nil)
	if names(wave) != "a0 b0 c1" || names(rest) != "a0 a1 b0 a0" {
		t.Errorf("one per key: wave %q, rest %q", names(wave), names(rest))
	}
}

func TestSend(t *testing.T) {
	boom := errors.New("boom")
	evs := events("a0", "b0", "a0", "b0", "c0", "c0")
	var waves []string
	// a's first event fails, b's second fails permanently.
	err := Send(context.Background(), evs, nil, func(_ context.Context, wave []*outbox.Event) []error {
		waves = append(waves, names(wave))
		errs := make([]error, len(wave))
		for i, ev := range wave {
			switch ev {
			case evs[0]:
				errs[i] = boom
			case evs[3]:
				errs[i] = relay.Permanent(boom)
			}
		}
		return errs
	})
	if !slices.Equal(waves, []string{"a0 b0 c0", "b0 c0"}) {
		t.Errorf("waves %q", waves)
	}
	var be *relay.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 3 {
		t.Fatalf("Send = %v, want 3 failed", err)
	}
	if err := be.Failed[evs[0].ID.String()]; !errors.Is(err, boom) || errors.Is(err, relay.ErrNotSent) {
		t.Errorf("a's first: %v", err)
	}
	if err := be.Failed[evs[2].ID.String()]; !errors.Is(err, relay.ErrNotSent) {
		t.Errorf("a's second: %v, want held back", err)
	}
	if err := be.Failed[evs[3].ID.String()]; !relay.IsPermanent(err) {
		t.Errorf("b's second: %v, want permanent", err)
	}

	// A wave that fails whole, retryably, ends the call.
	waves = nil
	err = Send(context.Background(), evs, nil, func(_ context.Context, wave []*outbox.Event) []error {
		waves = append(waves, names(wave))
		errs := make([]error, len(wave))
		for i := range errs {
			errs[i] = boom
		}
		return errs
	})
	if len(waves) != 1 || !errors.As(err, &be) || len(be.Failed) != len(evs) {
		t.Fatalf("broker down: waves %q, Send = %v", waves, err)
	}
	for _, ev := range []*outbox.Event{evs[2], evs[3], evs[5]} {
		if err := be.Failed[ev.ID.String()]; !errors.Is(err, relay.ErrNotSent) {
			t.Errorf("after the failed wave: %v, want not sent", err)
		}
	}

	// A cancelled context sends nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = Send(ctx, evs, nil, func(context.Context, []*outbox.Event) []error { panic("sent") })
	if !errors.Is(err, relay.ErrNotSent) {
		t.Errorf("cancelled: Send = %v, want ErrNotSent", err)
	}
}
