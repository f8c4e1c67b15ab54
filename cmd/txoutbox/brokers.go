package main

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/pkg/amqp"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/streadway/amqp"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay/relaywatermill"
)

// Defaults of the broker sinks' flags.
const (
	topicTemplateDefault = "{topic}"
	natsStreamDefault    = "TXOUTBOX"
	amqpExchangeDefault  = "txoutbox"
)

// brokerFlags are the flags of the NATS and AMQP sinks.
type brokerFlags struct {
	topicTemplate string
	natsStream    string
	natsSubjects  string
	amqpExchange  string
}

func (f *brokerFlags) register(fs interface {
	StringVar(p *string, name, value, usage string)
}) {
	fs.StringVar(&f.topicTemplate, "topic-template", topicTemplateDefault,
		"`template` of a broker sink's NATS subject or AMQP routing key; {topic}, {category}, {entity} and {action} are replaced from the event")
	fs.StringVar(&f.natsStream, "nats-stream", natsStreamDefault, "JetStream `stream` a nats:// sink publishes to; created if missing")
	fs.StringVar(&f.natsSubjects, "nats-subjects", "", "comma-separated `subjects` of the stream the relay creates, which an existing --nats-stream must take (default: --topic-template with each placeholder a wildcard, e.g. *.*)")
	fs.StringVar(&f.amqpExchange, "amqp-exchange", amqpExchangeDefault, "durable topic `exchange` an amqp:// sink publishes to; declared if missing")
}

var placeholder = regexp.MustCompile(`\{[^{}]*\}`)

// topicFunc returns the broker sink's TopicFunc for a --topic-template: the
// subject or routing key of each event.
func topicFunc(tmpl string) (func(*outbox.Event) string, error) {
	if tmpl == "" {
		return nil, errors.New("--topic-template is empty")
	}
	for _, p := range placeholder.FindAllString(tmpl, -1) {
		switch p {
		case "{topic}", "{category}", "{entity}", "{action}":
		default:
			return nil, fmt.Errorf("--topic-template: unknown placeholder %s (use {topic}, {category}, {entity} or {action})", p)
		}
	}
	if tmpl == topicTemplateDefault {
		return func(ev *outbox.Event) string { return ev.Topic }, nil
	}
	return func(ev *outbox.Event) string {
		return strings.NewReplacer(
			"{topic}", ev.Topic, "{category}", ev.Category, "{entity}", ev.Entity, "{action}", ev.Action,
		).Replace(tmpl)
	}, nil
}

// streamSubjects are the subjects of a stream that takes every subject
// tmpl can produce: a topic is two tokens (category.EntityAction), the
// other placeholders one.
func streamSubjects(tmpl string) string {
	return strings.NewReplacer("{topic}", "*.*", "{category}", "*", "{entity}", "*", "{action}", "*").Replace(tmpl)
}

// subjectWithin reports whether every subject that pattern sub matches is
// one that pattern of matches (NATS wildcards: * one token, > the rest).
func subjectWithin(sub, of string) bool {
	s, o := strings.Split(sub, "."), strings.Split(of, ".")
	for i, ot := range o {
		if ot == ">" {
			return i < len(s)
		}
		if i == len(s) || s[i] == ">" || (ot != "*" && s[i] != ot) {
			return false
		}
	}
	return len(s) == len(o)
}

