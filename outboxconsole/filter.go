package outboxconsole

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// ErrInvalidFilter is matched by the errors of filters and forms that make
// no sense: an unknown state, a malformed id or time, a value too long.
var ErrInvalidFilter = errors.New("invalid filter")

// Bounds on what a request may ask for.
const (
	maxValueLen = 200  // a filter value
	maxIDs      = 1000 // ids one action selects
	maxReason   = 500  // a discard's reason
)

// timeLayouts are the layouts From and To are read in: a browser's
// datetime-local input (taken as UTC) and RFC 3339.
var timeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339}

// parseFilter reads a filter from a list's query or an action's form.
func parseFilter(v url.Values) (*Filter, error) {
	f := &Filter{}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"state", &f.State}, {"topic", &f.Topic}, {"key", &f.Key}, {"tenant", &f.Tenant}, {"job", &f.JobID}, {"error", &f.Error}} {
		s := strings.TrimSpace(v.Get(p.name))
		if len(s) > maxValueLen || !utf8.ValidString(s) {
			return nil, fmt.Errorf("%w: %s: longer than %d bytes or not UTF-8", ErrInvalidFilter, p.name, maxValueLen)
		}
		*p.dst = s
	}
	if f.State == "in-flight" {
		f.State = "in_flight"
	}
	if f.State != "" && !slices.Contains(States(), f.State) {
		return nil, fmt.Errorf("%w: state: %q is not one of %s", ErrInvalidFilter, f.State, strings.Join(States(), ", "))
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		s := v.Get(p.name)
		if s == "" {
			continue
		}
		var err error
		for _, l := range timeLayouts {
			if *p.dst, err = time.ParseInLocation(l, s, time.UTC); err == nil {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %q is not a time such as 2026-01-02T15:04", ErrInvalidFilter, p.name, s)
		}
	}
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"after", &f.After}, {"before", &f.Before}, {"max_seq", &f.MaxSeq}} {
		s := v.Get(p.name)
		if s == "" {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: %s: %q is not a position", ErrInvalidFilter, p.name, s)
		}
		*p.dst = n
	}
	ids := v["id"]
	if len(ids) > maxIDs {
		return nil, fmt.Errorf("%w: more than %d ids", ErrInvalidFilter, maxIDs)
	}
	for _, s := range ids {
		id, err := uuid.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%w: id: %q is not an event id", ErrInvalidFilter, s)
		}
		f.IDs = append(f.IDs, id)
	}
	return f, nil
}

// query encodes f's conditions (not its cursor) as a list's query.
func query(f *Filter) url.Values {
	v := url.Values{}
	for _, p := range []struct{ name, val string }{
		{"state", f.State}, {"topic", f.Topic}, {"key", f.Key}, {"tenant", f.Tenant}, {"job", f.JobID}, {"error", f.Error},
	} {
		if p.val != "" {
			v.Set(p.name, p.val)
		}
	}
	if !f.From.IsZero() {
		v.Set("from", f.From.UTC().Format(timeLayouts[1]))
	}
	if !f.To.IsZero() {
		v.Set("to", f.To.UTC().Format(timeLayouts[1]))
	}
	return v
}
