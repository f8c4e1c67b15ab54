package relaymqtt

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/txoutbox/txoutbox/internal/brokersink"
	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// Defaults of [Config].
const (
	// TopicTemplateDefault puts each organisation's events under a topic
	// tree of its own: acme/billing/Invoice/Created. A client listens to one
	// organisation with acme/#, to one kind of event everywhere with
	// +/billing/Invoice/Created.
	TopicTemplateDefault = "{tenant}/{category}/{entity}/{action}"
	// NoTenantDefault is what {tenant} becomes for an event without a
	// tenant: _/billing/Invoice/Created.
	NoTenantDefault = "_"
	// TimeoutDefault bounds connecting and each wait for a PUBACK.
	TimeoutDefault = 10 * time.Second
	// QoS is the quality of service of every publish: at least once, each
	// message acknowledged by the broker (PUBACK).
	QoS = 1
	// maxTopicBytes is the longest topic MQTT can carry.
	maxTopicBytes = 65535
)

// Config configures a [Sink]. Broker is required.
type Config struct {
	// Broker is the broker's address as the paho client takes it:
	// tcp://host:1883, ssl://host:8883 (TLS), ws://host/mqtt or
	// wss://host/mqtt (MQTT over WebSocket).
	Broker string
	// TopicTemplate builds each event's MQTT topic from {tenant},
	// {category}, {entity}, {action} and {topic}. Defaults to
	// TopicTemplateDefault. The MQTT wildcards + and # are refused in the
	// template, and so is a leading $ (the brokers' own topics); an event
	// whose values hold a wildcard, a '/' (which would move it into
	// another organisation's tree) or a NUL fails permanently.
	TopicTemplate string
	// NoTenant is what {tenant} becomes for an event without a tenant.
	// Defaults to NoTenantDefault.
	NoTenant string
	// ClientID is the MQTT client id; two connections with the same id
	// throw each other off the broker. Defaults to "txoutbox-" and 12
	// random hex digits, new for each sink.
	ClientID string
	// Username and Password authenticate to the broker. They never appear
	// in errors.
	Username string
	Password string
	// TLSConfig is the TLS configuration of ssl:// and wss:// brokers.
	// Defaults to Go's defaults.
	TLSConfig *tls.Config
	// Timeout bounds connecting and each wait for a PUBACK; an event not
	// acknowledged in time fails retryably. Defaults to TimeoutDefault.
	Timeout time.Duration
}

// Sink publishes the relay's events to an MQTT broker, one message per
// event, QoS 1, not retained. It is a [relay.Sink], safe for concurrent use.
//
// The payload is the event as one CloudEvent in JSON
// (application/cloudevents+json): MQTT 3.1.1 has no message headers, so the
// whole envelope (id, tenant, job id, traceparent, ...) travels in it.
//
// Each key's order: a key's next event is published only once the broker
// acknowledged the previous one (PUBACK), so order per key holds whatever
// topics the key's events go to; events of different keys go out side by
// side. After a failure a key sends nothing more in the call (its later
// events are reported relay.ErrNotSent).
//
// The sink connects at its first Send, with a clean session and no automatic
// reconnection: a connection lost mid-batch fails the events waiting for
// their PUBACK at once (retryable), nothing is left queued in the client to
// go out later, and the next Send connects again.
//
// What an outcome means: a PUBACK is delivered; an illegal topic is
// [relay.Permanent]; anything else (no connection, refused credentials, a
// lost connection, no PUBACK within Timeout) is retryable. An event whose
// PUBACK was lost may have reached subscribers and is sent again: MQTT QoS 1
// is at least once too, and consumers dedupe by the CloudEvent id.
type Sink struct {
	tmpl    *brokersink.Template
	timeout time.Duration
	client  mqtt.Client

	mu sync.Mutex // serializes connecting
}

var _ relay.Sink = (*Sink)(nil)

