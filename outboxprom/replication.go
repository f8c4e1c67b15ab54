package outboxprom

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/relay"
)

// ReplicationTimeoutDefault bounds the replication query of one scrape.
const ReplicationTimeoutDefault = 2 * time.Second

// ReplicationConfig configures RegisterReplication. A nil
// *ReplicationConfig is the zero ReplicationConfig.
type ReplicationConfig struct {
	// Timeout bounds the query of one scrape; a scrape that times out
	// reports an error for the slot gauges only. Defaults to
	// ReplicationTimeoutDefault.
	Timeout time.Duration

	// Schema is the outbox's schema, as given to outbox.Migrate ("" for
	// the search_path's): its record of message storage's slot makes a
	// slot that was dropped show as lost. Defaults to "".
	Schema string
}

// RegisterReplication registers the gauges of txoutbox's replication slots
// in pool's database, read from pg_replication_slots on each scrape: the
// WAL each holds back, whether a relay streams it, and whether it is lost.
// A slot holds back WAL while no relay confirms it (the durable slot of
// message storage, while every relay is down or the sink is); alert on the
// retained bytes long before max_slot_wal_keep_size, and on lost, which
// needs an operator (see relay.ModeMessages); a slot of message storage
// that the outbox's record says txoutbox created and that was dropped is
// reported as lost. The queries read a system view and that record, and
// cost well under a millisecond.
func (m *Metrics) RegisterReplication(pool *pgxpool.Pool, cfg *ReplicationConfig) error {
	var c ReplicationConfig
	if cfg != nil {
		c = *cfg
	}
	timeout, err := scrapeTimeout("ReplicationConfig.Timeout", c.Timeout, ReplicationTimeoutDefault)
	if err != nil {
		return err
	}
	rc := &replicationCollector{
		pool:    pool,
		timeout: timeout,
		schema:  c.Schema,
		retained: m.desc("replication", "slot_retained_bytes",
			"WAL the replication slot holds back, from its restart_lsn to the server's current position.", "slot"),
		active: m.desc("replication", "slot_active", "1 while a relay streams the replication slot.", "slot"),
		lost: m.desc("replication", "slot_lost",
			"1 when the replication slot is lost (invalidated by the server, or, for message storage's, dropped while the outbox's record names it): what it held can no longer be read.", "slot"),
	}
	if err := m.reg.Register(rc); err != nil {
		return fmt.Errorf("outboxprom: register replication: %w", err)
	}
	return nil
}

// replicationCollector reads the slot gauges when scraped.
type replicationCollector struct {
	pool                   *pgxpool.Pool
	timeout                time.Duration
	schema                 string
	retained, active, lost *prometheus.Desc
}

func (c *replicationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.retained
	ch <- c.active
	ch <- c.lost
}

func (c *replicationCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	r, err := outboxsql.ReadReplication(ctx, c.pool, c.schema)
	if err != nil {
		invalid(ch, err, c.retained, c.active, c.lost)
		return
	}
	for _, s := range r.Slots {
		ch <- prometheus.MustNewConstMetric(c.retained, prometheus.GaugeValue, float64(s.RetainedBytes), s.Name)
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, boolValue(s.Active), s.Name)
		ch <- prometheus.MustNewConstMetric(c.lost, prometheus.GaugeValue, boolValue(s.Lost), s.Name)
	}
}

// RegisterWAL registers the metrics of a relay's WAL stream (relay.ModeWAL
// and relay.ModeMessages), read from status on each scrape; pass the
// relay's WALStatus method:
//
//	err = m.RegisterWAL(r.WALStatus)
//
// They are whether the stream is open, the commits that woke the relay,
// the streams that broke and were opened again, and, in ModeMessages,
// whether the relay found the slot lost or missing, and how often it found
// it created again.
func (m *Metrics) RegisterWAL(status func() relay.WALStatus) error {
	if status == nil {
		return fmt.Errorf("outboxprom: RegisterWAL: status is nil")
	}
	wc := &walCollector{
		status:    status,
		streaming: m.desc("relay", "wal_streaming", "1 while the relay's WAL stream is open (in messages mode: while it holds the slot)."),
		wakes:     m.desc("relay", "wal_wakes_total", "Commits received from the WAL stream that woke the relay (in messages mode: that carried events)."),
		restarts:  m.desc("relay", "wal_restarts_total", "WAL streams that broke and were opened again."),
		lost:      m.desc("relay", "wal_slot_lost", "1 while the relay finds the slot of message storage lost or missing (messages mode)."),
		recreated: m.desc("relay", "wal_slot_recreated_total", "Times the relay found the slot of message storage created again since it last read it: events were lost (messages mode)."),
	}
	if err := m.reg.Register(wc); err != nil {
		return fmt.Errorf("outboxprom: register WAL: %w", err)
	}
	return nil
}

// walCollector reads a relay's WALStatus when scraped.
type walCollector struct {
	status                                      func() relay.WALStatus
	streaming, wakes, restarts, lost, recreated *prometheus.Desc
}

func (c *walCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.streaming
	ch <- c.wakes
	ch <- c.restarts
	ch <- c.lost
	ch <- c.recreated
}

func (c *walCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.status()
	ch <- prometheus.MustNewConstMetric(c.streaming, prometheus.GaugeValue, boolValue(s.Streaming))
	ch <- prometheus.MustNewConstMetric(c.wakes, prometheus.CounterValue, float64(s.Wakes))
	ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(s.Restarts))
	ch <- prometheus.MustNewConstMetric(c.lost, prometheus.GaugeValue, boolValue(s.Lost))
	ch <- prometheus.MustNewConstMetric(c.recreated, prometheus.CounterValue, float64(s.Recreated))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// desc describes the metric namespace_sub_name of m.
func (m *Metrics) desc(sub, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, sub, name), help, labels, m.cfg.ConstLabels)
}

// scrapeTimeout is the Timeout field of a collector that queries on each
// scrape, defaulted and checked.
func scrapeTimeout(field string, d, def time.Duration) (time.Duration, error) {
	d = cmp.Or(d, def)
	if d < 0 {
		return 0, fmt.Errorf("outboxprom: %s must not be negative, got %s", field, d)
	}
	return d, nil
}

// invalid reports err for each of descs: a scrape that failed shows an
// error, never stale values.
func invalid(ch chan<- prometheus.Metric, err error, descs ...*prometheus.Desc) {
	for _, d := range descs {
		ch <- prometheus.NewInvalidMetric(d, err)
	}
}
