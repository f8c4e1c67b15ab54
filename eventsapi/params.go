package eventsapi

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// MaxQueryValues bounds the values of one query parameter.
const MaxQueryValues = MaxPatterns

// FilterFromQuery reads a Filter from URL query parameters, as the query API
// and the SSE stream take it:
//
//	topic, category, entity, action, key, actor_id, actor_type, job_id,
//	causation_id, sender, status, depends_on
//	                patterns of one include selector (repeat a parameter,
//	                or separate values by commas, for alternatives)
//	collection, project, layout
//	                the include selector's target (see Target)
//	exclude_topic, exclude_category, ..., exclude_collection, ...
//	                patterns and target of one exclude selector
//	tenant          one tenant
//	since, until    RFC 3339 times bounding the publish time
//
// Other parameters are left to the caller. Errors wrap ErrInvalidFilter.
func FilterFromQuery(q url.Values) (Filter, error) {
	var f Filter
	var in, ex Selector
	for fld := range fieldCount {
		name := fld.String()
		vs, err := queryList(q, name)
		if err != nil {
			return f, err
		}
		*in.list(fld) = vs
		if vs, err = queryList(q, "exclude_"+name); err != nil {
			return f, err
		}
		*ex.list(fld) = vs
	}
	var err error
	if in.Target, err = queryTarget(q, ""); err != nil {
		return f, err
	}
	if ex.Target, err = queryTarget(q, "exclude_"); err != nil {
		return f, err
	}
	if !in.empty() {
		f.Include = []Selector{in}
	}
	if !ex.empty() {
		f.Exclude = []Selector{ex}
	}
	f.Tenant = q.Get("tenant")
	if f.Since, err = queryTime(q, "since"); err != nil {
		return f, err
	}
	if f.Until, err = queryTime(q, "until"); err != nil {
		return f, err
	}
	return f, nil
}

func queryList(q url.Values, name string) ([]string, error) {
	var out []string
	for _, v := range q[name] {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		if len(out) > MaxQueryValues {
			return nil, fmt.Errorf("%w: %s: more than %d values", ErrInvalidFilter, name, MaxQueryValues)
		}
	}
	return out, nil
}

func queryTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s: %q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", ErrInvalidFilter, name, v)
	}
	return t, nil
}

func (s *Selector) list(f field) *[]string {
	switch f {
	case fieldTopic:
		return &s.Topic
	case fieldCategory:
		return &s.Category
	case fieldEntity:
		return &s.Entity
	case fieldAction:
		return &s.Action
	case fieldKey:
		return &s.Key
	case fieldActorID:
		return &s.ActorID
	case fieldActorType:
		return &s.ActorType
	case fieldJobID:
		return &s.JobID
	case fieldCausationID:
		return &s.CausationID
	case fieldSender:
		return &s.Sender
	case fieldStatus:
		return &s.Status
	case fieldDependsOn:
		return &s.DependsOn
	}
	panic("eventsapi: unknown field")
}

func (s *Selector) empty() bool {
	if !s.Target.IsZero() {
		return false
	}
	for f := range fieldCount {
		if len(*s.list(f)) > 0 {
			return false
		}
	}
	return true
}

// queryTarget reads the target levels named with prefix, one value each.
func queryTarget(q url.Values, prefix string) (Target, error) {
	var t Target
	levels := [...]*string{&t.Collection, &t.Project, &t.Layout}
	for i, name := range targetNames {
		vs := q[prefix+name]
		if len(vs) > 1 {
			return t, fmt.Errorf("%w: %s%s: one value is expected", ErrInvalidFilter, prefix, name)
		}
		if len(vs) == 1 {
			*levels[i] = vs[0]
		}
	}
	return t, nil
}
