package inboxwatermill_test

import (
	"context"
	"fmt"
	"log"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/inbox"
	"github.com/txoutbox/txoutbox/inbox/inboxwatermill"
	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// A router handler credits a balance once per payment event, however many
// times the event arrives: the middleware runs it in a transaction that
// records the event's id, and acknowledges a copy without running it.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.ExampleDB()) // the consumer's own database
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := inbox.Migrate(ctx, pool, nil); err != nil {
		log.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE balances (customer text PRIMARY KEY, cents bigint NOT NULL);
		INSERT INTO balances VALUES ('cus-7', 0)`); err != nil {
		log.Fatal(err)
	}
	ib, err := inbox.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	once, err := inboxwatermill.NewMiddleware(pool, ib, nil) // consumer name: the handler's
	if err != nil {
		log.Fatal(err)
	}

	// A pub/sub whose Publish returns once the message is handled; NATS,
	// AMQP and the other watermill subscribers work the same way.
	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		log.Fatal(err)
	}
	router.AddMiddleware(once)
	router.AddConsumerHandler("balances", "billing.PaymentReceived", pubsub, func(msg *message.Message) error {
		tx, err := inboxwatermill.Tx(msg) // committed by the middleware when this returns nil
		if err != nil {
			return err
		}
		fmt.Println("crediting", msg.UUID)
		_, err = tx.Exec(msg.Context(), `UPDATE balances SET cents = cents + 1250 WHERE customer = 'cus-7'`)
		return err
	})
	go func() { _ = router.Run(ctx) }()
	<-router.Running()

	payment := message.NewMessage("0190a0a0-0000-7000-8000-000000000001", []byte(`{"amount_cents":1250}`))
	for range 2 { // the same event, delivered twice
		if err := pubsub.Publish("billing.PaymentReceived", payment.Copy()); err != nil {
			log.Fatal(err)
		}
	}
	_ = router.Close()
	_ = pubsub.Close()

	var cents int
	if err := pool.QueryRow(ctx, `SELECT cents FROM balances`).Scan(&cents); err != nil {
		log.Fatal(err)
	}
	fmt.Println("balance", cents)
	// Output:
	// crediting 0190a0a0-0000-7000-8000-000000000001
	// balance 1250
}
