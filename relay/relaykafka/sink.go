package relaykafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/txoutbox/internal/brokersink"
	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// Format is the encoding of a record's value, for [Config.Format].
type Format string

// Record value formats.
const (
	// FormatCloudEvents writes each event as one CloudEvent in the JSON
	// event format (structured mode of the CloudEvents Kafka binding,
	// content-type application/cloudevents+json): the whole envelope
	// travels in the value.
	FormatCloudEvents = Format(wire.FormatCloudEvents)
	// FormatBriteEvents writes the body the bc-events API takes
	// ({category, entity, action, data, actor}); the rest of the envelope
	// travels in the headers only.
	FormatBriteEvents = Format(wire.FormatBriteEvents)
)

// Record headers. Every record carries the event id, its topic name and its
// job id; tenant, traceparent and dedupe key only when the event has one.
const (
	HeaderID          = "id"           // the event id: consumers dedupe by it
	HeaderTopic       = "topic"        // billing.InvoiceCreated, whatever Kafka topic the template chose
	HeaderJobID       = "job_id"       // correlation id of the request or job that published it
	HeaderTenant      = "tenant"       // the event's tenant
	HeaderTraceparent = "traceparent"  // W3C trace context of the publishing request
	HeaderDedupeKey   = "dedupe_key"   // the event's dedupe key
	HeaderContentType = "content-type" // application/cloudevents+json or application/json
)

// Defaults of [Config].
const (
	// TopicTemplateDefault sends each event to the Kafka topic named as its
	// topic: billing.InvoiceCreated.
	TopicTemplateDefault = brokersink.PlaceholderTopic
	// NoTenantDefault is what {tenant} becomes for an event without one.
	NoTenantDefault = "_"
	// TimeoutDefault bounds how long a record may take to be acknowledged,
	// retries included (franz-go's RecordDeliveryTimeout).
	TimeoutDefault = 30 * time.Second
	// MaxBatchBytesDefault is franz-go's default ProducerBatchMaxBytes,
	// under the 1 MiB a Kafka broker takes by default (message.max.bytes):
	// the largest record batch, and so the largest record, sent.
	MaxBatchBytesDefault = 1_000_012
	// ClientIDDefault is the client id the brokers see.
	ClientIDDefault = "txoutbox-relay"
)

// Config configures a [Sink]. Brokers is required.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// TopicTemplate builds each event's Kafka topic from {topic},
	// {category}, {entity}, {action} and {tenant}, e.g.
	// "events.{category}" or "{tenant}.{topic}". Kafka topic names take
	// letters, digits, '.', '_' and '-', at most 249 of them: the template
	// is checked at New, and an event whose values would make an illegal
	// name fails permanently. Defaults to TopicTemplateDefault.
	TopicTemplate string
	// NoTenant is what {tenant} becomes for an event without a tenant.
	// Defaults to NoTenantDefault.
	NoTenant string
	// Format is the encoding of record values. Defaults to
	// FormatCloudEvents.
	Format Format
	// Timeout bounds the delivery of each record, retries included; a
	// record that runs out fails retryably. Defaults to TimeoutDefault.
	Timeout time.Duration
	// MaxBatchBytes is the largest record batch sent; it must not exceed
	// the brokers' message.max.bytes. A record that cannot fit in a batch
	// alone fails permanently, without being sent. Defaults to
	// MaxBatchBytesDefault.
	MaxBatchBytes int32
	// ClientID is the client id the brokers see. Defaults to
	// ClientIDDefault.
	ClientID string
	// Opts are more franz-go options, applied after the sink's own: TLS
	// (kgo.DialTLSConfig), SASL (kgo.SASL), a logger (kgo.WithLogger). They
	// must keep acks=all and the idempotent producer, which New checks.
	Opts []kgo.Opt
}

var kafkaTopicRE = regexp.MustCompile(`^[a-zA-Z0-9._-]*$`)

func kafkaChars(s string) error {
	if !kafkaTopicRE.MatchString(s) {
		return errors.New("a Kafka topic name takes only letters, digits, '.', '_' and '-'")
	}
	return nil
}

// ErrRecordTooLarge is wrapped, permanently, by the error of an event whose
// record cannot fit in a batch of Config.MaxBatchBytes.
var ErrRecordTooLarge = errors.New("record too large")

