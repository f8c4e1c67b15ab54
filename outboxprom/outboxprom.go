package outboxprom

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// NamespaceDefault prefixes every metric name.
const NamespaceDefault = "txoutbox"

// Default histogram buckets, in seconds and rows.
var (
	// FlushBucketsDefault spans a flush's usual 0.1–50 ms.
	FlushBucketsDefault = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	// LatencyBucketsDefault spans a delivery from milliseconds (a woken
	// relay) to minutes (a sink outage being retried).
	LatencyBucketsDefault = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}
	// BatchBucketsDefault spans batch sizes up to relay.BatchSizeDefault.
	BatchBucketsDefault = []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500}
)

// Config configures Metrics. A nil *Config is the zero Config.
type Config struct {
	// Namespace prefixes the metric names. Defaults to NamespaceDefault.
	Namespace string
	// ConstLabels are added to every metric, e.g. {"service": "billing"}.
	ConstLabels prometheus.Labels
	// FlushBuckets, LatencyBuckets and BatchBuckets are the histograms'
	// buckets. Default to FlushBucketsDefault, LatencyBucketsDefault and
	// BatchBucketsDefault.
	FlushBuckets   []float64
	LatencyBuckets []float64
	BatchBuckets   []float64
}

// Metrics holds the collectors. Its methods are the hooks the outbox
// client, the middleware and the relay take; all are safe for concurrent
// use.
type Metrics struct {
	reg       prometheus.Registerer
	cfg       Config
	published *prometheus.CounterVec
	unflushed *prometheus.CounterVec
	flushDur  prometheus.Histogram
	flushErrs prometheus.Counter
	delivered *prometheus.CounterVec
	failed    *prometheus.CounterVec
	dead      *prometheus.CounterVec
	batchSize prometheus.Histogram
	latency   *prometheus.HistogramVec
}

// New creates the metrics and registers them on reg. It fails if reg
// already has metrics of the same names (a second New on one registry).
func New(reg prometheus.Registerer, cfg *Config) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("outboxprom: registerer is nil")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c.Namespace = cmp.Or(c.Namespace, NamespaceDefault)
	c.FlushBuckets = orBuckets(c.FlushBuckets, FlushBucketsDefault)
	c.LatencyBuckets = orBuckets(c.LatencyBuckets, LatencyBucketsDefault)
	c.BatchBuckets = orBuckets(c.BatchBuckets, BatchBucketsDefault)
	counter := func(sub, name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: sub, Name: name, Help: help, ConstLabels: c.ConstLabels,
		}, labels)
	}
	m := &Metrics{
		reg:       reg,
		cfg:       c,
		published: counter("", "events_published_total", "Events written to the outbox table, by topic.", "topic"),
		unflushed: counter("", "events_unflushed_total", "Events a request published and never flushed, by topic.", "topic"),
		flushDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: c.Namespace, Name: "flush_duration_seconds", ConstLabels: c.ConstLabels,
			Help: "Time to write one flush of events into the outbox table.", Buckets: c.FlushBuckets,
		}),
		flushErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: c.Namespace, Name: "flush_errors_total", ConstLabels: c.ConstLabels,
			Help: "Writes into the outbox table that failed.",
		}),
		delivered: counter("relay", "events_delivered_total", "Events the sink accepted, by topic and sink.", "topic", "sink"),
		failed:    counter("relay", "events_failed_total", "Failed delivery attempts that will be retried, by topic and sink.", "topic", "sink"),
		dead:      counter("relay", "events_dead_total", "Events dead-lettered, by topic and sink.", "topic", "sink"),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: c.Namespace, Subsystem: "relay", Name: "batch_size", ConstLabels: c.ConstLabels,
			Help: "Rows read per relay batch.", Buckets: c.BatchBuckets,
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: c.Namespace, Subsystem: "relay", Name: "delivery_latency_seconds", ConstLabels: c.ConstLabels,
			Help: "Time from an event's publish to the sink's acknowledgement.", Buckets: c.LatencyBuckets,
		}, []string{"sink"}),
	}
	for _, col := range []prometheus.Collector{m.published, m.unflushed, m.flushDur, m.flushErrs, m.delivered, m.failed, m.dead, m.batchSize, m.latency} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("outboxprom: register: %w", err)
		}
	}
	return m, nil
}

func orBuckets(b, def []float64) []float64 {
	if len(b) == 0 {
		return def
	}
	return b
}

// FlushFunc counts a write into the outbox table; pass it as
// outbox.Config.FlushFunc.
func (m *Metrics) FlushFunc(s outbox.FlushStats) {
	m.flushDur.Observe(s.Elapsed.Seconds())
	if s.Err != nil {
		m.flushErrs.Inc()
		return
	}
	var topic string
	var c prometheus.Counter
	for _, e := range s.Events {
		if c == nil || e.Topic != topic {
			topic, c = e.Topic, m.published.WithLabelValues(e.Topic)
		}
		c.Inc()
	}
}

// UnflushedFunc counts events a request published and never flushed; pass
// it as the middleware's UnflushedFunc (outboxecho.Config,
// outboxhttp.Config).
func (m *Metrics) UnflushedFunc(_ context.Context, topic string, n int) {
	m.unflushed.WithLabelValues(topic).Add(float64(n))
}

// RelayHooks returns the hooks for relay.Config.Hooks, counting under the
// sink label sink (e.g. "events-api", "nats").
func (m *Metrics) RelayHooks(sink string) relay.Hooks {
	latency := m.latency.WithLabelValues(sink)
	return relay.Hooks{
		BatchFunc: func(s relay.BatchStats) {
			m.batchSize.Observe(float64(s.Read))
			now := time.Now()
			var topic string
			var delivered, failed, dead prometheus.Counter
			for _, e := range s.Events {
				if delivered == nil || e.Topic != topic {
					topic = e.Topic
					delivered = m.delivered.WithLabelValues(topic, sink)
					failed = m.failed.WithLabelValues(topic, sink)
					dead = m.dead.WithLabelValues(topic, sink)
				}
				switch {
				case e.Delivered:
					delivered.Inc()
					if !e.PublishedAt.IsZero() {
						latency.Observe(now.Sub(e.PublishedAt).Seconds())
					}
				case e.Dead:
					dead.Inc()
				default:
					failed.Inc()
				}
			}
		},
	}
}
