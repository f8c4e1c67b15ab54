package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/topics"
)

// invoice is the data of a billing.InvoiceCreated event.
type invoice struct {
	ID          string   `json:"id"`
	Customer    customer `json:"customer"`
	AmountCents int64    `json:"amount_cents"`
	Currency    string   `json:"currency"`
	Status      string   `json:"status"`
	DueDate     string   `json:"due_date"`
}

type customer struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func newInvoice(id string, amount int64) invoice {
	return invoice{
		ID: id, Customer: customer{ID: "cus-" + strconv.FormatInt(amount%997, 10), Name: "Customer"},
		AmountCents: amount, Currency: "EUR", Status: "open", DueDate: "2026-12-31",
	}
}

// insertPath is how a transaction writes its events.
type insertPath int

const (
	// viaFlush publishes through an outbox.Session and flushes it.
	viaFlush insertPath = iota
	// viaHandwritten writes the same rows with one hand-written multi-row
	// INSERT: no validation, no watermill Publisher, the physical floor.
	viaHandwritten
	// viaHandValidated is viaHandwritten after validating each event's data
	// against its topic's schema, as Publish does: the same work as Flush
	// but for the insert path itself.
	viaHandValidated
)

// wakeSignal is what a transaction does to wake a relay.
type wakeSignal int

const (
	wakeNone        wakeSignal = iota
	notifyEveryTx              // a pg_notify in every transaction
	notifyDebounced            // a pg_notify at most every notifyDebounce per process
)

const (
	notifyChannel  = "txoutbox_bench"
	notifyDebounce = 5 * time.Millisecond
)

// producer runs request-like transactions: one business INSERT, then the
// events, then COMMIT.
type producer struct {
	pool   *pgxpool.Pool
	client *outbox.Client
	path   insertPath
	events int
	wake   wakeSignal
	// committed, when set, is called with each event id and the time its
	// transaction's COMMIT returned.
	committed func(id string, at time.Time)
	// topic validates the data of viaHandValidated.
	topic *topics.Topic

	seq        atomic.Int64
	lastNotify atomic.Int64 // unix nanoseconds of the last debounced notify
	handSQL    string
	business   string
}

func newProducer(pool *pgxpool.Pool, client *outbox.Client, path insertPath, events int, wake wakeSignal) *producer {
	p := &producer{pool: pool, client: client, path: path, events: events, wake: wake}
	if client != nil {
		p.topic, _ = client.Registry().Topic("billing.InvoiceCreated")
	}
	p.business = `INSERT INTO ` + businessTable + ` (customer_id, amount_cents, currency) VALUES ($1, $2, 'EUR')`
	if path != viaFlush && events > 0 {
		var b strings.Builder
		b.WriteString(`INSERT INTO ` + outboxsql.TableEvents +
			` (id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at) VALUES `)
		for i := range events {
			if i > 0 {
				b.WriteString(", ")
			}
			n := 5 * i
			fmt.Fprintf(&b, "($%d, 'billing.InvoiceCreated', 'billing', 'Invoice', 'Created', $%d, 'user-42', 'user', $%d, 'billing-api', $%d, $%d)",
				n+1, n+2, n+3, n+4, n+5)
		}
		p.handSQL = b.String()
	}
	return p
}

// tx runs one transaction.
func (p *producer) tx(ctx context.Context) error {
	n := p.seq.Add(1)
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	if err := p.businessWrite(ctx, tx, n); err != nil {
		return err
	}
	var (
		ids  []string
		sess *outbox.Session
	)
	switch p.path {
	case viaFlush:
		sess, ids, err = p.flush(ctx, tx, n)
	case viaHandwritten, viaHandValidated:
		ids, err = p.handwritten(ctx, tx, n)
	}
	if err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	now := time.Now()
	if p.committed != nil {
		for _, id := range ids {
			p.committed(id, now)
		}
	}
	if sess != nil {
		sess.Committed() // the client's OnCommit hooks: an embedded relay wakes
	}
	return nil
}

// businessWrite inserts the transaction's business row and, when the wake
// signal asks for it, a pg_notify in the same round trip.
func (p *producer) businessWrite(ctx context.Context, tx pgx.Tx, n int64) error {
	customer := "cus-" + strconv.FormatInt(n%997, 10)
	if !p.notifyNow() {
		if _, err := tx.Exec(ctx, p.business, customer, n); err != nil {
			return fmt.Errorf("business insert: %w", err)
		}
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(p.business, customer, n)
	b.Queue(`SELECT pg_notify($1, '')`, notifyChannel)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("business insert and notify: %w", err)
	}
	return nil
}

func (p *producer) notifyNow() bool {
	switch p.wake {
	case notifyEveryTx:
		return true
	case notifyDebounced:
		now := time.Now().UnixNano()
		last := p.lastNotify.Load()
		return now-last >= int64(notifyDebounce) && p.lastNotify.CompareAndSwap(last, now)
	}
	return false
}

func (p *producer) flush(ctx context.Context, tx pgx.Tx, n int64) (*outbox.Session, []string, error) {
	sess := p.client.UserSession("user-42", "")
	for i := range p.events {
		inv := newInvoice(invoiceID(n, i), n)
		if err := sess.Publish(ctx, "Created", "Invoice", inv); err != nil {
			return nil, nil, fmt.Errorf("publish: %w", err)
		}
	}
	var ids []string
	if p.committed != nil {
		for _, e := range sess.Unflushed() {
			ids = append(ids, e.ID.String())
		}
	}
	if err := sess.Flush(ctx, tx); err != nil {
		return nil, nil, fmt.Errorf("flush: %w", err)
	}
	return sess, ids, nil
}

