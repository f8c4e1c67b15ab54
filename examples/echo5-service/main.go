// Command echo5-service is the example invoices API on Echo v5. It
// publishes billing.InvoiceCreated, InvoicePaid and InvoiceCancelled
// through the outbox, in the transaction of each change, with the session
// package outboxecho5 opens for each request. It is examples/echo-service
// (Echo v4) moved to v5: the same routes, answers and events.
//
//	DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres go run ./examples/echo5-service
package main

import (
	"context"
	"io"
	"net/http"

	"github.com/txoutbox/txoutbox/examples/internal/exampleenv"
)

func main() {
	exampleenv.Main("echo5-service", run)
}

// run serves the API on ADDR (default 127.0.0.1:8080) until ctx is done.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	return exampleenv.RunServer(ctx, getenv, stdout, "127.0.0.1:8080", func(env *exampleenv.Env) http.Handler {
		return newAPI(env.Pool, env.Client)
	})
}