// newNATSSink returns a JetStream publisher that waits for the stream's ack
// of every event and sets Nats-Msg-Id to the event id, so JetStream drops
// the copies a retried batch sends within its duplicate window. The stream
// is created with the subjects of --topic-template when it does not exist;
// one that exists must take them, or every event would find no stream.
func (f *relayFlags) newNATSSink(url string, logger *slog.Logger) (message.Publisher, error) {
	nc, err := nats.Connect(url, nats.Name("txoutbox relay"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("--sink: connect to NATS at %s: %w", redactURL(url), err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return nil, fmt.Errorf("--sink: JetStream: %w", err)
	}
	subjects, from := f.broker.natsSubjects, "given in --nats-subjects"
	if subjects == "" {
		subjects = streamSubjects(f.broker.topicTemplate)
		from = fmt.Sprintf("that --topic-template %s makes", f.broker.topicTemplate)
	}
	info, err := js.StreamInfo(f.broker.natsStream)
	switch {
	case errors.Is(err, nats.ErrStreamNotFound):
		_, err = js.AddStream(&nats.StreamConfig{
			Name:     f.broker.natsStream,
			Subjects: strings.Split(subjects, ","),
			Storage:  nats.FileStorage,
		})
		if err != nil {
			return nil, fmt.Errorf("--nats-stream: create stream %s on %s: %w", f.broker.natsStream, subjects, err)
		}
		logger.Info("created JetStream stream", "stream", f.broker.natsStream, "subjects", subjects)
	case err != nil:
		return nil, fmt.Errorf("--nats-stream: %w", err)
	default:
		for _, want := range strings.Split(subjects, ",") {
			if !slices.ContainsFunc(info.Config.Subjects, func(of string) bool { return subjectWithin(want, of) }) {
				return nil, fmt.Errorf("--nats-stream: stream %s takes %s, not %s %s: name another stream, or add the subjects to this one",
					f.broker.natsStream, strings.Join(info.Config.Subjects, ","), want, from)
			}
		}
	}
	pub, err := wmnats.NewPublisher(wmnats.PublisherConfig{
		URL:         url,
		NatsOptions: []nats.Option{nats.Name("txoutbox relay")},
		Marshaler:   &wmnats.NATSMarshaler{},
		JetStream:   wmnats.JetStreamConfig{TrackMsgId: true},
	}, watermill.NewSlogLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("--sink: NATS publisher: %w", err)
	}
	return pub, nil
}

// newAMQPSink returns a publisher to a durable topic exchange, the routing
// key of each event from --topic-template, persistent messages. The
// watermill-amqp v1 publisher has no publisher confirms; it publishes each
// batch in an AMQP transaction, whose commit is the broker's
// acknowledgement.
func (f *relayFlags) newAMQPSink(url string, logger *slog.Logger) (message.Publisher, error) {
	exchange := f.broker.amqpExchange
	cfg := wmamqp.Config{
		Connection: wmamqp.ConnectionConfig{AmqpURI: url},
		Marshaler:  amqpMarshaler{},
		Exchange: wmamqp.ExchangeConfig{
			GenerateName: func(string) string { return exchange },
			Type:         "topic",
			Durable:      true,
		},
		Queue:     wmamqp.QueueConfig{GenerateName: wmamqp.GenerateQueueNameTopicName, Durable: true},
		QueueBind: wmamqp.QueueBindConfig{GenerateRoutingKey: func(topic string) string { return topic }},
		Publish: wmamqp.PublishConfig{
			GenerateRoutingKey: func(topic string) string { return topic },
			Transactional:      true,
		},
		TopologyBuilder: &wmamqp.DefaultTopologyBuilder{},
	}
	pub, err := wmamqp.NewPublisher(cfg, watermill.NewSlogLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("--sink: AMQP publisher: %w", err)
	}
	return pub, nil
}

// amqpMarshaler is watermill-amqp's marshaler, which carries the metadata
// as headers, plus the AMQP properties consumers look at first: message-id
// (the event id, for deduplication) and type (the topic).
type amqpMarshaler struct{ wmamqp.DefaultMarshaler }

func (m amqpMarshaler) Marshal(msg *message.Message) (amqp.Publishing, error) {
	p, err := m.DefaultMarshaler.Marshal(msg)
	p.MessageId = msg.UUID
	p.Type = msg.Metadata.Get(relaywatermill.MetaTopic)
	p.ContentType = "application/json"
	return p, err
}
