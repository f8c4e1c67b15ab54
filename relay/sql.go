package relay

import "github.com/txoutbox/txoutbox/internal/outboxsql"

// queries are the relay's statements, from the schema's SQL layer
// (outboxsql.RelayQueries, where each one's parameters are documented). The
// columns of read, outboxsql.ReadColumns, are in the order decodeRow reads
// them.
type queries struct {
	read            string
	deleteDelivered string
	markDelivered   string
	recordFailed    string
	deadKeys        string
	cleanup         string

	heartbeat, renew, liveRelays, pruneRelays string
	acquire, release, releaseAll, deregister  string
	replay                                    string
	walPublication                            string
	spill, spilledKeys, tableKeys             string
}

func newQueries(schema string) queries {
	q := outboxsql.New(schema).Relay
	return queries{
		read:            q.Read,
		deleteDelivered: q.DeleteDelivered,
		markDelivered:   q.MarkDelivered,
		recordFailed:    q.RecordFailed,
		deadKeys:        q.DeadKeys,
		cleanup:         q.Cleanup,

		heartbeat:   q.Heartbeat,
		renew:       q.Renew,
		liveRelays:  q.LiveRelays,
		pruneRelays: q.PruneRelays,
		acquire:     q.Acquire,
		release:     q.Release,
		releaseAll:  q.ReleaseAll,
		deregister:  q.Deregister,
		replay:      q.Replay,

		walPublication: q.WALPublication,
		spill:          q.Spill,
		spilledKeys:    q.SpilledKeys,
		tableKeys:      q.TableKeys,
	}
}
