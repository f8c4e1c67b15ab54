package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/examples/internal/exampletest"
	"github.com/txoutbox/txoutbox/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

// TestInvoices runs the scenario examples/echo-service passes (issue, pay,
// cancel, the refused requests, and exactly the successful changes' events
// in the outbox) against this service, started as main starts it.
func TestInvoices(t *testing.T) {
	exampletest.Service(t, run)
}
