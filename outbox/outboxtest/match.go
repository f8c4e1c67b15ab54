package outboxtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strings"

	"github.com/txoutbox/txoutbox/outbox"
)

// compiled is a Want checked once, with its Data decoded.
type compiled struct {
	Want
	data     any    // decoded Want.Data, numbers as json.Number
	dataText string // Want.Data as compact JSON, for messages; "" without Data
}

// compile checks w and decodes its Data. Its errors name the field.
func compile(w Want) (*compiled, error) {
	switch w.ActorType {
	case "", outbox.ActorUser, outbox.ActorService, outbox.ActorThirdParty:
	default:
		return nil, fmt.Errorf("Want.ActorType %q is none of %q, %q and %q",
			w.ActorType, outbox.ActorUser, outbox.ActorService, outbox.ActorThirdParty)
	}
	c := &compiled{Want: w}
	if w.Data == nil {
		return c, nil
	}
	var raw []byte
	switch d := w.Data.(type) {
	case json.RawMessage:
		raw = d
	case []byte:
		raw = d
	default:
		b, err := json.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("Want.Data: %w", err)
		}
		raw = b
	}
	v, err := decode(raw)
	if err != nil {
		return nil, fmt.Errorf("Want.Data: %w", err)
	}
	c.data, c.dataText = v, compact(raw)
	return c, nil
}

// decode parses JSON text with numbers kept as json.Number, refusing
// trailing data.
func decode(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not valid JSON: data after the first value")
	}
	return v, nil
}

// topics returns the topic to read, or nil for all.
func (w *compiled) topics() []string {
	if w.Topic == "" {
		return nil
	}
	return []string{w.Topic}
}

func (w *compiled) matches(e *outbox.Event) bool { return len(w.diff(e)) == 0 }

// diff says how e differs from w, one reason per field; nil when e matches.
// DataFunc runs only when every other field matches.
func (w *compiled) diff(e *outbox.Event) []string {
	var reasons []string
	for _, f := range [...]struct{ name, want, got string }{
		{"topic", w.Topic, e.Topic},
		{"key", w.Key, e.Key},
		{"actor_type", w.ActorType, e.ActorType},
		{"actor_id", w.ActorID, e.ActorID},
		{"job_id", w.JobID, e.JobID},
		{"tenant", w.Tenant, e.Tenant},
		{"source", w.Source, e.Source},
		{"causation_id", w.CausationID, e.CausationID},
		{"dedupe_key", w.DedupeKey, e.DedupeKey},
	} {
		if f.want != "" && f.got != f.want {
			reasons = append(reasons, fmt.Sprintf("%s is %q, want %q", f.name, f.got, f.want))
		}
	}
	if !w.Target.IsZero() && e.Target != w.Target {
		reasons = append(reasons, fmt.Sprintf("target is %q, want %q", e.Target, w.Target))
	}
	if w.dataText != "" {
		got, err := decode(e.Data)
		if err != nil {
			reasons = append(reasons, "data is "+err.Error())
		} else if reason := subset(got, w.data, "data"); reason != "" {
			reasons = append(reasons, reason)
		}
	}
	if len(reasons) == 0 && w.DataFunc != nil {
		if err := w.DataFunc(e.Data); err != nil {
			reasons = append(reasons, "DataFunc: "+err.Error())
		}
	}
	return reasons
}

// pointerEscaper escapes a JSON Pointer reference token (RFC 6901).
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// subset says where got fails to contain want, naming the place as path
// followed by a JSON Pointer; "" when it contains it.
func subset(got, want any, path string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		for _, k := range slices.Sorted(maps.Keys(w)) { // the same first reason every run
			wv := w[k]
			p := path + "/" + pointerEscaper.Replace(k)
			gv, ok := g[k]
			if !ok {
				return fmt.Sprintf("%s is missing, want %s", p, show(wv))
			}
			if reason := subset(gv, wv, p); reason != "" {
				return reason
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok {
			break
		}
		if len(g) != len(w) {
			return fmt.Sprintf("%s has %d elements, want %d: %s", path, len(g), len(w), show(w))
		}
		for i := range w {
			if reason := subset(g[i], w[i], fmt.Sprintf("%s/%d", path, i)); reason != "" {
				return reason
			}
		}
		return ""
	case json.Number:
		if g, ok := got.(json.Number); ok && sameNumber(g, w) {
			return ""
		}
	default: // string, bool, nil
		if got == want {
			return ""
		}
	}
	return fmt.Sprintf("%s is %s, want %s", path, show(got), show(want))
}

// sameNumber compares JSON numbers by value, exactly.
func sameNumber(a, b json.Number) bool {
	x, okX := new(big.Rat).SetString(string(a))
	y, okY := new(big.Rat).SetString(string(b))
	if !okX || !okY {
		return a == b
	}
	return x.Cmp(y) == 0
}

// show formats a decoded JSON value for a message, trimmed.
func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return trim(string(b))
}
