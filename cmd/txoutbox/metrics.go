package main

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/txoutbox/txoutbox/outboxprom"
	"github.com/txoutbox/txoutbox/relay"
)

// relayMetrics are the relay's metrics and their /metrics handler.
type relayMetrics struct {
	*outboxprom.Metrics
	http.Handler
}

// newMetrics registers the relay's metrics, the gauges of the outbox's
// backlog and replication slots, and the Go runtime's and the process's,
// on a registry of the relay's own; it sets the relay's hooks. Once the
// relay is made, addRelay adds what is read from it.
func (f *relayFlags) newMetrics(pool *pgxpool.Pool) (*relayMetrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := outboxprom.New(reg, nil)
	if err != nil {
		return nil, err
	}
	if err := m.RegisterBacklog(pool, &outboxprom.BacklogConfig{Schema: f.cfg.Schema}); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := m.RegisterReplication(pool, &outboxprom.ReplicationConfig{Schema: f.cfg.Schema}); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	f.cfg.Hooks = m.RelayHooks(sinkLabel(f.sink))
	return &relayMetrics{m, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}, nil
}

// addRelay registers the metrics of r's WAL stream in the modes that
// stream.
func (m *relayMetrics) addRelay(r *relay.Relay, mode relay.Mode) error {
	if mode == relay.ModePoll {
		return nil
	}
	if err := m.RegisterWAL(r.WALStatus); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// sinkLabel is the sink label of the relay's metrics: the sink's scheme
// (https, nats, amqp) or its name (stdout, noop).
func sinkLabel(sink string) string {
	if scheme, _, ok := strings.Cut(sink, "://"); ok {
		return scheme
	}
	return sink
}
