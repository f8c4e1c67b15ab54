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

func TestInvoices(t *testing.T) {
	getenv, dbURL := exampletest.Env(t)
	base := exampletest.Start(t, run, getenv)
	exampletest.Invoices(t, base, exampletest.Pool(t, dbURL))
}
