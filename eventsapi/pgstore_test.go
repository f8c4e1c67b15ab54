package eventsapi

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// newPgStore migrates pool's database for cfg and opens a store on it,
// closed in t's cleanup.
func newPgStore(t testing.TB, pool *pgxpool.Pool, cfg *PostgresStoreConfig) *PostgresStore {
	t.Helper()
	if err := MigratePostgres(t.Context(), pool, cfg); err != nil {
		t.Fatal(err)
	}
	s, err := NewPostgresStore(t.Context(), pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestMigratePostgres(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := t.Context()

	if _, err := NewPostgresStore(ctx, pool, nil); err == nil || !strings.Contains(err.Error(), "MigratePostgres") {
		t.Errorf("NewPostgresStore before migrating: %v; want an error saying to migrate", err)
	}

	// Four processes migrating one schema at once: all succeed, once.
	cfg := &PostgresStoreConfig{Schema: `events "api"`}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := MigratePostgres(ctx, pool, cfg); err != nil {
				t.Errorf("concurrent MigratePostgres: %v", err)
			}
		})
	}
	wg.Wait()
	if err := MigratePostgres(ctx, pool, cfg); err != nil {
		t.Errorf("MigratePostgres again: %v", err)
	}
	var applied int
	ups, _ := fs.Glob(PostgresMigrations(), "*.up.sql")
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgTable(cfg.Schema, pgTableMigrations)).Scan(&applied); err != nil || applied != len(ups) || len(ups) < 2 {
		t.Errorf("%d migrations recorded, %v; want %d", applied, err, len(ups))
	}

	// Stores in two schemas of one database are separate.
	other := newPgStore(t, pool, nil)
	s, err := NewPostgresStore(ctx, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustAppend(t, s, storeEvent(1))
	if got := mustRead(t, other, &ReadRequest{}); len(got) != 0 {
		t.Errorf("the other schema's store reads %d events", len(got))
	}
	if a := mustAppend(t, other, storeEvent(1)); a[0].Duplicate {
		t.Error("an id of the other schema is a duplicate")
	}

	if err := MigratePostgres(ctx, pool, &PostgresStoreConfig{Schema: " x"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("MigratePostgres with a bad schema: %v; want ErrInvalidConfig", err)
	}
	names, err := PostgresMigrations().Open("001_create_events.up.sql")
	if err != nil {
		t.Errorf("PostgresMigrations: %v", err)
	} else {
		names.Close()
	}
}

func TestNewPostgresStoreConfig(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	for _, c := range []struct {
		name string
		pool *pgxpool.Pool
		cfg  *PostgresStoreConfig
	}{
		{"nil pool", nil, nil},
		{"negative PollInterval", pool, &PostgresStoreConfig{PollInterval: -time.Second}},
		{"schema too long", pool, &PostgresStoreConfig{Schema: strings.Repeat("s", 64)}},
	} {
		if _, err := NewPostgresStore(t.Context(), c.pool, c.cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v; want ErrInvalidConfig", c.name, err)
		}
	}
}

func TestPostgresStoreRejectsWhatPostgresCannotHold(t *testing.T) {
	t.Parallel()
	s := newPgStore(t, pgtest.NewPool(t), nil)
	for name, mutate := range map[string]func(*Event){
		"NUL in topic":       func(e *Event) { e.Topic = "a\x00b" },
		"invalid UTF-8 key":  func(e *Event) { e.Key = "\xff" },
		"long id":            func(e *Event) { e.ID = strings.Repeat("x", PostgresMaxIndexedBytes+1) },
		"long dedupe key":    func(e *Event) { e.DedupeKey = strings.Repeat("x", PostgresMaxIndexedBytes+1) },
		"data not JSON":      func(e *Event) { e.Data = []byte("{") },
		"data invalid UTF-8": func(e *Event) { e.Data = []byte("\"\xff\"") },
	} {
		bad := storeEvent(2)
		mutate(&bad)
		if _, err := s.Append(t.Context(), []Event{storeEvent(1), bad}); err == nil {
			t.Errorf("%s: Append succeeded", name)
		}
	}
	if got := mustRead(t, s, &ReadRequest{}); len(got) != 0 {
		t.Errorf("%d events stored by failed appends", len(got))
	}
}

// TestPostgresStoreGroupCommit appends from many goroutines through one
// store at once: calls are combined into fewer transactions (counted by
// their notifications), and each call still gets its own answers.
func TestPostgresStoreGroupCommit(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	s := newPgStore(t, pool, nil)
	ctx := t.Context()
	listener, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Release()
	if _, err := listener.Exec(ctx, "LISTEN "+pgx.Identifier{s.q.channel}.Sanitize()); err != nil {
		t.Fatal(err)
	}

	const calls, per = 64, 5
	start := make(chan struct{})
	answers := make([][]Appended, calls)
	var wg sync.WaitGroup
	for c := range calls {
		wg.Go(func() {
			evs := make([]Event, per)
			for i := range evs {
				evs[i] = storeEvent(c*per + i)
			}
			<-start
			out, err := s.Append(ctx, evs)
			if err != nil {
				t.Error(err)
			}
			answers[c] = out
		})
	}
	close(start)
	wg.Wait()
	var all []int64
	for c, out := range answers {
		for i, a := range out {
			if a.Duplicate || (i > 0 && a.Position != out[i-1].Position+1) {
				t.Errorf("call %d got %+v; want consecutive new positions", c, out)
			}
			all = append(all, a.Position)
		}
	}
	slices.Sort(all)
	if len(slices.Compact(all)) != calls*per {
		t.Errorf("%d distinct positions for %d events", len(all), calls*per)
	}
	notifications := 0
	for {
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := listener.Conn().WaitForNotification(wctx)
		cancel()
		if err != nil {
			break
		}
		notifications++
	}
	if notifications == 0 || notifications >= calls {
		t.Errorf("%d calls made %d transactions; want fewer, and some", calls, notifications)
	}
	t.Logf("%d calls of %d events appended in %d transactions", calls, per, notifications)
}

// TestPostgresStoreGroupFailure checks that a combined transaction that
// fails is retried call by call: only the call at fault fails.
func TestPostgresStoreGroupFailure(t *testing.T) {
	t.Parallel()
	s := newPgStore(t, pgtest.NewPool(t), nil)
	bad := storeEvent(2)
	bad.Topic = "\x00" // what Append would have refused
	group := []*pgAppendReq{
		{ctx: t.Context(), events: []Event{storeEvent(1)}, done: make(chan struct{})},
		{ctx: t.Context(), events: []Event{bad}, done: make(chan struct{})},
		{ctx: t.Context(), events: []Event{storeEvent(3)}, done: make(chan struct{})},
	}
	s.appendGroup(group)
	for i, r := range group {
		<-r.done
		if (r.err != nil) != (i == 1) {
			t.Errorf("call %d: %+v, %v", i, r.out, r.err)
		}
	}
	if got := mustRead(t, s, &ReadRequest{}); len(got) != 2 {
		t.Errorf("%d events stored; want 2", len(got))
	}

	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Append(canceled, []Event{storeEvent(4)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a canceled context: %v", err)
	}
}

// TestPostgresStoreWakesOtherInstance measures how soon a store learns of
// an append through another store on the same tables, by notification
// alone (the poll is out of the way).
func TestPostgresStoreWakesOtherInstance(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	cfg := &PostgresStoreConfig{PollInterval: time.Hour}
	a := newPgStore(t, pool, cfg)
	b := newPgStore(t, pool, cfg)
	lat := make([]time.Duration, 0, 20)
	head := int64(0)
	for i := range cap(lat) {
		ch := b.Changed(head)
		start := time.Now()
		head = mustAppend(t, a, storeEvent(i))[0].Position
		select {
		case <-ch:
			lat = append(lat, time.Since(start))
		case <-time.After(5 * time.Second):
			t.Fatalf("append %d: the other store was not woken", i)
		}
	}
	slices.Sort(lat)
	t.Logf("append on one store to wake-up on another: median %s, max %s over %d appends", lat[len(lat)/2], lat[len(lat)-1], len(lat))
}

// TestPostgresStoreListenerReconnects ends the listener's connection from
// the server: the store reconnects, catches up on what it missed, and is
// woken by notifications again.
func TestPostgresStoreListenerReconnects(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	var logs syncBuffer
	a := newPgStore(t, pool, &PostgresStoreConfig{Logger: slog.New(slog.DiscardHandler)})
	b := newPgStore(t, pool, &PostgresStoreConfig{PollInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := t.Context()

	// The listeners connect in the background: end their connections until
	// b's has ended (a's may reconnect and be ended again in the meantime,
	// so counting ended connections does not tell).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "lost its connection") {
		if time.Now().After(deadline) {
			t.Fatalf("b's listener never lost its connection; log:\n%s", logs.String())
		}
		if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	head := mustAppend(t, a, storeEvent(1))[0].Position // while b is not listening, perhaps
	select {
	case <-b.Changed(head - 1):
	case <-time.After(10 * time.Second):
		t.Fatalf("not woken after the listener's connection ended; log:\n%s", logs.String())
	}
	ch := b.Changed(head)
	mustAppend(t, a, storeEvent(2))
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("not woken by a notification after reconnecting; log:\n%s", logs.String())
	}
	if l := logs.String(); !strings.Contains(l, "lost its connection") || !strings.Contains(l, "reconnected") {
		t.Errorf("log does not tell of the reconnect:\n%s", l)
	}
}

// TestPostgresStoreReadChecksInGo reads with a matcher whose SQL form says
// nothing (its filter is emptied behind its back): Read must still return
// exactly the matching events, reading on past the rows Go rejects.
func TestPostgresStoreReadChecksInGo(t *testing.T) {
	t.Parallel()
	s := newPgStore(t, pgtest.NewPool(t), nil)
	all := corpus(t, s, 300)
	m := MustCompile(Filter{Include: []Selector{{Key: []string{"inv%4"}}}, Tenant: "acme"}) // 1 event in 21
	blind := *m
	blind.filter = Filter{}
	for _, req := range []ReadRequest{
		{Limit: 5, Match: &blind},
		{Limit: 5, Match: &blind, Descending: true},
		{Limit: 100, Match: &blind, After: all[40].Position},
	} {
		want := expect(all, &ReadRequest{After: req.After, Descending: req.Descending, Match: m}, req.Limit)
		if got := mustRead(t, s, &req); !slices.Equal(positionsOf(got), positionsOf(want)) {
			t.Errorf("Read(%+v) = %v; want %v", req, positionsOf(got), positionsOf(want))
		}
	}
}
