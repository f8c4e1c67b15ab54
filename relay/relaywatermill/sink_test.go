package relaywatermill

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/outbox"
)

func TestGroups(t *testing.T) {
	t.Parallel()
	mk := func(spec string) []*outbox.Event {
		var evs []*outbox.Event
		for f := range strings.FieldsSeq(spec) {
			topic, key, _ := strings.Cut(f, "/")
			evs = append(evs, &outbox.Event{ID: uuid.New(), Topic: topic, Key: key})
		}
		return evs
	}
	show := func(gs []group) string {
		var parts []string
		for _, g := range gs {
			var es []string
			for _, e := range g.events {
				es = append(es, e.Topic+"/"+e.Key)
			}
			parts = append(parts, "["+strings.Join(es, " ")+"]")
		}
		return strings.Join(parts, " ")
	}
	topic := func(e *outbox.Event) string { return e.Topic }
	for _, tc := range []struct{ in, want string }{
		{"a/1 a/2 a/1", "[a/1 a/2 a/1]"},
		{"a/1 b/2 a/3 b/4", "[a/1 a/3] [b/2 b/4]"},
		// a/1 must follow b/1, so it cannot join the first a group.
		{"a/1 b/1 a/1", "[a/1] [b/1] [a/1]"},
		{"a/1 b/1 a/2 a/1 b/3", "[a/1 a/2] [b/1 b/3] [a/1]"},
		{"a/1 b/2 c/1 a/3 c/2", "[a/1 a/3] [b/2] [c/1 c/2]"},
		{"", ""},
	} {
		if got := show(groups(mk(tc.in), topic)); got != tc.want {
			t.Errorf("groups(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
