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
)

// newMetrics registers the relay's metrics, and the Go runtime's and the
// process's, on a registry of the relay's own; it sets the relay's hooks
// and returns the /metrics handler.
func (f *relayFlags) newMetrics(pool *pgxpool.Pool) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := outboxprom.New(reg, nil)
	if err != nil {
		return nil, err
	}
	if err := m.RegisterBacklog(pool, &outboxprom.BacklogConfig{Schema: f.cfg.Schema}); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	f.cfg.Hooks = m.RelayHooks(sinkLabel(f.sink))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// sinkLabel is the sink label of the relay's metrics: the sink's scheme
// (https, nats, amqp) or its name (stdout, noop).
func sinkLabel(sink string) string {
	if scheme, _, ok := strings.Cut(sink, "://"); ok {
		return scheme
	}
	return sink
}
