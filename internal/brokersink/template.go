package brokersink

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/txoutbox/txoutbox/outbox"
)

// Placeholders a topic template may hold.
const (
	PlaceholderTopic    = "{topic}"    // billing.InvoiceCreated
	PlaceholderCategory = "{category}" // billing
	PlaceholderEntity   = "{entity}"   // Invoice
	PlaceholderAction   = "{action}"   // Created
	PlaceholderTenant   = "{tenant}"   // the event's tenant, or the template's stand-in when it has none
)

var placeholderRE = regexp.MustCompile(`\{[^{}]*\}`)

// ErrTemplate is wrapped by every error about a template itself.
var ErrTemplate = errors.New("invalid topic template")

// Template builds a broker topic from an event's envelope.
type Template struct {
	src      string
	parts    []string // literals at even indexes, placeholders at odd ones
	noTenant string
}

// ParseTemplate parses tmpl. Its literal parts must pass literalOK, which
// may be nil. noTenant is what {tenant} becomes for an event without a
// tenant.
func ParseTemplate(tmpl, noTenant string, literalOK func(string) error) (*Template, error) {
	if tmpl == "" {
		return nil, fmt.Errorf("%w: empty", ErrTemplate)
	}
	t := &Template{src: tmpl, noTenant: noTenant}
	rest := tmpl
	for {
		loc := placeholderRE.FindStringIndex(rest)
		lit := rest
		if loc != nil {
			lit = rest[:loc[0]]
		}
		if strings.ContainsAny(lit, "{}") {
			return nil, fmt.Errorf("%w: %q: unbalanced brace", ErrTemplate, tmpl)
		}
		if literalOK != nil && lit != "" {
			if err := literalOK(lit); err != nil {
				return nil, fmt.Errorf("%w: %q: %w", ErrTemplate, tmpl, err)
			}
		}
		t.parts = append(t.parts, lit)
		if loc == nil {
			return t, nil
		}
		p := rest[loc[0]:loc[1]]
		switch p {
		case PlaceholderTopic, PlaceholderCategory, PlaceholderEntity, PlaceholderAction, PlaceholderTenant:
		default:
			return nil, fmt.Errorf("%w: %q: unknown placeholder %s (use {topic}, {category}, {entity}, {action} or {tenant})", ErrTemplate, tmpl, p)
		}
		t.parts = append(t.parts, p)
		rest = rest[loc[1]:]
	}
}

// String returns the template as written.
func (t *Template) String() string { return t.src }

// Expand returns the topic of ev. Each placeholder's value must pass
// valueOK, which may be nil; its error names the placeholder.
func (t *Template) Expand(ev *outbox.Event, valueOK func(string) error) (string, error) {
	if len(t.parts) == 1 {
		return t.parts[0], nil
	}
	var b strings.Builder
	for i, p := range t.parts {
		if i%2 == 0 {
			b.WriteString(p)
			continue
		}
		v := t.value(ev, p)
		if valueOK != nil {
			if err := valueOK(v); err != nil {
				return "", fmt.Errorf("topic template %q: %s %q: %w", t.src, p, v, err)
			}
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

func (t *Template) value(ev *outbox.Event, p string) string {
	switch p {
	case PlaceholderTopic:
		return ev.Topic
	case PlaceholderCategory:
		return ev.Category
	case PlaceholderEntity:
		return ev.Entity
	case PlaceholderAction:
		return ev.Action
	default:
		if ev.Tenant == "" {
			return t.noTenant
		}
		return ev.Tenant
	}
}