// Sink delivers the relay's events to Kafka, one record per event. It is a
// [relay.Sink], safe for concurrent use.
//
// Each record's key is the event's ordering key, so that the default
// partitioner (murmur2, as the Java client's) puts a key's events in one
// partition, where Kafka keeps their order; headers carry the envelope
// (HeaderID, ...), the value the event (Config.Format). Records go out with
// acks=all through franz-go's idempotent producer: a retried produce
// request is not written twice, and a partition's records are written in
// the order produced, with no gap: when one fails, the client fails the
// partition's records after it too.
//
// A batch is produced in waves: a wave holds, for each key, its next events
// up to the first that goes to another Kafka topic (another partition), so
// that a key whose events all go to one topic goes out in one wave. After
// a failure a key sends nothing more in the call; its later events are
// reported relay.ErrNotSent.
//
// What an outcome means:
//   - acknowledged: delivered;
//   - a record too large for a batch, an illegal topic name, a topic that
//     is not valid (INVALID_TOPIC_EXCEPTION), a record the broker refused
//     as too large or invalid: [relay.Permanent]. A record the broker
//     refused in a batch with others is first sent again alone, so that one
//     bad event does not take its neighbours down;
//   - anything else (timeouts, NOT_LEADER_OR_FOLLOWER, an unknown topic,
//     missing authorization, brokers down): retryable.
type Sink struct {
	cl       *kgo.Client
	tmpl     *brokersink.Template
	format   wire.Format
	maxBatch int32
}

var _ relay.Sink = (*Sink)(nil)

// New returns a sink producing to cfg.Brokers. It connects lazily: the
// first Send finds the cluster. Close releases the client. Its errors wrap
// relay.ErrInvalidConfig and name the field.
func New(cfg *Config) (*Sink, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	c := *cfg
	c.TopicTemplate = cmp.Or(c.TopicTemplate, TopicTemplateDefault)
	c.Format = cmp.Or(Format(strings.ToLower(strings.TrimSpace(string(c.Format)))), FormatCloudEvents)
	c.Timeout = cmp.Or(c.Timeout, TimeoutDefault)
	c.MaxBatchBytes = cmp.Or(c.MaxBatchBytes, MaxBatchBytesDefault)
	invalid := func(field string, err error) error {
		return fmt.Errorf("%w: relaykafka.Config.%s: %w", relay.ErrInvalidConfig, field, err)
	}
	switch {
	case len(c.Brokers) == 0:
		return nil, invalid("Brokers", errors.New("required"))
	case c.Format != FormatCloudEvents && c.Format != FormatBriteEvents:
		return nil, invalid("Format", fmt.Errorf("%q is not %q or %q", c.Format, FormatCloudEvents, FormatBriteEvents))
	case c.Timeout < 0:
		return nil, invalid("Timeout", fmt.Errorf("%s is negative", c.Timeout))
	case c.MaxBatchBytes < 1024:
		return nil, invalid("MaxBatchBytes", fmt.Errorf("%d is below 1024", c.MaxBatchBytes))
	}
	for _, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			return nil, invalid("Brokers", errors.New("an empty address"))
		}
	}
	noTenant := cmp.Or(c.NoTenant, NoTenantDefault)
	if err := kafkaChars(noTenant); err != nil {
		return nil, invalid("NoTenant", fmt.Errorf("%q: %w", noTenant, err))
	}
	tmpl, err := brokersink.ParseTemplate(c.TopicTemplate, noTenant, kafkaChars)
	if err != nil {
		return nil, invalid("TopicTemplate", err)
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(cmp.Or(c.ClientID, ClientIDDefault)),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(c.Timeout),
		kgo.ProducerBatchMaxBytes(c.MaxBatchBytes),
		// Send waits for each wave's acknowledgements: lingering for more
		// records would only delay them. Records still batch while a
		// request is in flight.
		kgo.ProducerLinger(0),
	}, c.Opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, invalid("Opts", err)
	}
	switch {
	case cl.OptValue(kgo.DisableIdempotentWrite) == true:
		cl.Close()
		return nil, invalid("Opts", errors.New("the idempotent producer must stay on: without it a retried request can write a key's events twice or out of order"))
	case cl.OptValue(kgo.RequiredAcks) != kgo.AllISRAcks():
		cl.Close()
		return nil, invalid("Opts", errors.New("acks must stay all (kgo.AllISRAcks): an event is recorded delivered only once every in-sync replica has it"))
	}
	return &Sink{cl: cl, tmpl: tmpl, format: wire.Format(c.Format), maxBatch: c.MaxBatchBytes}, nil
}

// Client returns the sink's franz-go client, e.g. to ping the cluster.
func (s *Sink) Client() *kgo.Client { return s.cl }

// Close closes the client. Records still buffered fail; call it once no
// Send is running.
func (s *Sink) Close() { s.cl.Close() }

// Send produces events and waits for the brokers' acknowledgements.
func (s *Sink) Send(ctx context.Context, events []*outbox.Event) error {
	topics := make(map[*outbox.Event]string, len(events))
	for _, ev := range events {
		topics[ev], _ = s.tmpl.Expand(ev, kafkaChars) // errors come back from record
	}
	sameTopic := func(prev, next *outbox.Event) bool { return topics[prev] == topics[next] }
	return brokersink.Send(ctx, events, sameTopic, s.wave)
}

