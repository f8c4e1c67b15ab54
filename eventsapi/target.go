package eventsapi

import (
	"errors"
	"fmt"
)

// ErrInvalidTarget is wrapped by the errors about a target that skips a
// level, is too long, or contradicts what a TargetResolver says.
var ErrInvalidTarget = errors.New("eventsapi: invalid target")

// MaxTargetBytes bounds each id of a Target.
const MaxTargetBytes = 256

// Target scopes an event, or a subscription, to a place in a three-level
// hierarchy: a collection holds projects, a project holds layouts. A target
// names its levels from the top: a layout with its project and collection,
// a project with its collection, or a collection alone. The zero Target
// names no place.
//
// An event and a subscription match when they agree on every level both
// name: an event published at a layout is received by subscriptions at that
// layout, its project or its collection; an event published at a collection
// by subscriptions at the collection or at any project or layout under it.
// A subscription with a target does not receive events without one; a
// subscription without a target receives every event.
type Target struct {
	Collection string `json:"collection,omitempty"`
	Project    string `json:"project,omitempty"`
	Layout     string `json:"layout,omitempty"`
}

// IsZero reports whether t names no place.
func (t Target) IsZero() bool { return t == Target{} }

// String writes t as its levels from the top, separated by "/".
func (t Target) String() string {
	switch {
	case t.Layout != "":
		return t.Collection + "/" + t.Project + "/" + t.Layout
	case t.Project != "":
		return t.Collection + "/" + t.Project
	}
	return t.Collection
}

// Validate checks that t names its levels from the top, none longer than
// MaxTargetBytes. Errors wrap ErrInvalidTarget.
func (t Target) Validate() error {
	for _, l := range [...]struct{ name, v string }{{"collection", t.Collection}, {"project", t.Project}, {"layout", t.Layout}} {
		if len(l.v) > MaxTargetBytes {
			return fmt.Errorf("%w: %s of %d bytes, at most %d", ErrInvalidTarget, l.name, len(l.v), MaxTargetBytes)
		}
	}
	switch {
	case t.Layout != "" && (t.Project == "" || t.Collection == ""):
		return fmt.Errorf("%w: layout %q needs its project and collection", ErrInvalidTarget, t.Layout)
	case t.Project != "" && t.Collection == "":
		return fmt.Errorf("%w: project %q needs its collection", ErrInvalidTarget, t.Project)
	}
	return nil
}

// Matches reports whether an event at target ev reaches a subscription at
// t: both agree on every level both name. A zero t matches every event; a
// zero ev matches only a zero t.
func (t Target) Matches(ev Target) bool {
	if t.IsZero() {
		return true
	}
	if ev.IsZero() {
		return false
	}
	return agree(t.Collection, ev.Collection) && agree(t.Project, ev.Project) && agree(t.Layout, ev.Layout)
}

// agree reports whether two levels agree: equal, or one of them not named.
func agree(a, b string) bool { return a == "" || b == "" || a == b }
