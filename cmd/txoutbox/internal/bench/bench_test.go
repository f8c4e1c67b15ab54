package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	neturl "net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }

// TestBenchSmoke runs every scenario but events and modes (TestBenchEvents,
// TestBenchModes) at a tiny scale, to keep the code working; it asserts what
// was measured, never how fast.
func TestBenchSmoke(t *testing.T) {
	rep, err := Run(t.Context(), &Config{
		DatabaseURL: pgtest.NewDB(t),
		Scenarios: slices.DeleteFunc(slices.Clone(Scenarios), func(s string) bool {
			return s == ScenarioEvents || s == ScenarioModes
		}),
		Runs:            2,
		Events:          300,
		WatermillEvents: 200,
		Backlog:         900,
		Duration:        40 * time.Millisecond,
		Logger:          testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := byKey(t, rep, 2)
	for _, k := range []string{"none/c1", "flush/e10/c16", "hand/e1/c4", "wake/notify", "wake/inprocess/p99",
		"noop/r1", "http/r4", "watermill", "lat/1000/p99", "lat/sustained", "e2e/delivered", "backlog/large"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("no result %s", k)
		}
	}
	for _, k := range []string{"flush/e1/c16", "noop/r1", "backlog/large"} {
		if r := keys[k]; len(r.Ratios) == 0 || r.Ratios[0].Median <= 0 || r.Met == nil {
			t.Errorf("%s: want a positive ratio to its baseline and a goal verdict, got %+v", k, r)
		}
	}

	var table, js bytes.Buffer
	if err := rep.Write(&table); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(table.Bytes(), []byte("| publish | tx + Publish/Flush 1 event, 16 clients |")) {
		t.Errorf("table lacks the publish rows:\n%s", table.String())
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != len(rep.Results) {
		t.Errorf("JSON does not round-trip: %v", err)
	}
	t.Log("\n" + table.String())
}

// TestBenchEvents runs the events scenario at a tiny scale: every
// measurement is there, once per run, with a positive median (a point this
// short may see no post complete in one run); how fast is not asserted.
func TestBenchEvents(t *testing.T) {
	rep, err := Run(t.Context(), &Config{
		DatabaseURL: pgtest.NewDB(t),
		Scenarios:   []string{ScenarioEvents},
		Runs:        2,
		Duration:    300 * time.Millisecond, // a post of 16 concurrent ones takes 0.1–0.2 s
		Subscribers: 20,
		CatchUp:     2000,
		Logger:      testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]Result{}
	for _, r := range rep.Results {
		keys[r.Key] = r
		if len(r.Values) != 2 {
			t.Errorf("%s: %d values, want one per run", r.Key, len(r.Values))
		}
		if !(r.Median > 0) {
			t.Errorf("%s: %v, want a positive median", r.Key, r.Values)
		}
	}
	for _, k := range []string{
		"ev/ingest/ce/c1", "ev/ingest/ce/c4", "ev/ingest/ce/c16", "ev/ingest/bc/c4", "ev/ingest/store/c4", "ev/ingest/mem/c4",
		"ev/fanout/sse/2", "ev/fanout/sse/2/ingest", "ev/fanout/sse/20", "ev/fanout/ws/2",
		"ev/lat/sse/p50", "ev/lat/sse/p99", "ev/lat/sse/max", "ev/lat/sse/post", "ev/lat/ws/p99",
		"ev/catchup/sse", "ev/catchup/store",
	} {
		if _, ok := keys[k]; !ok {
			t.Errorf("no result %s", k)
		}
	}
	for _, k := range []string{"ev/ingest/ce/c4", "ev/fanout/ws/2", "ev/catchup/sse"} {
		if r := keys[k]; len(r.Ratios) == 0 || r.Ratios[0].Median <= 0 {
			t.Errorf("%s: want a positive ratio to its baseline, got %+v", k, r)
		}
	}
	for _, k := range []string{"ev/fanout/sse/20", "ev/lat/sse/p99", "ev/catchup/sse"} {
		if keys[k].Met == nil {
			t.Errorf("%s: no goal verdict", k)
		}
	}
	var table bytes.Buffer
	if err := rep.Write(&table); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(table.Bytes(), []byte("| events | fan-out: SSE, 20 subscribers, deliveries |")) {
		t.Errorf("table lacks the fan-out rows:\n%s", table.String())
	}
	t.Log("\n" + table.String())
}

// TestBenchModes runs the modes scenario at a tiny scale against a server
// with wal_level=logical: every mode has each measurement, once per run, the
// WAL and message modes a ratio to table + polling, the goals a verdict,
// and the server keeps no slot or publication afterwards; how fast is not
// asserted.
func TestBenchModes(t *testing.T) {
	url := pgtest.NewDB(t)
	// The WAL modes stream only WAL the server has flushed: under the
	// harness's synchronous_commit=off a commit reaches their relays up to
	// wal_writer_delay (200ms) later, longer than a window here, and a
	// mode would deliver nothing in it. Commit as the bench's own server
	// does.
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("synchronous_commit", "on") // a run-time parameter of each connection
	u.RawQuery = q.Encode()
	url = u.String()
	rep, err := Run(t.Context(), &Config{
		DatabaseURL: url,
		Scenarios:   []string{ScenarioModes},
		Runs:        2,
		Duration:    100 * time.Millisecond,
		Logger:      testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := byKey(t, rep, 2)
	want := []string{"modes/tx/none"}
	for _, m := range []string{"poll", "wal", "messages"} {
		for _, k := range []string{"tx", "lat/1000/p50", "lat/1000/p99", "lat/5000/p50", "lat/5000/p99", "lat/5000/produced", "sustained", "e2e"} {
			want = append(want, modesKey(k, m))
		}
	}
	for _, k := range want {
		if _, ok := keys[k]; !ok {
			t.Errorf("no result %s", k)
		}
	}
	for _, m := range []string{"wal", "messages"} {
		for _, k := range []string{"tx", "lat/1000/p99", "e2e"} {
			r := keys[modesKey(k, m)]
			if len(r.Ratios) == 0 || r.Ratios[0].To != "table + polling" || (r.Met == nil) != (k == "e2e") {
				t.Errorf("%s: want a ratio to table + polling and a goal verdict but for e2e, got %+v", modesKey(k, m), r)
			}
		}
	}
	if r := keys["modes/tx/poll"]; len(r.Ratios) != 1 || r.Ratios[0].To != "no outbox" {
		t.Errorf("modes/tx/poll: want one ratio, to no outbox, got %+v", r.Ratios)
	}

	var table bytes.Buffer
	if err := rep.Write(&table); err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{
		"| modes | tx/s, 16 clients: no outbox (business INSERT only) |",
		"| modes | tx/s, 16 clients: message only |",
		"| modes | commit→sink p99 at 1,000 events/s: table + WAL |",
		"| modes | e2e, 16 producers + relay → local HTTP sink, delivered: table + polling |",
	} {
		if !strings.Contains(table.String(), row) {
			t.Errorf("table lacks the row %q:\n%s", row, table.String())
		}
	}
	t.Log("\n" + table.String())

	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var pubs, slots int
	if err := conn.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM pg_publication),
		(SELECT count(*) FROM pg_replication_slots WHERE database = current_database())`).Scan(&pubs, &slots); err != nil {
		t.Fatal(err)
	}
	if pubs != 0 || slots != 0 {
		t.Errorf("%d publications and %d replication slots left behind, want none", pubs, slots)
	}
}

// byKey indexes rep's results by key and checks that each has a value per
// run, but the p99s at a sustained rate: they exist only for the runs that
// sustained one.
func byKey(t *testing.T, rep *Report, runs int) map[string]Result {
	t.Helper()
	keys := map[string]Result{}
	for _, r := range rep.Results {
		keys[r.Key] = r
		sustainedP99 := r.Key == "lat/sustained/p99" || strings.HasPrefix(r.Key, modesKey("sustained/p99", ""))
		if len(r.Values) != runs && (!sustainedP99 || len(r.Values) == 0) {
			t.Errorf("%s: %d values, want one per run", r.Key, len(r.Values))
		}
	}
	return keys
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []*Config{
		{Scenarios: []string{"nope"}},
		{Runs: -1},
		{Events: 1000, Backlog: 10},
		{Duration: -time.Second},
		{Subscribers: -1},
		{CatchUp: -1},
	} {
		if _, err := Run(t.Context(), cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Run(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
