package listener

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// sseMessage is one server-sent event as the stream framed it.
type sseMessage struct {
	id    string
	event string // "" is the default type, "message"
	data  []byte
	retry int // milliseconds; 0 when the message set none
}

// errLineTooLong is returned when a line of the stream is longer than the
// reader's bound.
var errLineTooLong = errors.New("server-sent events line too long")

// sseReader reads server-sent events as the HTML standard defines them:
// lines of "field: value", a blank line ending a message, ":" comments.
type sseReader struct {
	r    *bufio.Reader
	max  int
	line []byte
}

func newSSEReader(r io.Reader, maxLine int) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 64<<10), max: maxLine}
}

// readLine returns the next line without its ending (LF, CRLF or CR).
func (s *sseReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		chunk, err := s.r.ReadSlice('\n')
		s.line = append(s.line, chunk...)
		if len(s.line) > s.max {
			return nil, fmt.Errorf("%w: more than %d bytes", errLineTooLong, s.max)
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(s.line) > 0 && errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line := bytes.TrimSuffix(s.line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// next returns the next message that carries data, an id or a retry hint.
// Comments (heartbeats) are skipped.
func (s *sseReader) next() (sseMessage, error) {
	var m sseMessage
	var data bytes.Buffer
	hasData, hasID := false, false
	for {
		line, err := s.readLine()
		if err != nil {
			return m, err
		}
		if len(line) == 0 {
			if hasData || hasID || m.retry > 0 {
				m.data = bytes.TrimSuffix(data.Bytes(), []byte("\n"))
				return m, nil
			}
			m = sseMessage{}
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(name) {
		case "id":
			m.id, hasID = string(value), true
		case "event":
			m.event = string(value)
		case "data":
			data.Write(value)
			data.WriteByte('\n')
			hasData = true
		case "retry":
			if ms, err := strconv.Atoi(string(value)); err == nil && ms > 0 {
				m.retry = ms
			}
		}
	}
}
