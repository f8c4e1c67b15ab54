package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/examples/internal/exampleenv"
	"github.com/txoutbox/txoutbox/examples/internal/exampletest"
	"github.com/txoutbox/txoutbox/internal/invoices/api"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// TestHandlersPublish checks with outboxtest what each handler published,
// as a service's own tests would: the event of a change, none for a
// refused one, and an invoice's events in order.
func TestHandlersPublish(t *testing.T) {
	ctx := t.Context()
	getenv, _ := exampletest.Env(t)
	env, err := exampleenv.Open(ctx, getenv, "echo-service")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	e := api.New(env.Pool, env.Client)

	serve := func(method, path, jobID, body string, want int) (invoiceID string) {
		t.Helper()
		req := httptest.NewRequestWithContext(ctx, method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-User-ID", "user-42")
		req.Header.Set("X-Job-ID", jobID)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Fatalf("%s %s: status %d, want %d: %s", method, path, rec.Code, want, rec.Body)
		}
		var inv struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &inv)
		return inv.ID
	}

	const newInvoice = `{"customer": {"id": "cus-7", "name": "Ada Lovelace"}, "amount_cents": 1250, "currency": "EUR", "due_date": "2026-12-31"}`
	id := serve("POST", "/invoices", "job-create", newInvoice, http.StatusCreated)
	outboxtest.RequirePublished(ctx, t, env.Pool, outboxtest.Want{
		Topic:     "billing.InvoiceCreated",
		Key:       id,
		ActorType: outbox.ActorUser,
		ActorID:   "user-42",
		JobID:     "job-create",
		Data:      map[string]any{"status": "open", "amount_cents": 1250, "customer": map[string]any{"name": "Ada Lovelace"}},
	}, nil)

	// A refused request publishes nothing.
	serve("POST", "/invoices", "job-bad-currency", strings.Replace(newInvoice, "EUR", "XXX", 1), http.StatusBadRequest)
	outboxtest.RequireNotPublished(ctx, t, env.Pool, outboxtest.Want{JobID: "job-bad-currency"}, nil)

	serve("POST", "/invoices/"+id+"/pay", "job-pay", "", http.StatusOK)
	serve("POST", "/invoices/"+id+"/cancel", "job-cancel", `{"reason": "duplicate"}`, http.StatusConflict)
	outboxtest.RequireNotPublished(ctx, t, env.Pool, outboxtest.Want{Topic: "billing.InvoiceCancelled"}, nil)

	outboxtest.RequirePublishedMany(ctx, t, env.Pool, []outboxtest.Want{
		{Topic: "billing.InvoiceCreated", Key: id},
		{Topic: "billing.InvoicePaid", Key: id, JobID: "job-pay", Data: map[string]any{"amount_cents": 1250}},
	}, nil)
}
