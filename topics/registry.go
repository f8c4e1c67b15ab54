package topics

import (
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/txoutbox/txoutbox/topics/internal/fastpath"
)

// Topic is one entry of the definitions file: what can be published under a
// name and what its data must look like. A Topic belongs to its [Registry]
// and must not be modified.
type Topic struct {
	// Name is the full topic name, {Category}.{Entity}{Action}, e.g. billing.InvoiceCreated.
	Name        string
	Category    string // e.g. billing
	Entity      string // e.g. Invoice
	Action      string // e.g. Created
	Description string // "" when the file has none: bc-events does not require one

	// Key is the JSON pointer of the ordering key inside the event data;
	// events with the same key are delivered in order. Defaults to "/id".
	Key string
	// Version is the version of the data's schema. Defaults to 1.
	Version int
	// Poison says what the relay does with a key after one of its events was
	// dead-lettered: "block" holds its later events back, "skip" delivers
	// them (relay.PoisonBlock and relay.PoisonSkip), "" leaves it to the
	// relay's default.
	Poison string

	// Schema is the JSON Schema of the data as JSON-compatible values
	// (map[string]any, []any, string, json.Number, bool, nil), for
	// documentation and code generation.
	Schema map[string]any

	File string // definitions file the topic comes from
	Line int    // line of the topic's entry in File

	schema *jsonschema.Schema
	fast   *fastpath.Path // nil when the schema has none
	// keyChecked is true when the schema guarantees a string or integer at Key,
	// so valid data always has a key.
	keyChecked bool
}

// The values [Topic.Poison] may take besides "": the relay's policies, which
// package relay defines and documents.
const (
	poisonBlock = "block"
	poisonSkip  = "skip"
)

// Registry is the set of topics a service may publish, loaded from its
// definitions file with [Load] or [Parse]. It is immutable and safe for
// concurrent use.
type Registry struct {
	defaultCategory string
	topics          []*Topic          // sorted by name
	byName          map[string]*Topic // exact full name
	byNormName      map[string]*Topic // normalised full name: "billing.invoicecreated"
	byNorm          map[string]*Topic // normalised parts: "billing.invoice.created"
	entities        map[string][]*Topic
	categories      map[string]bool
}

// DefaultCategory is the category of topics that do not name one; [Registry.Lookup]
// uses it when called with an empty category.
func (r *Registry) DefaultCategory() string { return r.defaultCategory }

// Topics returns every topic sorted by name. The slice is the caller's to keep.
func (r *Registry) Topics() []*Topic { return slices.Clone(r.topics) }

// Topic returns the topic with the full name, e.g. billing.InvoiceCreated. It
// also accepts the spellings [Registry.Lookup] does (billing.invoice_created).
func (r *Registry) Topic(name string) (*Topic, bool) {
	if t, ok := r.byName[name]; ok {
		return t, true
	}
	var buf [128]byte
	t, ok := r.byNormName[string(appendNorm(buf[:0], name))]
	return t, ok
}

// Lookup finds the topic for an entity and action in a category; an empty
// category means the default one. Any common spelling matches: Created,
// created and CREATED; MyEntity, myEntity, my_entity, my-entity and myentity;
// the category ignores case. Lookup does not allocate when the topic exists.
//
// An unknown topic yields an [*UnknownTopicError] with a hint naming the
// closest topic that does exist.
func (r *Registry) Lookup(category, entity, action string) (*Topic, error) {
	if category == "" {
		category = r.defaultCategory
	}
	var buf [128]byte
	b := appendNorm(buf[:0], category)
	b = append(b, '.')
	b = appendNorm(b, entity)
	b = append(b, '.')
	b = appendNorm(b, action)
	if t, ok := r.byNorm[string(b)]; ok {
		return t, nil
	}
	return nil, r.unknown(category, entity, action)
}

func (r *Registry) unknown(category, entity, action string) *UnknownTopicError {
	e := &UnknownTopicError{Category: category, Entity: entity, Action: action}
	nc := normalize(category)
	if !r.categories[nc] {
		if len(r.categories) > 0 {
			cats := make([]string, 0, len(r.categories))
			for _, t := range r.topics {
				if !slices.Contains(cats, t.Category) {
					cats = append(cats, t.Category)
				}
			}
			slices.Sort(cats)
			e.Hint = "known categories: " + strings.Join(cats, ", ")
		}
		if t := r.closest(nc + "." + normalize(entity) + normalize(action)); t != nil {
			e.Hint = "did you mean " + t.Name + "?"
		}
		return e
	}
	if ts := r.entities[nc+"."+normalize(entity)]; len(ts) > 0 {
		actions := make([]string, len(ts))
		for i, t := range ts {
			actions[i] = t.Action
		}
		e.Hint = ts[0].Entity + " has actions " + strings.Join(actions, ", ")
		if a := suggest(action, actions); a != "" {
			e.Hint = "did you mean " + ts[slices.Index(actions, a)].Name + "? " + e.Hint
		}
		return e
	}
	ne, na := normalize(entity), normalize(action)
	for _, t := range r.topics {
		if normalize(t.Entity) == ne && normalize(t.Action) == na {
			e.Hint = "did you mean " + t.Name + "?" // the same topic in another category
			return e
		}
	}
	if t := r.closest(nc + "." + ne + na); t != nil {
		e.Hint = "did you mean " + t.Name + "?"
	}
	return e
}

// closest returns the topic whose normalised name is nearest to norm, if any
// is near enough to be a plausible typo.
func (r *Registry) closest(norm string) *Topic {
	var best *Topic
	bestDist := len(norm)/3 + 1
	for _, t := range r.topics {
		if d := distance(norm, normalize(t.Name)); d <= bestDist && (best == nil || d < bestDist) {
			best, bestDist = t, d
		}
	}
	return best
}

// appendNorm appends s lower-cased (ASCII) without '_', '-' and spaces, the
// form all spellings of a name share.
func appendNorm(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || c == '-' || c == ' ':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

func normalize(s string) string { return string(appendNorm(nil, s)) }

// newRegistry indexes topics, which must be free of duplicates.
func newRegistry(defaultCategory string, ts []*Topic) *Registry {
	slices.SortFunc(ts, func(a, b *Topic) int { return strings.Compare(a.Name, b.Name) })
	r := &Registry{
		defaultCategory: defaultCategory,
		topics:          ts,
		byName:          make(map[string]*Topic, len(ts)),
		byNormName:      make(map[string]*Topic, len(ts)),
		byNorm:          make(map[string]*Topic, len(ts)),
		entities:        make(map[string][]*Topic),
		categories:      map[string]bool{defaultCategory: true},
	}
	for _, t := range ts {
		r.byName[t.Name] = t
		r.byNormName[normalize(t.Name)] = t
		r.byNorm[partsKey(t)] = t
		ek := t.Category + "." + normalize(t.Entity)
		r.entities[ek] = append(r.entities[ek], t)
		r.categories[t.Category] = true
	}
	return r
}

func partsKey(t *Topic) string {
	return t.Category + "." + normalize(t.Entity) + "." + normalize(t.Action)
}
