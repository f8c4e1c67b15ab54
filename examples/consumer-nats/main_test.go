package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/examples/internal/exampleenv"
	"github.com/txoutbox/txoutbox/examples/internal/exampletest"
	"github.com/txoutbox/txoutbox/internal/eventstest"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m),
		// nats.go's flusher outlives Close by a moment.
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go.(*Conn).flusher"))
}

// natsAddr is the NATS server with JetStream the tests use; a machine
// without one skips them, saying how to start it.
const natsAddr = "127.0.0.1:4222"

// testStreamPrefix names the streams these tests create, so a run can
// delete those a killed run left behind.
const testStreamPrefix = "TXOUTBOX_EXAMPLE_"

// connect returns a JetStream context on natsAddr, or skips the test when
// nothing listens there.
func connect(t *testing.T) nats.JetStreamContext {
	t.Helper()
	conn, err := net.DialTimeout("tcp", natsAddr, 2*time.Second)
	if err != nil {
		t.Skipf("SKIPPED: no NATS server on %s (%v). To run this test, start one with JetStream: "+
			"nats-server -js -a 127.0.0.1 -p 4222 (Debian: apt-get install nats-server)", natsAddr, err)
	}
	_ = conn.Close()
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(); err != nil {
		t.Fatalf("NATS on %s has no JetStream (%v); start it with -js", natsAddr, err)
	}
	return js
}

// TestREADME runs what the README says: txoutbox relay --sink nats://...
// creates the stream (with the subjects its --topic-template makes) and
// publishes the outbox's events to it, then the consumer, started as go
// run starts it, prints each event once.
func TestREADME(t *testing.T) {
	js := connect(t)
	deleteStaleStreams(t, js)
	bin := exampletest.Txoutbox(t)
	for _, tc := range []struct {
		name    string
		args    []string // after the README's relay command
		subject string   // of every message
	}{
		{"default subjects", nil, "billing.InvoiceOverdue"},
		{"topic template", []string{"--topic-template", "events.{category}.{entity}.{action}"}, "events.billing.Invoice.Overdue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 30
			url := pgtest.NewDB(t)
			pool := exampletest.Pool(t, url)
			if err := outbox.Migrate(t.Context(), pool, nil); err != nil {
				t.Fatal(err)
			}
			ids := map[string]bool{}
			for _, id := range eventstest.PublishOverdue(t, pool, n) {
				ids[id.String()] = true
			}
			stream := testStreamPrefix + strings.ToUpper(uuid.NewString()[:8])
			t.Cleanup(func() { _ = js.DeleteStream(stream) })

			relay := startRelay(t, bin, append([]string{"relay", "--database-url", url,
				"--sink", "nats://" + natsAddr, "--nats-stream", stream, "--admin-addr", ""}, tc.args...)...)
			relay.waitStream(t, js, stream)

			lines := runConsumer(t, map[string]string{"DATABASE_URL": url, "NATS_URL": "nats://" + natsAddr, "STREAM": stream}, n)
			for _, line := range lines {
				f := strings.Fields(line)
				if len(f) < 4 || !ids[f[0]] || f[1] != tc.subject || !strings.HasPrefix(f[2], "key=inv-") {
					t.Fatalf("consumer printed %q; want each event of the outbox once, on subject %s, with its key and data", line, tc.subject)
				}
				delete(ids, f[0])
			}
			if len(ids) != 0 {
				t.Errorf("%d events never consumed", len(ids))
			}
			relay.stop(t)
		})
	}
}

// deleteStaleStreams deletes the streams of these tests that a run killed
// before its cleanup left behind: NATS lets only one stream take a given
// subject, so a leftover stream on the default subjects would make the
// next run's relay fail to create its own.
func deleteStaleStreams(t *testing.T, js nats.JetStreamContext) {
	t.Helper()
	for info := range js.StreamsInfo() {
		if strings.HasPrefix(info.Config.Name, testStreamPrefix) && time.Since(info.Created) > 10*time.Minute {
			if err := js.DeleteStream(info.Config.Name); err != nil {
				t.Logf("delete stale stream %s: %v", info.Config.Name, err)
			}
		}
	}
}

// relayProc is a txoutbox relay process.
type relayProc struct {
	cmd    *exec.Cmd
	log    string        // file of its output
	exited chan struct{} // closed once err is set
	err    error
}

// startRelay runs the txoutbox binary with args, in an environment without
// TXOUTBOX_ variables; it is killed when the test ends, unless stopped.
func startRelay(t *testing.T, bin string, args ...string) *relayProc {
	t.Helper()
	p := &relayProc{cmd: exec.Command(bin, args...), log: filepath.Join(t.TempDir(), "relay.log"), exited: make(chan struct{})}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TXOUTBOX_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the relay has its own copy
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill() // fails once the relay has exited
		<-p.exited
	})
	return p
}

