package eventsapi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/txoutbox/txoutbox/internal/envelope"
	"github.com/txoutbox/txoutbox/outbox"
)

// ErrInvalidTarget is wrapped by the errors about a target that skips a
// level, is too long, or contradicts what a TargetResolver says.
var ErrInvalidTarget = errors.New("eventsapi: invalid target")

// MaxTargetBytes bounds each id of a Target.
const MaxTargetBytes = envelope.MaxTargetBytes

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
func (t Target) String() string { return outbox.Target(t).String() }

// Validate checks that t names its levels from the top, each valid UTF-8
// without NUL bytes and no longer than MaxTargetBytes. Errors wrap
// ErrInvalidTarget.
func (t Target) Validate() error {
	if err := envelope.CheckTarget(t.Collection, t.Project, t.Layout); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTarget, err)
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

// TargetResolver knows the hierarchy of collections, projects and layouts.
// Given a target as a publisher named it, with at least its deepest level
// (say a layout alone), ResolveTarget returns the full chain of that
// deepest level: for a layout its project and collection, for a project its
// collection, for a collection itself. A place it does not know is an
// error wrapping ErrInvalidTarget; any other error says it could not tell
// (its database is down, say).
type TargetResolver interface {
	ResolveTarget(ctx context.Context, t Target) (Target, error)
}

// TargetResolverFunc adapts a function to a TargetResolver.
type TargetResolverFunc func(ctx context.Context, t Target) (Target, error)

// ResolveTarget calls f.
func (f TargetResolverFunc) ResolveTarget(ctx context.Context, t Target) (Target, error) {
	return f(ctx, t)
}

// resolveTarget completes and checks the target of an event to store.
// Without Config.TargetResolver, t must name its levels from the top
// (Validate). With one, the levels above t's deepest are filled in from what
// the resolver says, and those t names must agree with it. An error about
// the target wraps ErrInvalidTarget; one that does not is the resolver's
// failure to tell.
func (s *Server) resolveTarget(ctx context.Context, t Target) (Target, error) {
	if t.IsZero() {
		return t, nil
	}
	r := s.cfg.TargetResolver
	if r == nil {
		return t, t.Validate()
	}
	if err := envelope.CheckTargetLevels(t.Collection, t.Project, t.Layout); err != nil {
		return Target{}, fmt.Errorf("%w: %w", ErrInvalidTarget, err)
	}
	full, err := r.ResolveTarget(ctx, t)
	if err != nil {
		return Target{}, fmt.Errorf("resolve target %s: %w", t.describe(), err)
	}
	// Only the levels down to t's deepest: the resolver adds none below.
	if t.Layout == "" {
		full.Layout = ""
		if t.Project == "" {
			full.Project = ""
		}
	}
	if err := full.Validate(); err != nil {
		return Target{}, fmt.Errorf("resolve target %s: the resolver answered %s: %w", t.describe(), full.describe(), err)
	}
	for i, given := range [...]string{t.Collection, t.Project, t.Layout} {
		if is := [...]string{full.Collection, full.Project, full.Layout}[i]; given != "" && given != is {
			return Target{}, fmt.Errorf("%w: target %s: %s %q, but its %s is %q", ErrInvalidTarget, t.describe(), targetNames[i], given, targetNames[i], is)
		}
	}
	return full, nil
}

// describe writes t's levels by name, e.g. project="p" layout="l", for
// errors about targets that may skip a level.
func (t Target) describe() string {
	var parts []string
	for i, v := range [...]string{t.Collection, t.Project, t.Layout} {
		if v != "" {
			parts = append(parts, fmt.Sprintf("%s=%q", targetNames[i], v))
		}
	}
	if parts == nil {
		return "(none)"
	}
	return strings.Join(parts, " ")
}
