package outboxtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/txoutbox/txoutbox/outbox"
)

// maxShown is the most bytes of a JSON value a message shows.
const maxShown = 120

// String describes w as failure messages show it.
func (w *compiled) String() string {
	var b strings.Builder
	b.WriteString(w.Topic)
	if w.Topic == "" {
		b.WriteString("(any topic)")
	}
	for _, f := range [...]struct{ name, value string }{
		{"key", w.Key},
		{"actor_type", w.ActorType},
		{"actor_id", w.ActorID},
		{"job_id", w.JobID},
		{"tenant", w.Tenant},
		{"source", w.Source},
		{"causation_id", w.CausationID},
		{"dedupe_key", w.DedupeKey},
		{"target", w.Target.String()},
	} {
		if f.value != "" {
			fmt.Fprintf(&b, " %s=%q", f.name, f.value)
		}
	}
	if w.dataText != "" {
		b.WriteString(" data⊇" + trim(w.dataText))
	}
	if w.DataFunc != nil {
		b.WriteString(" +DataFunc")
	}
	return b.String()
}

// line describes e on one line: what tells events apart, and its data.
func line(e *outbox.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s key=%q actor=%s:%q job_id=%q", e.Topic, e.Key, e.ActorType, e.ActorID, e.JobID)
	for _, f := range [...]struct{ name, value string }{
		{"tenant", e.Tenant},
		{"causation_id", e.CausationID},
		{"dedupe_key", e.DedupeKey},
		{"target", e.Target.String()},
	} {
		if f.value != "" {
			fmt.Fprintf(&b, " %s=%q", f.name, f.value)
		}
	}
	b.WriteString(" data=" + trim(compact(e.Data)))
	return b.String()
}

// list numbers events, one per line, at most listMax of them; total counts
// the events events was cut from. With w set, each event of w's topic is
// followed by how it differs from w.
func list(events []*outbox.Event, total int, w *compiled) string {
	var b strings.Builder
	for i, e := range events[:min(len(events), listMax)] {
		fmt.Fprintf(&b, "  %d. %s\n", i+1, line(e))
		if w != nil && (w.Topic == "" || w.Topic == e.Topic) {
			writeReasons(&b, w.diff(e))
		}
	}
	if more := total - min(len(events), listMax); more > 0 {
		fmt.Fprintf(&b, "  ... and %d more\n", more)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// listSequence lines events up against ws, position by position, saying
// where they differ. It lists at most listMax positions.
func listSequence(ws []*compiled, events []*outbox.Event) string {
	var b strings.Builder
	n := max(len(ws), len(events))
	for i := range min(n, listMax) {
		switch {
		case i >= len(events):
			fmt.Fprintf(&b, "  %d. (none)\n", i+1)
			writeReasons(&b, []string{"want " + ws[i].String()})
		case i >= len(ws):
			fmt.Fprintf(&b, "  %d. %s\n", i+1, line(events[i]))
			writeReasons(&b, []string{"not in want"})
		default:
			fmt.Fprintf(&b, "  %d. %s\n", i+1, line(events[i]))
			if reasons := ws[i].diff(events[i]); len(reasons) > 0 {
				writeReasons(&b, append([]string{"want " + ws[i].String() + ":"}, reasons...))
			}
		}
	}
	if n > listMax {
		fmt.Fprintf(&b, "  ... and %d more\n", n-listMax)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// eventCount says "1 event" or "n events".
func eventCount(n int) string {
	if n == 1 {
		return "1 event"
	}
	return fmt.Sprintf("%d events", n)
}

func writeReasons(b *strings.Builder, reasons []string) {
	for _, r := range reasons {
		b.WriteString("       " + r + "\n")
	}
}

// compact returns JSON text without insignificant space, or the text as it
// is when it is not valid JSON.
func compact(raw []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// trim cuts s to maxShown bytes, on a rune boundary.
func trim(s string) string {
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
