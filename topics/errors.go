package topics

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownTopic is matched by every [*UnknownTopicError], so callers that only
// need to know "no such topic" can use errors.Is without a type assertion.
var ErrUnknownTopic = errors.New("unknown topic")

// ErrTooLarge is returned by [Load] and [Parse] when the definitions exceed the
// size limit ([MaxSizeDefault] unless changed with [WithMaxSize]). The limit
// keeps a runaway or hostile file from exhausting memory before any check runs.
var ErrTooLarge = errors.New("topic definitions too large")

// DefinitionError is one problem in a topic definitions file, with the position
// that caused it so editors and CI logs can jump straight to it.
type DefinitionError struct {
	File   string
	Line   int // 1-based; 0 when the problem has no position (e.g. the whole file)
	Column int // 1-based
	Msg    string
	Hint   string // how to fix it; may be empty
}

// Error formats the problem as "file:line:col: msg (hint: ...)", the form
// compilers use, so editors recognise it.
func (e *DefinitionError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteByte(')')
	}
	return b.String()
}

// LoadError holds every problem found in a definitions file. All of them are
// reported at once, so fixing a file takes one round trip rather than one per
// mistake.
type LoadError struct {
	Errors []*DefinitionError // sorted by position
}

// Error joins the problems, one per line.
func (e *LoadError) Error() string {
	var b strings.Builder
	for i, d := range e.Errors {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.Error())
	}
	return b.String()
}

// Unwrap returns the individual problems, so errors.As finds a
// [*DefinitionError] inside a [*LoadError].
func (e *LoadError) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, d := range e.Errors {
		errs[i] = d
	}
	return errs
}

// UnknownTopicError says that no topic matches a lookup, with a hint pointing
// at the topic the caller most likely meant.
type UnknownTopicError struct {
	Category string // as looked up, with the default category filled in
	Entity   string
	Action   string
	Hint     string // e.g. "Invoice has actions Cancelled, Created, Paid"; may be empty
}

// Error names the topic as it was asked for.
func (e *UnknownTopicError) Error() string {
	msg := "unknown topic " + e.Category + "." + e.Entity + e.Action
	if e.Hint != "" {
		msg += " (hint: " + e.Hint + ")"
	}
	return msg
}

// Is reports whether target is [ErrUnknownTopic].
func (e *UnknownTopicError) Is(target error) bool { return target == ErrUnknownTopic }

// ValidationError says that event data does not fit its topic. It names the
// topic and the JSON pointer of the failing value so that a caller can map the
// failure back to a field of its own.
type ValidationError struct {
	Topic    string // full name, e.g. billing.InvoiceCreated
	Category string
	Entity   string
	Action   string
	Path     string   // JSON pointer of the first failing location; "" for the document itself
	Msg      string   // what is wrong at Path
	Causes   []string // every failure found, as "path: message" ("(root)" for the document)
}

// Error reads "invalid data for billing.InvoiceCreated at /amount_cents: got string, want integer".
func (e *ValidationError) Error() string {
	if e.Path == "" {
		return "invalid data for " + e.Topic + ": " + e.Msg
	}
	return "invalid data for " + e.Topic + " at " + e.Path + ": " + e.Msg
}
