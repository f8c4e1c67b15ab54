package outboxprom

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// BacklogTimeoutDefault bounds the backlog query of one scrape.
const BacklogTimeoutDefault = 2 * time.Second

// BacklogConfig configures RegisterBacklog. A nil *BacklogConfig is the
// zero BacklogConfig.
type BacklogConfig struct {
	// Schema holds the outbox table. Defaults to the connection's
	// search_path.
	Schema string
	// Timeout bounds the query of one scrape; a scrape that times out
	// reports an error for the backlog gauges only. Defaults to
	// BacklogTimeoutDefault.
	Timeout time.Duration
}

// RegisterBacklog registers the gauges read from the outbox table on each
// scrape: pending events, the age of the oldest one and dead events. One
// query per scrape, on the partial indexes of pending and dead rows; its
// cost grows with the backlog (a count), about 10 ms per 100k pending rows.
func (m *Metrics) RegisterBacklog(pool *pgxpool.Pool, cfg *BacklogConfig) error {
	var c BacklogConfig
	if cfg != nil {
		c = *cfg
	}
	timeout, err := scrapeTimeout("BacklogConfig.Timeout", c.Timeout, BacklogTimeoutDefault)
	if err != nil {
		return err
	}
	bc := &backlogCollector{
		pool:    pool,
		timeout: timeout,
		query:   outboxsql.New(c.Schema).Backlog,
		backlog: m.desc("outbox", "backlog_events", "Events committed to the outbox and not yet delivered."),
		oldest:  m.desc("outbox", "oldest_pending_age_seconds", "Age of the oldest pending event, 0 when none is pending."),
		dead:    m.desc("outbox", "dead_events", "Dead-lettered events waiting for a replay."),
	}
	if err := m.reg.Register(bc); err != nil {
		return fmt.Errorf("outboxprom: register backlog: %w", err)
	}
	return nil
}

// backlogCollector reads the backlog gauges from the table when scraped.
type backlogCollector struct {
	pool                  *pgxpool.Pool
	timeout               time.Duration
	query                 string
	backlog, oldest, dead *prometheus.Desc
}

func (b *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- b.backlog
	ch <- b.oldest
	ch <- b.dead
}

func (b *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	var pending, dead int64
	var age float64
	if err := b.pool.QueryRow(ctx, b.query).Scan(&pending, &age, &dead); err != nil {
		invalid(ch, fmt.Errorf("read outbox backlog: %w", err), b.backlog, b.oldest, b.dead)
		return
	}
	ch <- prometheus.MustNewConstMetric(b.backlog, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(b.oldest, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(b.dead, prometheus.GaugeValue, float64(dead))
}
