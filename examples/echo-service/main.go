// Command echo-service is the example invoices API in Echo. It publishes
// billing.InvoiceCreated, InvoicePaid and InvoiceCancelled through the
// outbox, in the transaction of each change. The handlers are in
// internal/invoices/api, which `txoutbox demo` runs too.
//
//	DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres go run ./examples/echo-service
package main

import (
	"context"
	"io"
	"net/http"

	"github.com/txoutbox/txoutbox/examples/internal/exampleenv"
	"github.com/txoutbox/txoutbox/internal/invoices/api"
)

func main() {
	exampleenv.Main("echo-service", run)
}

// run serves the API on ADDR (default 127.0.0.1:8080) until ctx is done.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	return exampleenv.RunServer(ctx, getenv, stdout, "127.0.0.1:8080", func(env *exampleenv.Env) http.Handler {
		return api.New(env.Pool, env.Client)
	})
}
