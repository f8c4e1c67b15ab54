// Package envelope holds the rules on an event's envelope, the fields
// around its data, that more than one package applies: the outbox client
// when it builds an event, the request middleware before a handler runs,
// and the local events API when it receives one.
package envelope

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// ActorIDMinLength is the shortest actor id the events API accepts.
const ActorIDMinLength = 5

// CheckActorID returns why the events API would refuse id as the actor id
// (user, service or third party) of an event, or nil: it must be valid
// UTF-8 of at least ActorIDMinLength characters.
func CheckActorID(id string) error {
	if !utf8.ValidString(id) {
		return fmt.Errorf("%q is not valid UTF-8", id)
	}
	if n := utf8.RuneCountInString(id); n < ActorIDMinLength {
		return fmt.Errorf("%q has %d characters, want at least %d", id, n, ActorIDMinLength)
	}
	return nil
}

// ValidTraceparent reports whether s is a W3C trace context traceparent of
// version 00 (or a later version in the same layout) with non-zero ids.
func ValidTraceparent(s string) bool {
	// version "-" trace-id(32) "-" parent-id(16) "-" flags(2)
	if len(s) < 55 || (len(s) > 55 && (s[:2] == "00" || s[55] != '-')) {
		return false
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' || s[:2] == "ff" {
		return false
	}
	for _, part := range []string{s[:2], s[3:35], s[36:52], s[53:55]} {
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return strings.Trim(s[3:35], "0") != "" && strings.Trim(s[36:52], "0") != ""
}

// MaxTargetBytes bounds each level of an event's target.
const MaxTargetBytes = 256

// Names of a target's levels, from the top.
const (
	TargetCollection = "collection"
	TargetProject    = "project"
	TargetLayout     = "layout"
)

// CheckTargetLevels returns why a level of a target cannot be stored, or
// nil: each is valid UTF-8 without NUL bytes, of at most MaxTargetBytes.
// It does not check that the levels are named from the top (CheckTarget
// does), for a receiver that fills in upper levels itself.
func CheckTargetLevels(collection, project, layout string) error {
	for _, l := range [...]struct{ name, v string }{{TargetCollection, collection}, {TargetProject, project}, {TargetLayout, layout}} {
		switch {
		case len(l.v) > MaxTargetBytes:
			return fmt.Errorf("%s of %d bytes, at most %d", l.name, len(l.v), MaxTargetBytes)
		case !utf8.ValidString(l.v):
			return fmt.Errorf("%s %q is not valid UTF-8", l.name, l.v)
		case strings.IndexByte(l.v, 0) >= 0:
			return fmt.Errorf("%s %q contains a NUL byte", l.name, l.v)
		}
	}
	return nil
}

// CheckTarget returns why collection, project and layout are not a target,
// or nil: the levels are named from the top (a layout with its project and
// collection, a project with its collection) and each passes
// CheckTargetLevels. All three empty is no target, and valid.
func CheckTarget(collection, project, layout string) error {
	if err := CheckTargetLevels(collection, project, layout); err != nil {
		return err
	}
	switch {
	case layout != "" && (project == "" || collection == ""):
		return fmt.Errorf("layout %q needs its project and collection", layout)
	case project != "" && collection == "":
		return fmt.Errorf("project %q needs its collection", project)
	}
	return nil
}
