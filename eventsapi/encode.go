package eventsapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendEventJSON appends ev's JSON to b: the bytes json.Marshal(ev) gives,
// without its reflection, which is most of what a subscriber catching up
// from the store costs. Strings and times it cannot write exactly as
// json.Marshal would are left to json.Marshal; an error means ev cannot be
// encoded (its data is not JSON, or a time is out of JSON's range), as
// json.Marshal would fail.
func appendEventJSON(b []byte, ev *Event) ([]byte, error) {
	b = append(b, `{"position":`...)
	b = strconv.AppendInt(b, ev.Position, 10)
	b = appendField(b, `,"id":`, ev.ID, false)
	b = appendField(b, `,"topic":`, ev.Topic, false)
	b = appendField(b, `,"category":`, ev.Category, false)
	b = appendField(b, `,"entity":`, ev.Entity, false)
	b = appendField(b, `,"action":`, ev.Action, false)
	b = appendField(b, `,"key":`, ev.Key, true)
	b = appendField(b, `,"tenant":`, ev.Tenant, true)
	b = appendField(b, `,"actor_id":`, ev.ActorID, true)
	b = appendField(b, `,"actor_type":`, ev.ActorType, true)
	b = appendField(b, `,"job_id":`, ev.JobID, true)
	b = appendField(b, `,"causation_id":`, ev.CausationID, true)
	b = appendField(b, `,"dedupe_key":`, ev.DedupeKey, true)
	b = appendField(b, `,"source":`, ev.Source, true)
	b = appendField(b, `,"traceparent":`, ev.Traceparent, true)
	b = appendField(b, `,"format":`, ev.Format, true)
	if !ev.Target.IsZero() {
		b = appendTarget(append(b, `,"target":`...), ev.Target)
	}
	b = appendField(b, `,"sender":`, ev.Sender, true)
	var err error
	if len(ev.RequestMetadata) > 0 {
		if b, err = appendRaw(append(b, `,"request_metadata":`...), ev.RequestMetadata); err != nil {
			return b, err
		}
	}
	b = appendField(b, `,"depends_on":`, ev.DependsOn, true)
	b = appendField(b, `,"status":`, string(ev.Status), true)
	b = appendField(b, `,"description":`, ev.Description, true)
	if ev.Retries != 0 {
		b = strconv.AppendInt(append(b, `,"retries":`...), int64(ev.Retries), 10)
	}
	if !ev.UpdatedAt.IsZero() {
		if b, err = appendTime(append(b, `,"updated_at":`...), ev.UpdatedAt); err != nil {
			return b, err
		}
	}
	if ev.Live {
		b = append(b, `,"live":true`...)
	}
	if len(ev.Progress) > 0 {
		if b, err = appendRaw(append(b, `,"progress":`...), ev.Progress); err != nil {
			return b, err
		}
	}
	if b, err = appendTime(append(b, `,"time":`...), ev.Time); err != nil {
		return b, err
	}
	if b, err = appendTime(append(b, `,"received_at":`...), ev.ReceivedAt); err != nil {
		return b, err
	}
	b = append(b, `,"data":`...)
	if ev.Data == nil {
		b = append(b, "null"...)
	} else if b, err = appendRaw(b, ev.Data); err != nil {
		return b, err
	}
	return append(b, '}'), nil
}

// appendRaw appends raw JSON as json.Marshal writes a RawMessage.
func appendRaw(b []byte, raw json.RawMessage) ([]byte, error) {
	if plainJSON(raw) && json.Valid(raw) {
		return append(b, raw...), nil // compact already, nothing to escape
	}
	// json.Marshal compacts a RawMessage and escapes <, >, & and the line
	// separators U+2028 and U+2029 in it, as in strings.
	var c bytes.Buffer
	if err := json.Compact(&c, raw); err != nil {
		return b, err
	}
	var h bytes.Buffer
	json.HTMLEscape(&h, c.Bytes())
	return append(b, h.Bytes()...), nil
}

// plainJSON reports whether b has none of the bytes json.Marshal may change
// in a RawMessage: whitespace it compacts away, the characters it escapes,
// and the first byte of U+2028 and U+2029.
func plainJSON(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n', '<', '>', '&', 0xe2:
			return false
		}
	}
	return true
}

// appendField appends name and s as a JSON string; nothing when omitEmpty
// and s is empty.
func appendField(b []byte, name, s string, omitEmpty bool) []byte {
	if omitEmpty && s == "" {
		return b
	}
	return appendString(append(b, name...), s)
}

// appendString appends s as json.Marshal writes a string.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // escapes, invalid UTF-8: rare, left to encoding/json
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

var errTimeRange = errors.New("time out of JSON's range")

// appendTime appends t as time.Time's MarshalJSON does, and fails where it
// fails.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y >= 10000 {
		return b, errTimeRange
	}
	if _, off := t.Zone(); off <= -24*60*60 || off >= 24*60*60 {
		return b, errTimeRange
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendTarget appends t as json.Marshal writes it.
func appendTarget(b []byte, t Target) []byte {
	sep := byte('{')
	for _, l := range [...]struct{ name, v string }{{`"collection":`, t.Collection}, {`"project":`, t.Project}, {`"layout":`, t.Layout}} {
		if l.v != "" {
			b = appendString(append(append(b, sep), l.name...), l.v)
			sep = ','
		}
	}
	if sep == '{' {
		b = append(b, '{')
	}
	return append(b, '}')
}
