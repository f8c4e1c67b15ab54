package relay

import (
	"encoding/binary"
	"fmt"
	"time"
)

// readColumnCount is the number of columns of the read query.
const readColumnCount = 23

// decodeRow fills rw from the binary-format values of one row of the read
// query (readColumns). It replaces pgx's Scan on the relay's hottest path:
// Scan costs reflection and a string allocation per column, and the relay
// reads every row of the outbox. The envelope's low-cardinality values
// (topic, category, source, ...) are interned per batch, so a batch of one
// topic holds one copy of each; ids and keys are not, as they rarely repeat.
func decodeRow(rw *row, v [][]byte, in *interner) error {
	if len(v) != readColumnCount {
		return fmt.Errorf("decode row: %d columns, want %d", len(v), readColumnCount)
	}
	for i, b := range v {
		if b == nil {
			return fmt.Errorf("decode row: column %d is NULL", i)
		}
	}
	if len(v[0]) != 8 || len(v[1]) != 16 || len(v[2]) != 2 || len(v[4]) != 4 || len(v[5]) != 8 || len(v[19]) != 8 {
		return fmt.Errorf("decode row: unexpected binary sizes")
	}
	ev := &rw.ev
	rw.seq = int64(binary.BigEndian.Uint64(v[0]))
	copy(ev.ID[:], v[1])
	rw.part = int16(binary.BigEndian.Uint16(v[2]))
	rw.key = string(v[3])
	rw.attempts = int32(binary.BigEndian.Uint32(v[4]))
	rw.waitUS = int64(binary.BigEndian.Uint64(v[5]))
	ev.Topic = in.str(v[6])
	ev.Category = in.str(v[7])
	ev.Entity = in.str(v[8])
	ev.Action = in.str(v[9])
	ev.Data = append([]byte(nil), v[10]...)
	ev.ActorID = string(v[11])
	ev.ActorType = in.str(v[12])
	ev.JobID = string(v[13])
	ev.Source = in.str(v[14])
	ev.Traceparent = string(v[15])
	ev.Tenant = in.str(v[16])
	ev.CausationID = string(v[17])
	ev.DedupeKey = string(v[18])
	ev.Time = pgTime(int64(binary.BigEndian.Uint64(v[19])))
	ev.Target.Collection = in.str(v[20])
	ev.Target.Project = in.str(v[21])
	ev.Target.Layout = in.str(v[22])
	ev.Key = rw.key
	return nil
}

// pgEpoch is the zero of Postgres timestamps.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// pgTime converts a binary timestamptz, microseconds since 2000-01-01 UTC.
// ±infinity, which published_at never holds, map to the zero time.
func pgTime(us int64) time.Time {
	const infinity = 1<<63 - 1
	if us == infinity || us == -infinity-1 {
		return time.Time{}
	}
	return pgEpoch.Add(time.Duration(us) * time.Microsecond)
}

// interner returns one string per distinct value it is given, for the
// envelope columns that repeat from row to row.
type interner map[string]string

func (in *interner) str(b []byte) string {
	if s, ok := (*in)[string(b)]; ok { // no allocation: the compiler sees the lookup
		return s
	}
	if *in == nil {
		*in = make(interner)
	}
	s := string(b)
	(*in)[s] = s
	return s
}