// wave produces the records of a wave, in order, and waits for them all.
func (s *Sink) wave(ctx context.Context, wave []*outbox.Event) []error {
	errs := make([]error, len(wave))
	recs := make([]*kgo.Record, len(wave))
	failedKey := make(map[string]bool)
	var wg sync.WaitGroup
	for i, ev := range wave {
		if failedKey[ev.Key] {
			errs[i] = fmt.Errorf("held back behind the key's failed event: %w", relay.ErrNotSent)
			continue
		}
		rec, err := s.record(ev)
		if err != nil {
			errs[i] = relay.Permanent(err)
			failedKey[ev.Key] = true
			continue
		}
		recs[i] = rec
		wg.Add(1)
		s.cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			errs[i] = err
			wg.Done()
		})
	}
	wg.Wait()

	// A broker refuses a record batch whole: a record too large or invalid
	// fails the others of its batch with it. Send those that shared their
	// partition alone, in order, each key's until one fails again.
	perPartition := make(map[partition]int)
	for _, rec := range recs {
		if rec != nil {
			perPartition[partition{rec.Topic, rec.Partition}]++
		}
	}
	retried := make(map[string]bool)
	for i, rec := range recs {
		if rec == nil || !recordLevel(errs[i]) || perPartition[partition{rec.Topic, rec.Partition}] < 2 || retried[wave[i].Key] {
			continue
		}
		if err := s.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			errs[i], retried[wave[i].Key] = err, true
			continue
		}
		errs[i] = nil
	}
	for i, err := range errs {
		if err != nil && recs[i] != nil {
			errs[i] = classify(wave[i], recs[i].Topic, err)
		}
	}
	return errs
}

type partition struct {
	topic string
	n     int32
}

// recordLevel reports whether err is a broker's refusal of a record batch
// for what a record in it holds.
func recordLevel(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.InvalidRecord)
}

// classify maps a produce error to the relay's vocabulary.
func classify(ev *outbox.Event, topic string, err error) error {
	err = fmt.Errorf("produce event %s to %s: %w", ev.ID, topic, err)
	if recordLevel(err) || errors.Is(err, kerr.InvalidTopicException) {
		return relay.Permanent(err)
	}
	return err
}

// record returns the Kafka record of ev.
func (s *Sink) record(ev *outbox.Event) (*kgo.Record, error) {
	topic, err := s.tmpl.Expand(ev, kafkaChars)
	switch {
	case err != nil:
		return nil, fmt.Errorf("event %s: %w", ev.ID, err)
	case topic == "" || topic == "." || topic == ".." || len(topic) > 249:
		return nil, fmt.Errorf("event %s: topic template %q makes %q, not a legal Kafka topic name", ev.ID, s.tmpl, topic)
	}
	w, err := wire.FromOutbox(ev)
	if err != nil {
		return nil, err
	}
	var value []byte
	contentType := "application/json"
	if s.format == wire.FormatBriteEvents {
		value, err = wire.EncodeBrite(&w)
	} else {
		value, err = wire.AppendCloudEvent(nil, &w)
		contentType = wire.ContentTypeCloudEvent
	}
	if err != nil {
		return nil, err
	}
	rec := &kgo.Record{Topic: topic, Key: []byte(ev.Key), Value: value, Headers: make([]kgo.RecordHeader, 0, 6)}
	for _, h := range [...]struct{ k, v string }{
		{HeaderID, w.ID}, {HeaderTopic, w.Topic}, {HeaderJobID, w.JobID}, {HeaderContentType, contentType},
		{HeaderTenant, w.Tenant}, {HeaderTraceparent, w.Traceparent}, {HeaderDedupeKey, w.DedupeKey},
	} {
		if h.v != "" || h.k == HeaderJobID {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.k, Value: []byte(h.v)})
		}
	}
	if n := recordBytes(rec); n > int(s.maxBatch) {
		return nil, fmt.Errorf("event %s: %w: about %d bytes as a record batch, over MaxBatchBytes %d", ev.ID, ErrRecordTooLarge, n, s.maxBatch)
	}
	return rec, nil
}

// recordBytes bounds from above the size of rec alone in a record batch:
// the batch header, the record's fixed fields as the longest varints, its
// key, value and headers.
func recordBytes(rec *kgo.Record) int {
	const batchHeader, recordFixed, perHeader = 61, 1 + 5 + 10 + 5 + 5 + 5 + 5, 10
	n := batchHeader + recordFixed + len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		n += perHeader + len(h.Key) + len(h.Value)
	}
	return n
}
