package relaykafka_test

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay/relaykafka"
)

// Example sends an event to a Kafka cluster (here one in-process, on
// 127.0.0.1) and reads its record back.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "events.billing"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()

	sink, err := relaykafka.New(&relaykafka.Config{Brokers: cluster.ListenAddrs(), TopicTemplate: "events.{category}"})
	if err != nil {
		panic(err)
	}
	defer sink.Close()
	ctx := context.Background()
	err = sink.Send(ctx, []*outbox.Event{{
		ID:    uuid.MustParse("0190b6d5-1c2e-7000-8000-000000000001"),
		Topic: "billing.InvoiceCreated", Category: "billing", Entity: "Invoice", Action: "Created",
		Data: []byte(`{"id":"inv-1"}`), ActorID: "svc-billing", ActorType: "service", JobID: "job-1",
		Key: "inv-1", Tenant: "acme", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}})
	fmt.Println("send:", err)

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("events.billing"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	fs := cl.PollFetches(ctx)
	fs.EachRecord(func(r *kgo.Record) {
		fmt.Printf("%s key=%s\n", r.Topic, r.Key)
		for _, h := range r.Headers {
			fmt.Printf("  %s: %s\n", h.Key, h.Value)
		}
		fmt.Printf("  value: %s\n", r.Value)
	})
	// Output:
	// send: <nil>
	// events.billing key=inv-1
	//   id: 0190b6d5-1c2e-7000-8000-000000000001
	//   topic: billing.InvoiceCreated
	//   job_id: job-1
	//   content-type: application/cloudevents+json
	//   tenant: acme
	//   value: {"specversion":"1.0","id":"0190b6d5-1c2e-7000-8000-000000000001","source":"txoutbox","type":"billing.InvoiceCreated","subject":"inv-1","time":"2026-01-02T03:04:05Z","datacontenttype":"application/json","actorid":"svc-billing","actortype":"service","jobid":"job-1","partitionkey":"inv-1","tenant":"acme","data":{"id":"inv-1"}}
}
