package eventsapi_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// filterEvents are the events the filter table matches against, by name.
var filterEvents = map[string]eventsapi.Event{
	"invoice created": {Topic: "billing.InvoiceCreated", Category: "billing", Entity: "Invoice", Action: "Created", Key: "inv-1", Tenant: "acme", ActorID: "user-1", ActorType: "user", JobID: "job-1", CausationID: "cause-1", Time: t0},
	"invoice paid":    {Topic: "billing.InvoicePaid", Category: "billing", Entity: "Invoice", Action: "Paid", Key: "inv-2", Tenant: "globex", ActorID: "svc-pay", ActorType: "service", Time: t0.Add(time.Hour)},
	"invoice deleted": {Topic: "billing.InvoiceDeleted", Category: "billing", Entity: "Invoice", Action: "Deleted", Key: "inv-1", Tenant: "acme", ActorID: "user-2", ActorType: "user", Time: t0.Add(2 * time.Hour)},
	"parcel sent":     {Topic: "shipping.ParcelSent", Category: "shipping", Entity: "Parcel", Action: "Sent", Key: "p-1", Tenant: "acme", JobID: "job-1", Time: t0.Add(3 * time.Hour)},
	"no tenant":       {Topic: "audit.LoginDone", Category: "audit", Entity: "Login", Action: "Done", Key: "", Time: t0.Add(4 * time.Hour)},
}

func TestFilterMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		filter eventsapi.Filter
		want   []string // the filterEvents it passes
	}{
		{"empty passes all", eventsapi.Filter{},
			[]string{"invoice created", "invoice paid", "invoice deleted", "parcel sent", "no tenant"}},
		{"exact topic", eventsapi.Filter{Include: []eventsapi.Selector{{Topic: []string{"billing.InvoicePaid"}}}},
			[]string{"invoice paid"}},
		{"topic is compared whole", eventsapi.Filter{Include: []eventsapi.Selector{{Topic: []string{"billing.Invoice"}}}},
			nil},
		{"case matters", eventsapi.Filter{Include: []eventsapi.Selector{{Category: []string{"Billing"}}}},
			nil},
		{"prefix wildcard", eventsapi.Filter{Include: []eventsapi.Selector{{Topic: []string{"billing.*"}}}},
			[]string{"invoice created", "invoice paid", "invoice deleted"}},
		{"suffix wildcard", eventsapi.Filter{Include: []eventsapi.Selector{{Topic: []string{"*Created", "*Sent"}}}},
			[]string{"invoice created", "parcel sent"}},
		{"inner wildcards", eventsapi.Filter{Include: []eventsapi.Selector{{Topic: []string{"b*.Inv*e*ted"}}}},
			[]string{"invoice created", "invoice deleted"}},
		{"star alone matches empty values", eventsapi.Filter{Include: []eventsapi.Selector{{Key: []string{"*"}}}},
			[]string{"invoice created", "invoice paid", "invoice deleted", "parcel sent", "no tenant"}},
		{"a pattern of stars is a star", eventsapi.Filter{Include: []eventsapi.Selector{{Key: []string{"**"}}}},
			[]string{"invoice created", "invoice paid", "invoice deleted", "parcel sent", "no tenant"}},
		{"a wildcard needs its literal parts", eventsapi.Filter{Include: []eventsapi.Selector{{Key: []string{"inv-1*1"}}}},
			nil},
		{"fields of a selector all match", eventsapi.Filter{Include: []eventsapi.Selector{{Entity: []string{"Invoice"}, Key: []string{"inv-1"}}}},
			[]string{"invoice created", "invoice deleted"}},
		{"selectors are alternatives", eventsapi.Filter{Include: []eventsapi.Selector{{Action: []string{"Paid"}}, {Category: []string{"shipping"}}}},
			[]string{"invoice paid", "parcel sent"}},
		{"actor, job, causation", eventsapi.Filter{Include: []eventsapi.Selector{{ActorType: []string{"user"}, JobID: []string{"job-*"}, CausationID: []string{"cause-1"}}}},
			[]string{"invoice created"}},
		{"exclude alone", eventsapi.Filter{Exclude: []eventsapi.Selector{{Category: []string{"billing"}}}},
			[]string{"parcel sent", "no tenant"}},
		{"exclude wins over include", eventsapi.Filter{
			Include: []eventsapi.Selector{{Topic: []string{"billing.*"}}},
			Exclude: []eventsapi.Selector{{Action: []string{"Deleted"}}, {ActorID: []string{"svc-*"}}}},
			[]string{"invoice created"}},
		{"an exclude selector needs all its fields", eventsapi.Filter{
			Exclude: []eventsapi.Selector{{Category: []string{"billing"}, Key: []string{"inv-2"}}}},
			[]string{"invoice created", "invoice deleted", "parcel sent", "no tenant"}},
		{"tenant scope", eventsapi.Filter{Tenant: "acme"},
			[]string{"invoice created", "invoice deleted", "parcel sent"}},
		{"tenant scope and include", eventsapi.Filter{Tenant: "globex", Include: []eventsapi.Selector{{Key: []string{"inv-1"}}}},
			nil},
		{"since is inclusive", eventsapi.Filter{Since: t0.Add(time.Hour)},
			[]string{"invoice paid", "invoice deleted", "parcel sent", "no tenant"}},
		{"until is exclusive", eventsapi.Filter{Until: t0.Add(2 * time.Hour)},
			[]string{"invoice created", "invoice paid"}},
		{"time range and tenant", eventsapi.Filter{Tenant: "acme", Since: t0.Add(time.Minute), Until: t0.Add(4 * time.Hour)},
			[]string{"invoice deleted", "parcel sent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := eventsapi.Compile(tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]bool{}
			for _, n := range tt.want {
				want[n] = true
			}
			for name, ev := range filterEvents {
				if got := m.Match(&ev); got != want[name] {
					t.Errorf("%s: match %v, want %v", name, got, want[name])
				}
			}
		})
	}
	var nilMatcher *eventsapi.Matcher
	ev := filterEvents["no tenant"]
	if !nilMatcher.Match(&ev) {
		t.Error("a nil Matcher does not match")
	}
}

