// Command echo-service is the example invoices API in Echo. It publishes
// billing.InvoiceCreated, InvoicePaid and InvoiceCancelled through the
// outbox, in the transaction of each change.
//
//	DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres go run ./examples/echo-service
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/txoutbox/txoutbox/examples/echo-service/api"
	"github.com/txoutbox/txoutbox/examples/internal/exampleenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "echo-service:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	env, err := exampleenv.Open(ctx, getenv, "billing-api")
	if err != nil {
		return err
	}
	defer env.Close()
	ln, err := exampleenv.Listen(getenv, "127.0.0.1:8080", stdout)
	if err != nil {
		return err
	}
	return exampleenv.Serve(ctx, ln, api.New(env.Pool, env.Client))
}
