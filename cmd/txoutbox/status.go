package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	outboxadmin "github.com/txoutbox/txoutbox/cmd/txoutbox/internal/admin"
	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

const statusUsage = `
Show what the outbox holds and why: events by state, the age of the oldest
pending one, the backlog per topic, and the relays holding partitions.

Pending events are split by what they wait for:
  in flight   due, in a partition a relay holds: it is delivering them
  retrying    failed before; waiting out a backoff
  blocked     due, but their key has a dead event (see txoutbox inspect --state dead)
  unclaimed   due, but no relay holds their partition: is a relay running?

"txoutbox inspect --state STATE" lists the events of each (in-flight for
those in flight).

Replication shows the server's settings the WAL modes need (relay --mode
wal and messages) and txoutbox's replication slots in the database: the WAL
each holds back, whether a relay streams it, and whether it is lost. A slot
holds back WAL while no relay confirms it; max_slot_wal_keep_size bounds
that, and status warns when it is unbounded while the durable slot of
message storage exists. A lost slot is an error, and so is a slot of
message storage that was dropped (the outbox's record still names it):
status prints it, with how to recover, on stderr and exits 1.

Delivered events stay only for the relay's --retention. It reads the whole
table: on a large one, do not run it every second.`

const statusExamples = `  txoutbox status --database-url postgres://app@db/app
  TXOUTBOX_DATABASE_URL=postgres://app@db/app txoutbox status --json | jq .pending`

func runStatus(ctx context.Context, args []string, stdout, _ io.Writer) error {
	var db dbFlags
	var asJSON bool
	fs := newFlagSet("status", statusUsage, statusExamples)
	db.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print the status as JSON, for scripts")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	pool, err := db.connect(ctx, "status")
	if err != nil {
		return err
	}
	defer pool.Close()
	st, err := outboxadmin.New(pool, db.schema).Status(ctx)
	if err != nil {
		return db.dbError("status", err)
	}
	if asJSON {
		if err := writeStatusJSON(stdout, st); err != nil {
			return err
		}
	} else {
		writeStatus(stdout, st)
	}
	return lostSlots(st.Replication)
}

// lostSlots returns an error for each lost slot, saying how to recover.
func lostSlots(r *outboxsql.Replication) error {
	var errs []error
	for _, s := range r.Slots {
		if s.Lost {
			how := "is lost"
			if s.Missing {
				how = "was dropped (txoutbox created it, the server no longer has it)"
			}
			errs = append(errs, fmt.Errorf("status: replication slot %s %s: %s", s.Name, how, s.Recovery()))
		}
	}
	return errors.Join(errs...)
}

// statusJSON is the --json form of a status; durations are in seconds.
type statusJSON struct {
	countsJSON
	Topics           []topicJSON `json:"topics"`
	Relays           []relayJSON `json:"relays"`
	LeasedPartitions int         `json:"leased_partitions"`
	Partitions       int         `json:"partitions"`
	// Replication holds the settings and slots; sizes are in bytes.
	Replication *outboxsql.Replication `json:"replication"`
}

type countsJSON struct {
	outboxadmin.Counts
	OldestPendingAge float64 `json:"oldest_pending_age_seconds"`
}

type topicJSON struct {
	Topic string `json:"topic"`
	countsJSON
}

type relayJSON struct {
	outboxadmin.RelayInfo
	HeartbeatAge float64 `json:"heartbeat_age_seconds"`
}

