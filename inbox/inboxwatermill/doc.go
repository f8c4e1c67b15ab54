// Package inboxwatermill runs watermill handlers once per event: a router
// middleware built on package inbox, for consumers of what the relay
// publishes to NATS, AMQP or any watermill broker.
//
// For each message the middleware begins a transaction on the consumer's
// pool, records the message's event id in it (inbox.Inbox.Once), runs the
// handler with that transaction, and commits when the handler returns nil.
// The handler writes its effects through Tx and never commits itself:
//
//	once, err := inboxwatermill.NewMiddleware(pool, ib, nil)
//	router.AddMiddleware(once)
//	router.AddConsumerHandler("balances", "billing.PaymentReceived", sub, func(msg *message.Message) error {
//		tx, err := inboxwatermill.Tx(msg)
//		if err != nil {
//			return err
//		}
//		return credit(msg.Context(), tx, msg.Payload)
//	})
//
// A copy of a message already processed is acknowledged without running
// the handler. A handler error rolls back the effects and the id together,
// and goes on to the router, which nacks the message: its redelivery runs
// the handler again. Add a retry middleware before this one, so that it
// wraps it and every attempt gets a fresh transaction; added after, it
// would run the handler again in the failed attempt's transaction.
//
// The consumer name defaults to the router handler's name, so one
// middleware on the whole router keeps each handler's events apart;
// Config.Consumer fixes it instead, and lets several handlers (or
// processes) share one name and so process each event once between them.
// The event id defaults to the message's UUID, which the relay's watermill
// sink sets to the outbox event's id.
package inboxwatermill
