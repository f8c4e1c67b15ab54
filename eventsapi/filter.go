package eventsapi

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInvalidFilter is wrapped by every error about a filter that cannot be
// compiled: an empty pattern, a pattern too long, too many selectors.
var ErrInvalidFilter = errors.New("eventsapi: invalid filter")

// Limits of a Filter, so that a subscriber cannot make matching expensive.
const (
	// MaxSelectors bounds Include plus Exclude.
	MaxSelectors = 64
	// MaxPatterns bounds the patterns of one selector, over all fields.
	MaxPatterns = 256
	// MaxPatternBytes bounds one pattern.
	MaxPatternBytes = 256
)

// Selector picks events by their envelope. Each field lists patterns, any of
// which may match (an empty list matches every event); an event matches the
// selector when every field with patterns matches. A pattern is compared
// whole and case-sensitively; "*" in it stands for any run of characters,
// so "billing.*" matches every topic of category billing, "*Created" every
// creation, and "*" anything, including the empty string.
type Selector struct {
	Topic       []string `json:"topic,omitempty"`
	Category    []string `json:"category,omitempty"`
	Entity      []string `json:"entity,omitempty"` // the resource type
	Action      []string `json:"action,omitempty"`
	Key         []string `json:"key,omitempty"` // the resource (source) id
	ActorID     []string `json:"actor_id,omitempty"`
	ActorType   []string `json:"actor_type,omitempty"`
	JobID       []string `json:"job_id,omitempty"`
	CausationID []string `json:"causation_id,omitempty"`
	Sender      []string `json:"sender,omitempty"`
	Status      []string `json:"status,omitempty"`     // a job's status
	DependsOn   []string `json:"depends_on,omitempty"` // a job's source event id
	// Target, when set, selects the events whose target it matches (see
	// Target.Matches): events at that place, above it or below it.
	Target Target `json:"target,omitzero"`
}

// Filter selects events: those matching any Include selector (every event
// when there is none) and no Exclude selector, published within
// [Since, Until) when those are set, of Tenant when it is set.
type Filter struct {
	Include []Selector `json:"include,omitempty"`
	Exclude []Selector `json:"exclude,omitempty"`
	// Tenant restricts the filter to one tenant's events. The server sets it
	// from the caller's credentials; a caller cannot widen it.
	Tenant string `json:"tenant,omitempty"`
	// Since and Until bound the events' publish time (Event.Time).
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
}

// Matcher is a compiled Filter. The zero value and nil match every event.
// It is immutable and safe for concurrent use.
type Matcher struct {
	filter  Filter
	include []compiledSelector
	exclude []compiledSelector
	tenant  string
	scoped  bool // tenant restriction in force
}

// Compile checks f and returns its Matcher. Errors wrap ErrInvalidFilter.
func Compile(f Filter) (*Matcher, error) {
	if n := len(f.Include) + len(f.Exclude); n > MaxSelectors {
		return nil, fmt.Errorf("%w: %d selectors, at most %d", ErrInvalidFilter, n, MaxSelectors)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return nil, fmt.Errorf("%w: until %s is not after since %s", ErrInvalidFilter, f.Until.Format(time.RFC3339Nano), f.Since.Format(time.RFC3339Nano))
	}
	m := &Matcher{filter: f, tenant: f.Tenant, scoped: f.Tenant != ""}
	for i, s := range f.Include {
		cs, err := compileSelector(s)
		if err != nil {
			return nil, fmt.Errorf("include[%d]: %w", i, err)
		}
		m.include = append(m.include, cs)
	}
	for i, s := range f.Exclude {
		cs, err := compileSelector(s)
		if err != nil {
			return nil, fmt.Errorf("exclude[%d]: %w", i, err)
		}
		m.exclude = append(m.exclude, cs)
	}
	return m, nil
}

// MustCompile is Compile for filters known to be valid; it panics otherwise.
func MustCompile(f Filter) *Matcher {
	m, err := Compile(f)
	if err != nil {
		panic(err)
	}
	return m
}

// Filter returns the filter m was compiled from.
func (m *Matcher) Filter() Filter {
	if m == nil {
		return Filter{}
	}
	return m.filter
}

// Tenant returns the tenant m is restricted to, "" when it is not.
func (m *Matcher) Tenant() string {
	if m == nil {
		return ""
	}
	return m.tenant
}