func writeStatusJSON(w io.Writer, st *outboxadmin.Status) error {
	out := statusJSON{
		countsJSON:       countsJSON{st.Counts, st.OldestPendingAge.Seconds()},
		Topics:           []topicJSON{},
		Relays:           []relayJSON{},
		LeasedPartitions: st.LeasedPartitions,
		Partitions:       outboxsql.Partitions,
		Replication:      st.Replication,
	}
	for _, t := range st.Topics {
		out.Topics = append(out.Topics, topicJSON{t.Topic, countsJSON{t.Counts, t.OldestPendingAge.Seconds()}})
	}
	for _, r := range st.Relays {
		out.Relays = append(out.Relays, relayJSON{r, r.HeartbeatAge.Seconds()})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writeStatus(w io.Writer, st *outboxadmin.Status) {
	oldest := ""
	if st.Pending > 0 {
		oldest = "oldest " + age(st.OldestPendingAge)
	}
	rows := []struct {
		name string
		n    int64
		note string
	}{
		{"pending", st.Pending, oldest},
		{"  in flight", st.InFlight, ""},
		{"  retrying", st.Retrying, ""},
		{"  blocked", st.Blocked, ""},
		{"  unclaimed", st.Unclaimed, ""},
		{"delivered", st.Delivered, ""},
		{"dead", st.Dead, ""},
	}
	for _, r := range rows {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-12s %9d  %s", r.name, r.n, r.note), " "))
	}
	fmt.Fprintf(w, "\nrelays: %d, holding %d of %d partitions\n", len(st.Relays), st.LeasedPartitions, outboxsql.Partitions)
	if len(st.Relays) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  RELAY\tHOST\tPID\tPARTITIONS\tHEARTBEAT\tSTARTED")
		for _, r := range st.Relays {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\t%s\n", r.ID, r.Hostname, r.PID, r.Partitions, age(r.HeartbeatAge),
				r.StartedAt.UTC().Format(time.DateTime))
		}
		tw.Flush()
	}
	writeReplication(w, st.Replication)
	if st.Unclaimed > 0 {
		fmt.Fprintln(w, "\nunclaimed events wait for a relay: start one with txoutbox relay")
	}
	if st.Dead > 0 {
		fmt.Fprintln(w, "\ndead events wait for a replay: txoutbox inspect --state dead, then txoutbox replay --state dead")
	}
	if len(st.Topics) == 0 {
		fmt.Fprintln(w, "\nthe outbox is empty")
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPENDING\tRETRYING\tBLOCKED\tUNCLAIMED\tDEAD\tDELIVERED\tOLDEST PENDING")
	for _, t := range st.Topics {
		oldest := "-"
		if t.Pending > 0 {
			oldest = age(t.OldestPendingAge)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", t.Topic, t.Pending, t.Retrying, t.Blocked, t.Unclaimed, t.Dead, t.Delivered, oldest)
	}
	tw.Flush()
}

// writeReplication writes the replication settings and txoutbox's slots.
func writeReplication(w io.Writer, r *outboxsql.Replication) {
	keep := "unbounded"
	if !r.Unbounded() {
		keep = outboxsql.ByteSize(r.MaxSlotWALKeepSize)
	}
	fmt.Fprintf(w, "\nreplication: wal_level %s, max_replication_slots %d, max_wal_senders %d, max_slot_wal_keep_size %s\n",
		r.WALLevel, r.MaxReplicationSlots, r.MaxWALSenders, keep)
	if len(r.Slots) == 0 {
		fmt.Fprintln(w, "  no txoutbox replication slots")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SLOT\tKIND\tACTIVE\tRETAINED WAL\tWAL STATUS")
	for _, s := range r.Slots {
		kind := "relay (temporary)"
		if s.Messages {
			kind = "messages"
		}
		status := cmp.Or(s.WALStatus, "-")
		switch {
		case s.Missing:
			status = "LOST (dropped)"
		case s.Lost:
			status = "LOST"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", s.Name, kind, yesNo(s.Active), outboxsql.ByteSize(s.RetainedBytes), status)
	}
	tw.Flush()
	if warning := r.Warning(); warning != "" {
		fmt.Fprintln(w, "\nwarning: "+warning)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// age renders a duration for people: 850ms, 12s, 4m10s, 3h5m, 2d4h.
func age(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	days := d / (24 * time.Hour)
	return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
}