// output is what the relay has logged so far.
func (p *relayProc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// waitStream waits until the relay has created stream, as the README says
// to before starting the consumer.
func (p *relayProc) waitStream(t *testing.T, js nats.JetStreamContext, stream string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := js.StreamInfo(stream); err == nil {
			return
		}
		select {
		case <-p.exited:
			t.Fatalf("relay exited: %v\n%s", p.err, p.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stream %s after 30s\n%s", stream, p.output())
		}
	}
}

// stop interrupts the relay, as Ctrl-C does, and checks it exits 0.
func (p *relayProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("relay: %v\n%s", p.err, p.output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("relay still running 30s after SIGINT\n%s", p.output())
	}
}

// runConsumer runs the consumer as main does, with env, until it has
// printed n lines, and returns them.
func runConsumer(t *testing.T, env map[string]string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, nil, func(k string) string { return env[k] }, pw)
		pw.CloseWithError(fmt.Errorf("consumer returned: %v", err))
		done <- err
	}()
	linec := make(chan string)
	go func() {
		defer close(linec)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			linec <- sc.Text()
		}
	}()
	defer func() { // stop the consumer, and check it printed nothing more
		cancel()
		for line := range linec {
			t.Errorf("consumer printed more than %d events: %q", n, line)
		}
		if err := <-done; err != nil {
			t.Errorf("consumer: %v", err)
		}
	}()
	var lines []string
	timeout := time.After(30 * time.Second)
	for len(lines) < n {
		select {
		case line, ok := <-linec:
			if !ok {
				t.Fatalf("consumer stopped after %d of %d events", len(lines), n)
			}
			lines = append(lines, line)
		case <-timeout:
			t.Fatalf("consumer printed %d of %d events in 30s", len(lines), n)
		}
	}
	return lines
}

// TestConsumeDedupes publishes events to a JetStream stream, some twice as
// a retried relay batch would, and checks each is processed once; one
// whose processing fails the first time is nacked, delivered again and
// processed then.
func TestConsumeDedupes(t *testing.T) {
	js := connect(t)
	url := pgtest.NewDB(t)
	pool, ib, err := exampleenv.OpenInbox(t.Context(), func(k string) string { return map[string]string{"DATABASE_URL": url}[k] })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	tag := "c" + uuid.NewString()[:8]
	stream := testStreamPrefix + tag
	// Three tokens: the relay's default subjects (*.*) stay free for TestREADME.
	if _, err := js.AddStream(&nats.StreamConfig{Name: stream, Subjects: []string{tag + ".*.*"}, Storage: nats.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(stream) }()

	const n = 20
	var failing string
	for i := range n {
		m := nats.NewMsg(tag + ".billing.InvoiceCreated")
		m.Header.Set(eventIDHeader, uuid.NewString())
		if i == 3 {
			failing = m.Header.Get(eventIDHeader)
		}
		m.Data = []byte(`{}`)
		copies := 1 + i%2 // every other event arrives twice
		for range copies {
			if _, err := js.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	var processed atomic.Int32
	seen := map[string]int{} // written by consume's goroutine only
	failed := false
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	c := &consumer{pool: pool, inbox: ib, process: func(_ context.Context, _ pgx.Tx, m *nats.Msg) error {
		id := m.Header.Get(eventIDHeader)
		if id == failing && !failed {
			failed = true
			return errors.New("the projection is down")
		}
		if seen[id]++; seen[id] > 1 {
			t.Errorf("event %s processed twice", id)
		}
		if processed.Add(1) == n {
			cancel()
		}
		return nil
	}}
	go func() { done <- c.consume(ctx, js, stream, tag+".billing.*", "test") }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatalf("%d of %d events processed in 20s", processed.Load(), n)
	}
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	if got := processed.Load(); got != n || info.State.Msgs != n+n/2 || !failed {
		t.Errorf("processed %d of %d messages in the stream (the failing one failed: %v); want %d of %d", got, info.State.Msgs, failed, n, n+n/2)
	}
	var recorded int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM txoutbox_inbox WHERE consumer = 'test'`).Scan(&recorded); err != nil || recorded != n {
		t.Errorf("the inbox holds %d ids (%v), want %d", recorded, err, n)
	}
}

// TestConsumeErrors checks the consumer says what to do when the stream is
// missing or the filter lies outside the stream's subjects.
func TestConsumeErrors(t *testing.T) {
	js := connect(t)
	tag := "e" + uuid.NewString()[:8]
	stream := testStreamPrefix + strings.ToUpper(tag)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c := &consumer{process: func(context.Context, pgx.Tx, *nats.Msg) error { t.Error("consumed a message"); return nil }}

	err := c.consume(ctx, js, stream, "", "test")
	if want := "no stream " + stream + ": txoutbox relay --sink nats://... creates it"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("consume from a missing stream = %v; want an error containing %q", err, want)
	}

	if _, err := js.AddStream(&nats.StreamConfig{Name: stream, Subjects: []string{tag + ".*.*"}, Storage: nats.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(stream) }()
	err = c.consume(ctx, js, stream, tag+".billing.>", "test")
	if want := "subscribe to " + tag + ".billing.> of stream " + stream + ", whose subjects are " + tag + ".*.*: "; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("consume with a filter outside the stream = %v; want an error containing %q", err, want)
	}
}
