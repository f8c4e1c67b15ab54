package listener

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestSSEReader(t *testing.T) {
	stream := "retry: 2000\n\n" +
		": heartbeat\n\n" +
		"id: 1\ndata: {\"a\":1}\n\n" +
		"id: 2\r\ndata: line1\r\ndata: line2\r\n\r\n" +
		"event: notice\ndata: {\"code\":\"gap\"}\n\n" +
		"data:nospace\n\n" +
		"id: 3\n: heartbeat\n\n" + // an id alone: the position reached
		": heartbeat\n\n" + // a comment alone: nothing
		"data: partial"
	rd := newSSEReader(strings.NewReader(stream), 1<<10)
	want := []sseMessage{
		{retry: 2000},
		{id: "1", data: []byte(`{"a":1}`)},
		{id: "2", data: []byte("line1\nline2")},
		{event: "notice", data: []byte(`{"code":"gap"}`)},
		{data: []byte("nospace")},
		{id: "3"},
	}
	for i, w := range want {
		m, err := rd.next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if m.id != w.id || m.event != w.event || string(m.data) != string(w.data) || m.retry != w.retry {
			t.Fatalf("message %d = %+v (data %q), want %+v (data %q)", i, m, m.data, w, w.data)
		}
	}
	if _, err := rd.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a stream cut mid-message: got %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestSSEReaderBoundsLines(t *testing.T) {
	rd := newSSEReader(strings.NewReader("data: "+strings.Repeat("x", 100_000)+"\n\n"), 1<<10)
	if _, err := rd.next(); !errors.Is(err, errLineTooLong) {
		t.Fatalf("got %v, want errLineTooLong", err)
	}
}
