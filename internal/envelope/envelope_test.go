package envelope_test

import (
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/internal/envelope"
)

func TestValidTraceparent(t *testing.T) {
	t.Parallel()
	for tp, want := range map[string]bool{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":      true,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more": true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more": false,
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":      false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":      false,
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":      false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":      false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7":         false,
		"": false,
	} {
		if got := envelope.ValidTraceparent(tp); got != want {
			t.Errorf("ValidTraceparent(%q) = %v, want %v", tp, got, want)
		}
	}
}

func TestCheckActorID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"user1", "service-billing", "ünïcø", "12345"} {
		if err := envelope.CheckActorID(id); err != nil {
			t.Errorf("CheckActorID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "abcd", "ünï", "\xff\xfe\xfd\xfc\xfb"} {
		if err := envelope.CheckActorID(id); err == nil {
			t.Errorf("CheckActorID(%q) = nil, want an error", id)
		}
	}
	if got, want := envelope.CheckActorID("abc").Error(), `"abc" has 3 characters, want at least 5`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestCheckTarget(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", envelope.MaxTargetBytes+1)
	for _, tc := range []struct {
		c, p, l string
		ok      bool // CheckTarget
		levels  bool // CheckTargetLevels
	}{
		{"", "", "", true, true},
		{"c", "", "", true, true},
		{"c", "p", "", true, true},
		{"c", "p", "l", true, true},
		{"", "p", "", false, true},
		{"", "", "l", false, true},
		{"c", "", "l", false, true},
		{"", "p", "l", false, true},
		{long, "", "", false, false},
		{"c", long, "", false, false},
		{"c", "p", "l\x00", false, false},
		{"c", "\xff", "", false, false},
	} {
		if err := envelope.CheckTarget(tc.c, tc.p, tc.l); (err == nil) != tc.ok {
			t.Errorf("CheckTarget(%q, %q, %q) = %v, want ok %v", tc.c, tc.p, tc.l, err, tc.ok)
		}
		if err := envelope.CheckTargetLevels(tc.c, tc.p, tc.l); (err == nil) != tc.levels {
			t.Errorf("CheckTargetLevels(%q, %q, %q) = %v, want ok %v", tc.c, tc.p, tc.l, err, tc.levels)
		}
	}
}
