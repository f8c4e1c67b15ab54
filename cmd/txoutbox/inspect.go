package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	outboxadmin "github.com/txoutbox/txoutbox/cmd/txoutbox/internal/admin"
)

const inspectUsage = `
List events in the outbox, oldest first: id, state, attempts, topic, key,
when it was published and the last delivery error. Filters combine. The
events' data is shown only with --show-data, since it may hold personal
data.`

const inspectExamples = `  txoutbox inspect --state dead
  txoutbox inspect --state blocked     # pending behind a dead event of their key
  txoutbox inspect --topic billing.InvoiceCreated --key inv-1001 --show-data
  txoutbox inspect --id 01936f8e-5b7c-7d2a-9c1e-3f4a5b6c7d8e --show-data --json
  TXOUTBOX_DATABASE_URL=postgres://app@db/app txoutbox inspect --state pending --limit 10`

// filterFlags are the event filters inspect and replay share.
type filterFlags struct {
	ids   idList
	state string
	topic string
	key   string
}

func (f *filterFlags) register(fs *flag.FlagSet, stateUsage string) {
	fs.Var(&f.ids, "id", "event `id` (a UUID); repeat the flag or separate ids with commas")
	fs.StringVar(&f.state, "state", "", stateUsage)
	fs.StringVar(&f.topic, "topic", "", "only events of this `topic`, e.g. billing.InvoiceCreated")
	fs.StringVar(&f.key, "key", "", "only events with this ordering `key`")
}

func (f *filterFlags) filter() outboxadmin.Filter {
	return outboxadmin.Filter{IDs: f.ids, State: f.state, Topic: f.topic, Key: f.key}
}

// idList is a flag of event ids.
type idList []uuid.UUID

func (l *idList) String() string {
	s := make([]string, len(*l))
	for i, id := range *l {
		s[i] = id.String()
	}
	return strings.Join(s, ",")
}

func (l *idList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		id, err := uuid.Parse(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not an event id (a UUID)", s)
		}
		*l = append(*l, id)
	}
	return nil
}

func runInspect(ctx context.Context, args []string, stdout, _ io.Writer) error {
	var db dbFlags
	var ff filterFlags
	var limit int
	var showData, asJSON bool
	fs := newFlagSet("inspect", inspectUsage, inspectExamples)
	db.register(fs)
	ff.register(fs, "only events in this `state`: "+inspectStates+"; the ones txoutbox status counts")
	fs.IntVar(&limit, "limit", outboxadmin.LimitDefault, "most events to list")
	fs.BoolVar(&showData, "show-data", false, "show the events' data")
	fs.BoolVar(&asJSON, "json", false, "print the events as a JSON array")
	err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if limit <= 0 {
		return fmt.Errorf("inspect: --limit: %d is not a positive number", limit)
	}
	f := ff.filter()
	f.Limit, f.Data = limit, showData
	if f.State, err = inspectState(f.State); err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	pool, err := db.connect(ctx, "inspect")
	if err != nil {
		return err
	}
	defer pool.Close()
	evs, err := outboxadmin.New(pool, db.schema).Events(ctx, f)
	if err != nil {
		return db.dbError("inspect", err)
	}
	if asJSON {
		return writeEventsJSON(stdout, evs)
	}
	writeEvents(stdout, evs, showData, limit)
	return nil
}

// inspectStates are the values of inspect --state: the states status
// shows, pending ones split by what they wait for.
const inspectStates = "pending (in-flight, retrying, blocked, unclaimed), delivered or dead"

// inspectState returns the admin state of an inspect --state value.
func inspectState(state string) (string, error) {
	if state == "in-flight" {
		return outboxadmin.StateInFlight, nil
	}
	if state == "" || slices.Contains(outboxadmin.States(), state) {
		return state, nil
	}
	return "", fmt.Errorf("--state: %q is not %s", state, inspectStates)
}

func writeEventsJSON(w io.Writer, evs []outboxadmin.Event) error {
	type eventJSON struct {
		outboxadmin.Event
		Data json.RawMessage `json:"data,omitempty"`
	}
	out := make([]eventJSON, len(evs))
	for i, e := range evs {
		out[i] = eventJSON{Event: e, Data: e.Data}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// errorWidth is how much of an event's last error one line shows.
const errorWidth = 80

func writeEvents(w io.Writer, evs []outboxadmin.Event, showData bool, limit int) {
	if len(evs) == 0 {
		fmt.Fprintln(w, "no events match")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tID\tSTATE\tATTEMPTS\tTOPIC\tKEY\tPUBLISHED\tLAST ERROR")
	for _, e := range evs {
		state := e.Status
		if e.NextAttempt != nil {
			state += ", retry at " + e.NextAttempt.UTC().Format(time.TimeOnly)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", e.Seq, e.ID, state, e.Attempts, e.Topic, e.Key,
			e.PublishedAt.UTC().Format(time.DateTime), oneLine(e.LastError, errorWidth))
		if showData {
			fmt.Fprintf(tw, "\tdata: %s\n", e.Data)
		}
	}
	tw.Flush()
	if len(evs) == limit {
		fmt.Fprintf(w, "(the first %d; --limit shows more)\n", limit)
	}
}

// oneLine folds s onto one line and cuts it to at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
