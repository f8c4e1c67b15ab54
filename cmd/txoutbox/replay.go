package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	outboxadmin "github.com/txoutbox/txoutbox/cmd/txoutbox/internal/admin"
	"github.com/txoutbox/txoutbox/relay"
)

const replayUsage = `
Put dead or delivered events back in the queue: they become pending with
their attempts reset, keep their id, and are delivered again in their key's
order. Select them by --id, or by --state (every dead or every delivered
event) narrowed with --topic and --key. --dry-run counts them and changes
nothing.

Fix what made them fail first: an event that fails permanently again is
dead-lettered again. A relay picks replayed dead events up within a third of
its lease (10s by default). Delivered events are only there while the relay's
--retention keeps them; consumers see them twice, with the same id.`

const replayExamples = `  txoutbox replay --state dead --dry-run
  txoutbox replay --state dead --topic billing.InvoiceCreated
  txoutbox replay --id 01936f8e-5b7c-7d2a-9c1e-3f4a5b6c7d8e
  txoutbox replay --state delivered --key inv-1001`

func runReplay(ctx context.Context, args []string, stdout, _ io.Writer) error {
	var db dbFlags
	var ff filterFlags
	var dryRun bool
	fs := newFlagSet("replay", replayUsage, replayExamples)
	db.register(fs)
	ff.register(fs, "replay every event in this `state`: dead or delivered")
	fs.BoolVar(&dryRun, "dry-run", false, "count the events that would be replayed; change nothing")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	f := ff.filter()
	switch {
	case f.State == "" && len(f.IDs) == 0:
		return errors.New("replay: say which events: --id or --state dead|delivered (see txoutbox replay --help)")
	case f.State != "" && f.State != outboxadmin.StateDead && f.State != outboxadmin.StateDelivered:
		return fmt.Errorf("replay: --state: %q is not dead or delivered", f.State)
	}
	pool, err := db.connect(ctx, "replay")
	if err != nil {
		return err
	}
	defer pool.Close()
	a := outboxadmin.New(pool, db.schema)
	if dryRun {
		dead, delivered, err := a.Replayable(ctx, f)
		if err != nil {
			return db.dbError("replay", err)
		}
		fmt.Fprintf(stdout, "would replay %s (%d dead, %d delivered); nothing changed\n",
			plural(int(dead+delivered), "event", "events"), dead, delivered)
		return nil
	}
	n, err := a.Replay(ctx, f)
	if err != nil {
		return db.dbError("replay", err)
	}
	if n == 0 {
		fmt.Fprintln(stdout, "no dead or delivered events match: nothing replayed")
		return nil
	}
	fmt.Fprintf(stdout, "replayed %s: pending again; a relay delivers them within about %s\n",
		plural(int(n), "event", "events"), relay.LeaseTTLDefault/3)
	return nil
}
