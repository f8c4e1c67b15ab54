package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relaykafka"
	"github.com/txoutbox/txoutbox/relay/relaymqtt"
)

// sinkConnectTimeout bounds the relay's first contact with a Kafka cluster
// or an MQTT broker at start.
const sinkConnectTimeout = 10 * time.Second

// sinkCredentials returns the user and password of a broker sink: the
// URL's user info, else --sink-username and --sink-password.
func (f *relayFlags) sinkCredentials(u *url.URL) (user, pass string) {
	if u.User != nil {
		pass, _ = u.User.Password()
		return u.User.Username(), pass
	}
	return f.sinkUser, f.sinkPass
}

// parseBrokerURL parses a kafka:// or mqtt:// --sink: hosts (comma
// separated, each given defPort when it has none), the path as the topic
// template, and the URL without its hosts so that url.Parse takes several.
func parseBrokerURL(raw string, defPort string) (hosts []string, u *url.URL, err error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	auth, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		auth, path = rest[:i], rest[i:]
	}
	userinfo, hostlist := "", auth
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		userinfo, hostlist = auth[:i+1], auth[i+1:]
	}
	u, err = url.Parse(scheme + "://" + userinfo + "sink" + path)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL, password included
		}
		return nil, nil, fmt.Errorf("--sink: %s URL does not parse: %w", scheme, err)
	}
	for h := range strings.SplitSeq(hostlist, ",") {
		if h == "" {
			return nil, nil, fmt.Errorf("--sink: %s://%s: an empty host", scheme, hostlist)
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(h, defPort)
		}
		hosts = append(hosts, h)
	}
	return hosts, u, nil
}

// newKafkaSink returns the sink of a kafka:// or kafkas:// (TLS) --sink:
// kafka://host1:9092,host2:9092/topic-template. User info authenticates
// with SASL: PLAIN, or the mechanism in ?sasl= (scram-sha-256,
// scram-sha-512). It pings the cluster before it returns.
func (f *relayFlags) newKafkaSink(ctx context.Context) (relay.Sink, func(), error) {
	hosts, u, err := parseBrokerURL(f.sink, "9092")
	if err != nil {
		return nil, nil, err
	}
	var opts []kgo.Opt
	if u.Scheme == "kafkas" {
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	if user, pass := f.sinkCredentials(u); user != "" {
		var m sasl.Mechanism
		switch mech := strings.ToLower(u.Query().Get("sasl")); mech {
		case "", "plain":
			m = plain.Auth{User: user, Pass: pass}.AsMechanism()
		case "scram-sha-256":
			m = scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
		case "scram-sha-512":
			m = scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
		default:
			return nil, nil, fmt.Errorf("--sink: sasl=%s is not plain, scram-sha-256 or scram-sha-512", mech)
		}
		opts = append(opts, kgo.SASL(m))
	}
	s, err := relaykafka.New(&relaykafka.Config{
		Brokers:       hosts,
		TopicTemplate: strings.TrimPrefix(u.Path, "/"),
		Format:        relaykafka.Format(f.format),
		Opts:          opts,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("--sink: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, sinkConnectTimeout)
	defer cancel()
	if err := s.Client().Ping(ctx); err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("--sink: connect to Kafka at %s: %w", strings.Join(hosts, ","), err)
	}
	return s, s.Close, nil
}

// newMQTTSink returns the sink of an mqtt:// or mqtts:// (TLS) --sink:
// mqtt://host:1883/topic-template. It connects before it returns.
func (f *relayFlags) newMQTTSink(ctx context.Context) (relay.Sink, func(), error) {
	if strings.Contains(f.sink, "#") {
		return nil, nil, errors.New("--sink: an MQTT topic template takes no wildcard (+ or #): the relay publishes to one topic per event")
	}
	defPort, broker := "1883", "tcp://"
	if strings.HasPrefix(f.sink, "mqtts://") {
		defPort, broker = "8883", "ssl://"
	}
	hosts, u, err := parseBrokerURL(f.sink, defPort)
	if err != nil {
		return nil, nil, err
	}
	if len(hosts) != 1 {
		return nil, nil, fmt.Errorf("--sink: an mqtt:// URL names one broker, not %d", len(hosts))
	}
	user, pass := f.sinkCredentials(u)
	s, err := relaymqtt.New(&relaymqtt.Config{
		Broker:        broker + hosts[0],
		TopicTemplate: strings.TrimPrefix(u.Path, "/"),
		Username:      user,
		Password:      pass,
		TLSConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("--sink: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, sinkConnectTimeout)
	defer cancel()
	if err := s.Connect(ctx); err != nil {
		return nil, nil, fmt.Errorf("--sink: %s: %w", broker+hosts[0], err)
	}
	return s, s.Close, nil
}