// Match reports whether ev passes the filter.
func (m *Matcher) Match(ev *Event) bool {
	if m == nil {
		return true
	}
	if m.scoped && ev.Tenant != m.tenant {
		return false
	}
	if !m.filter.Since.IsZero() && ev.Time.Before(m.filter.Since) {
		return false
	}
	if !m.filter.Until.IsZero() && !ev.Time.Before(m.filter.Until) {
		return false
	}
	if len(m.include) > 0 {
		in := false
		for i := range m.include {
			if m.include[i].match(ev) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	for i := range m.exclude {
		if m.exclude[i].match(ev) {
			return false
		}
	}
	return true
}

// field names the envelope fields a selector reads, in Selector's order.
type field int

const (
	fieldTopic field = iota
	fieldCategory
	fieldEntity
	fieldAction
	fieldKey
	fieldActorID
	fieldActorType
	fieldJobID
	fieldCausationID
	fieldSender
	fieldStatus
	fieldDependsOn
	fieldCount
)

// Names of the fields as filters spell them (JSON, query parameters).
var fieldNames = [fieldCount]string{"topic", "category", "entity", "action", "key", "actor_id", "actor_type", "job_id", "causation_id", "sender", "status", "depends_on"}

// Names of a target's levels as query parameters and selector fields.
var targetNames = [...]string{"collection", "project", "layout"}

func (f field) String() string { return fieldNames[f] }

func (f field) of(ev *Event) string {
	switch f {
	case fieldTopic:
		return ev.Topic
	case fieldCategory:
		return ev.Category
	case fieldEntity:
		return ev.Entity
	case fieldAction:
		return ev.Action
	case fieldKey:
		return ev.Key
	case fieldActorID:
		return ev.ActorID
	case fieldActorType:
		return ev.ActorType
	case fieldJobID:
		return ev.JobID
	case fieldCausationID:
		return ev.CausationID
	case fieldSender:
		return ev.Sender
	case fieldStatus:
		return string(ev.Status)
	case fieldDependsOn:
		return ev.DependsOn
	}
	return ""
}

func (s *Selector) patterns(f field) []string { return *s.list(f) }

// compiledSelector holds, per field with patterns, the compiled patterns.
type compiledSelector struct {
	fields []compiledField
	target Target // zero: any
}

type compiledField struct {
	field field
	exact map[string]struct{} // patterns without "*"
	globs []pattern
	any   bool // a pattern "*"
}

func compileSelector(s Selector) (compiledSelector, error) {
	var cs compiledSelector
	if err := s.Target.Validate(); err != nil {
		return cs, fmt.Errorf("%w: target: %w", ErrInvalidFilter, err)
	}
	cs.target = s.Target
	total := 0
	for f := range fieldCount {
		ps := s.patterns(f)
		if len(ps) == 0 {
			continue
		}
		total += len(ps)
		if total > MaxPatterns {
			return cs, fmt.Errorf("%w: more than %d patterns", ErrInvalidFilter, MaxPatterns)
		}
		cf := compiledField{field: f}
		for _, p := range ps {
			switch {
			case p == "":
				return cs, fmt.Errorf("%w: %s: empty pattern", ErrInvalidFilter, f)
			case len(p) > MaxPatternBytes:
				return cs, fmt.Errorf("%w: %s: pattern of %d bytes, at most %d", ErrInvalidFilter, f, len(p), MaxPatternBytes)
			case strings.Trim(p, "*") == "":
				cf.any = true
			case !strings.Contains(p, "*"):
				if cf.exact == nil {
					cf.exact = make(map[string]struct{}, len(ps))
				}
				cf.exact[p] = struct{}{}
			default:
				cf.globs = append(cf.globs, compilePattern(p))
			}
		}
		if cf.any {
			continue // matches every event: no test needed
		}
		cs.fields = append(cs.fields, cf)
	}
	return cs, nil
}

func (cs *compiledSelector) match(ev *Event) bool {
	if !cs.target.Matches(ev.Target) {
		return false
	}
	for i := range cs.fields {
		if !cs.fields[i].match(cs.fields[i].field.of(ev)) {
			return false
		}
	}
	return true
}

func (cf *compiledField) match(v string) bool {
	if _, ok := cf.exact[v]; ok {
		return true
	}
	for i := range cf.globs {
		if cf.globs[i].match(v) {
			return true
		}
	}
	return false
}

// pattern is a glob of literal parts separated by "*": prefix, middle parts
// in order, suffix.
type pattern struct {
	parts []string // split on "*"; first is the prefix, last the suffix
}

func compilePattern(p string) pattern { return pattern{parts: strings.Split(p, "*")} }

func (p pattern) match(v string) bool {
	first, last := p.parts[0], p.parts[len(p.parts)-1]
	if len(v) < len(first)+len(last) || !strings.HasPrefix(v, first) || !strings.HasSuffix(v, last) {
		return false
	}
	v = v[len(first) : len(v)-len(last)]
	for _, mid := range p.parts[1 : len(p.parts)-1] {
		i := strings.Index(v, mid)
		if i < 0 {
			return false
		}
		v = v[i+len(mid):]
	}
	return true
}