func TestCompileInvalid(t *testing.T) {
	t.Parallel()
	many := make([]eventsapi.Selector, eventsapi.MaxSelectors+1)
	for i := range many {
		many[i] = eventsapi.Selector{Topic: []string{"x"}}
	}
	patterns := make([]string, eventsapi.MaxPatterns+1)
	for i := range patterns {
		patterns[i] = "p"
	}
	tests := []struct {
		name    string
		filter  eventsapi.Filter
		mention string
	}{
		{"empty pattern", eventsapi.Filter{Include: []eventsapi.Selector{{Topic: []string{""}}}}, "empty pattern"},
		{"empty exclude pattern", eventsapi.Filter{Exclude: []eventsapi.Selector{{Key: []string{"a", ""}}}}, "exclude[0]"},
		{"pattern too long", eventsapi.Filter{Include: []eventsapi.Selector{{Key: []string{strings.Repeat("k", eventsapi.MaxPatternBytes+1)}}}}, "bytes"},
		{"too many selectors", eventsapi.Filter{Include: many}, "selectors"},
		{"too many patterns", eventsapi.Filter{Include: []eventsapi.Selector{{Topic: patterns}}}, "patterns"},
		{"until before since", eventsapi.Filter{Since: t0, Until: t0.Add(-time.Second)}, "until"},
		{"until at since", eventsapi.Filter{Since: t0, Until: t0}, "until"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := eventsapi.Compile(tt.filter)
			if !errors.Is(err, eventsapi.ErrInvalidFilter) || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %v, want ErrInvalidFilter mentioning %q", err, tt.mention)
			}
		})
	}
}

func TestFilterFromQuery(t *testing.T) {
	t.Parallel()
	q, _ := url.ParseQuery("topic=billing.*,shipping.ParcelSent&topic=audit.*&key=inv-1&exclude_action=Deleted&exclude_actor_type=service&tenant=acme&since=2026-12-02T10:00:00Z&until=2026-12-02T12:00:00.5Z&other=ignored")
	f, err := eventsapi.FilterFromQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Include) != 1 || strings.Join(f.Include[0].Topic, " ") != "billing.* shipping.ParcelSent audit.*" || strings.Join(f.Include[0].Key, " ") != "inv-1" {
		t.Errorf("include %+v", f.Include)
	}
	if len(f.Exclude) != 1 || f.Exclude[0].Action[0] != "Deleted" || f.Exclude[0].ActorType[0] != "service" {
		t.Errorf("exclude %+v", f.Exclude)
	}
	if f.Tenant != "acme" || !f.Since.Equal(t0) || !f.Until.Equal(t0.Add(2*time.Hour+500*time.Millisecond)) {
		t.Errorf("tenant %q since %s until %s", f.Tenant, f.Since, f.Until)
	}
	m, err := eventsapi.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	// The exclude parameters make one selector: an event is excluded when
	// it is Deleted and by a service, which the deletion is not.
	for name, want := range map[string]bool{"invoice created": true, "invoice paid": false, "invoice deleted": true, "parcel sent": false} {
		ev := filterEvents[name]
		if got := m.Match(&ev); got != want {
			t.Errorf("%s: match %v, want %v", name, got, want)
		}
	}

	for _, bad := range []string{"since=yesterday", "until=2026-13-01T00:00:00Z", "key=" + strings.Repeat("k,", eventsapi.MaxQueryValues+1)} {
		q, _ := url.ParseQuery(bad)
		if _, err := eventsapi.FilterFromQuery(q); !errors.Is(err, eventsapi.ErrInvalidFilter) {
			t.Errorf("%.40s: error %v, want ErrInvalidFilter", bad, err)
		}
	}
}