// New returns a sink publishing to cfg.Broker. It connects at the first
// Send. Its errors wrap relay.ErrInvalidConfig and name the field.
func New(cfg *Config) (*Sink, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	c := *cfg
	invalid := func(field string, err error) error {
		return fmt.Errorf("%w: relaymqtt.Config.%s: %w", relay.ErrInvalidConfig, field, err)
	}
	u, err := url.Parse(c.Broker)
	switch {
	case c.Broker == "":
		return nil, invalid("Broker", errors.New("required"))
	case err != nil:
		return nil, invalid("Broker", errors.New("does not parse as a URL"))
	case u.Host == "" || !(u.Scheme == "tcp" || u.Scheme == "ssl" || u.Scheme == "ws" || u.Scheme == "wss"):
		return nil, invalid("Broker", fmt.Errorf("%s://%s is not a tcp://, ssl://, ws:// or wss:// address", u.Scheme, u.Host))
	case u.User != nil:
		return nil, invalid("Broker", errors.New("credentials go in Username and Password, not in the address"))
	case c.Timeout < 0:
		return nil, invalid("Timeout", fmt.Errorf("%s is negative", c.Timeout))
	}
	noTenant := cmp.Or(c.NoTenant, NoTenantDefault)
	if err := levelOK(noTenant); err != nil {
		return nil, invalid("NoTenant", fmt.Errorf("%q: %w", noTenant, err))
	}
	tmpl, err := brokersink.ParseTemplate(cmp.Or(c.TopicTemplate, TopicTemplateDefault), noTenant, literalOK)
	if err != nil {
		return nil, invalid("TopicTemplate", err)
	}
	if strings.HasPrefix(tmpl.String(), "$") {
		return nil, invalid("TopicTemplate", fmt.Errorf("%q: a topic starting with $ is the broker's own", tmpl))
	}
	if c.ClientID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		c.ClientID = "txoutbox-" + hex.EncodeToString(b[:])
	}
	timeout := cmp.Or(c.Timeout, TimeoutDefault)
	opts := mqtt.NewClientOptions().
		AddBroker(c.Broker).
		SetClientID(c.ClientID).
		SetUsername(c.Username).
		SetPassword(c.Password).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(timeout).
		SetWriteTimeout(timeout).
		SetOrderMatters(false)
	if c.TLSConfig != nil {
		opts.SetTLSConfig(c.TLSConfig)
	}
	return &Sink{tmpl: tmpl, timeout: timeout, client: mqtt.NewClient(opts)}, nil
}

// literalOK checks a literal part of a template.
func literalOK(s string) error {
	if strings.ContainsAny(s, "+#\x00") {
		return errors.New("MQTT wildcards (+, #) and NUL have no place in a topic one publishes to")
	}
	return nil
}

// levelOK checks a placeholder's value: it must stay within one topic level.
func levelOK(s string) error {
	if strings.ContainsAny(s, "/+#\x00") || !utf8.ValidString(s) {
		return errors.New("a topic level takes no '/', '+', '#' or NUL, and only UTF-8")
	}
	return nil
}

// Close disconnects from the broker, waiting up to 250 ms for work in
// flight. Call it once no Send is running.
func (s *Sink) Close() {
	if s.client.IsConnectionOpen() {
		s.client.Disconnect(250)
	}
}

// Send publishes events and waits for their PUBACKs.
func (s *Sink) Send(ctx context.Context, events []*outbox.Event) error {
	if len(events) == 0 {
		return nil
	}
	if err := relay.SendCut(ctx); err != nil {
		return fmt.Errorf("not sent: %w: %w", relay.ErrNotSent, err)
	}
	if err := s.Connect(ctx); err != nil {
		return err
	}
	return brokersink.Send(ctx, events, nil, s.wave)
}

// Connect connects to the broker unless the sink is connected. Send calls
// it; call it first to find out at start that the broker is there and
// takes the credentials.
func (s *Sink) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client.IsConnectionOpen() {
		return nil
	}
	if err := wait(ctx, s.client.Connect(), s.timeout); err != nil {
		return fmt.Errorf("connect to the MQTT broker: %w", err)
	}
	return nil
}

// wave publishes each event of a wave and waits for the PUBACKs.
func (s *Sink) wave(ctx context.Context, wave []*outbox.Event) []error {
	errs := make([]error, len(wave))
	tokens := make([]mqtt.Token, len(wave))
	for i, ev := range wave {
		topic, payload, err := s.message(ev)
		if err != nil {
			errs[i] = relay.Permanent(err)
			continue
		}
		tokens[i] = s.client.Publish(topic, QoS, false, payload)
	}
	for i, tok := range tokens {
		if tok != nil {
			if err := wait(ctx, tok, s.timeout); err != nil {
				errs[i] = fmt.Errorf("publish event %s: %w", wave[i].ID, err)
			}
		}
	}
	return errs
}

// wait waits for tok, at most timeout, or until ctx is done.
func wait(ctx context.Context, tok mqtt.Token, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.C:
		return fmt.Errorf("no answer from the broker within %s", timeout)
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// message returns the topic and payload of ev.
func (s *Sink) message(ev *outbox.Event) (string, []byte, error) {
	topic, err := s.tmpl.Expand(ev, levelOK)
	switch {
	case err != nil:
		return "", nil, fmt.Errorf("event %s: %w", ev.ID, err)
	case strings.HasPrefix(topic, "$"):
		return "", nil, fmt.Errorf("event %s: topic %q starts with $, the broker's own", ev.ID, topic)
	case len(topic) > maxTopicBytes:
		return "", nil, fmt.Errorf("event %s: topic of %d bytes, over MQTT's %d", ev.ID, len(topic), maxTopicBytes)
	}
	w, err := wire.FromOutbox(ev)
	if err != nil {
		return "", nil, err
	}
	payload, err := wire.AppendCloudEvent(nil, &w)
	if err != nil {
		return "", nil, err
	}
	return topic, payload, nil
}
