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
	exampletest.Service(t, run)
}