func (p *producer) handwritten(ctx context.Context, tx pgx.Tx, n int64) ([]string, error) {
	if p.events == 0 {
		return nil, nil
	}
	args := make([]any, 0, 5*p.events)
	ids := make([]string, 0, p.events)
	job := uuid.Must(uuid.NewV7()).String()
	now := time.Now()
	for i := range p.events {
		id := invoiceID(n, i)
		data, err := json.Marshal(newInvoice(id, n))
		if err != nil {
			return nil, fmt.Errorf("encode data: %w", err)
		}
		if p.path == viaHandValidated {
			if _, err := p.topic.Validate(data); err != nil {
				return nil, fmt.Errorf("validate data: %w", err)
			}
		}
		eventID := uuid.Must(uuid.NewV7())
		args = append(args, eventID, data, job, id, now)
		ids = append(ids, eventID.String())
	}
	if _, err := tx.Exec(ctx, p.handSQL, args...); err != nil {
		return nil, fmt.Errorf("hand-written insert: %w", err)
	}
	return ids, nil
}

func invoiceID(n int64, i int) string {
	return "inv-" + strconv.FormatInt(n, 10) + "-" + strconv.Itoa(i)
}

// closedLoop runs clients goroutines that each call fn back to back, and
// returns the calls per second completed during window, after a warm-up.
func closedLoop(ctx context.Context, clients int, warmup, window time.Duration, fn func(context.Context) error) (float64, error) {
	l := startLoad(ctx, clients, 0, fn)
	rate := measure(ctx, warmup, window, &l.done)
	if err := l.stop(); err != nil {
		return 0, err
	}
	if rate == 0 {
		return 0, ctx.Err()
	}
	return rate, nil
}

// measure waits out warmup, then returns how fast counter grew over window.
// A window in which nothing completed (calls slower than the window, as on
// a loaded machine with a short --duration) is stretched until something
// does, up to measureStretchMax: a rate of zero would report a stall that
// did not happen.
func measure(ctx context.Context, warmup, window time.Duration, counter *atomic.Int64) float64 {
	if !sleep(ctx, warmup) {
		return 0
	}
	start, n0 := time.Now(), counter.Load()
	if !sleep(ctx, window) {
		return 0
	}
	for counter.Load() == n0 && time.Since(start) < measureStretchMax {
		if !sleep(ctx, min(window, 100*time.Millisecond)) {
			return 0
		}
	}
	return float64(counter.Load()-n0) / time.Since(start).Seconds()
}

// measureStretchMax bounds how long measure waits for a first completion.
const measureStretchMax = 30 * time.Second

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// load runs fn on workers goroutines until stopped: back to back when rate
// is 0 (a closed loop), else at rate calls per second in all (an open loop).
// In an open loop, calls the workers cannot take up in time are counted in
// missed, not queued, so the offered rate stays the rate asked for.
type load struct {
	done, missed atomic.Int64

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errOnce sync.Once
	err     error
}

// startLoad starts a load; stop ends it. Stopping lets the calls in flight
// finish: fn runs under the caller's ctx,
// so no transaction is cut off mid-way, holding locks on the server a while
// after its connection was dropped.
func startLoad(ctx context.Context, workers int, rate float64, fn func(context.Context) error) *load {
	l := &load{}
	callCtx := ctx
	ctx, l.cancel = context.WithCancel(ctx)
	var tokens chan struct{}
	if rate > 0 {
		tokens = make(chan struct{}, workers)
	}
	for range workers {
		l.wg.Go(func() {
			for {
				if tokens != nil {
					select {
					case <-ctx.Done():
						return
					case <-tokens:
					}
				} else if ctx.Err() != nil {
					return
				}
				if err := fn(callCtx); err != nil {
					if ctx.Err() == nil {
						l.errOnce.Do(func() { l.err = err; l.cancel() })
					}
					return
				}
				l.done.Add(1)
			}
		})
	}
	if tokens != nil {
		l.wg.Go(func() { l.pace(ctx, rate, tokens) })
	}
	return l
}

// pace hands out rate tokens a second, a millisecond's worth at a time.
func (l *load) pace(ctx context.Context, rate float64, tokens chan<- struct{}) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	start, sent := time.Now(), int64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for due := int64(now.Sub(start).Seconds() * rate); sent < due; sent++ {
				select {
				case tokens <- struct{}{}:
				default:
					l.missed.Add(1)
				}
			}
		}
	}
}

// stop ends the load, waits for the transactions in flight, and returns the
// first error a transaction had.
func (l *load) stop() error {
	l.cancel()
	l.wg.Wait()
	return l.err
}

// cpuTimes is the machine's CPU time so far, all CPUs together, in the
// kernel's ticks: busy is everything but idle and iowait. ok is false where
// /proc/stat cannot be read (not Linux). A fixed-rate measurement that falls
// short of its rate with the CPUs busy ran out of machine, not of database.
type cpuTimes struct {
	busy, total uint64
	ok          bool
}

func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}
	}
	var t cpuTimes
	// user nice system idle iowait irq softirq steal; guest time is
	// already counted in user and nice.
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cpuTimes{}
		}
		t.total += n
		if i != 3 && i != 4 {
			t.busy += n
		}
	}
	t.ok = true
	return t
}

// busySince returns the share of the machine's CPU time that was busy
// between t0 and t, or -1 when it is not known.
func (t cpuTimes) busySince(t0 cpuTimes) float64 {
	if !t.ok || !t0.ok || t.total <= t0.total {
		return -1
	}
	return float64(t.busy-t0.busy) / float64(t.total-t0.total)
}
