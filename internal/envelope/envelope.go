// Package envelope holds the rules on an event's envelope, the fields
// around its data, that more than one package applies: the outbox client
// when it builds an event, and the request middleware before a handler runs.
package envelope

import "strings"

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
