// Package exampletest checks the example programs end to end: the same
// scenario against either invoices service, the outbox rows it must leave,
// and the txoutbox command built for examples whose README runs it.
package exampletest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// Row is the part of an outbox row the scenarios check.
type Row struct {
	Topic, Key, ActorID, ActorType, JobID string
}

// Rows returns the outbox rows in insert order.
func Rows(t testing.TB, pool *pgxpool.Pool) []Row {
	t.Helper()
	rows, _ := pool.Query(t.Context(), `SELECT topic, key, actor_id, actor_type, job_id FROM txoutbox_events ORDER BY seq`)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Row])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Env returns a getenv for a program's run function: a fresh database,
// any free loopback port, the repository's topic definitions (the
// programs are two directories below the root).
func Env(t testing.TB) (getenv func(string) string, dbURL string) {
	dbURL = pgtest.NewDB(t)
	env := map[string]string{
		"DATABASE_URL": dbURL,
		"ADDR":         "127.0.0.1:0",
		"TOPICS":       "../../topic_definitions.yaml",
	}
	return func(k string) string { return env[k] }, dbURL
}

// Run is the run function of an example program.
type Run func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error

// Service starts an invoices service through its run function, on a fresh
// database, and runs the Invoices scenario against it.
func Service(t *testing.T, run Run) {
	getenv, dbURL := Env(t)
	base := Start(t, run, getenv)
	Invoices(t, base, Pool(t, dbURL))
}

// Start runs a service's run function in the background and returns its
// base URL, read from the line it prints. The service is stopped, and run
// must have returned nil, when the test ends.
func Start(t *testing.T, run Run, getenv func(string) string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, nil, getenv, pw)
		pw.CloseWithError(fmt.Errorf("run returned: %v", err))
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	go func() { _, _ = io.Copy(io.Discard, pr) }() // the pipe drains until run returns
	if err != nil {
		t.Fatalf("waiting for the service to listen: %v", err)
	}
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("service printed %q, want listening on ...", line)
	}
	return url
}

type invoice struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// call sends a request as user-42 in job jobID and decodes the answer into
// an invoice when it is one.
func call(t *testing.T, method, url, jobID, body string) (int, invoice) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-User-ID", "user-42")
	req.Header.Set("X-Job-ID", jobID)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Header.Get("X-Job-ID"); got != jobID {
		t.Errorf("%s %s: X-Job-ID %q, want %q echoed", method, url, got, jobID)
	}
	var inv invoice
	_ = json.NewDecoder(bytes.NewReader(b)).Decode(&inv)
	return res.StatusCode, inv
}

// Invoices runs the invoices scenario against the service at base: issue,
// pay, cancel, and the requests that must fail; then checks that the
// outbox holds exactly the successful changes' events.
func Invoices(t *testing.T, base string, pool *pgxpool.Pool) {
	t.Helper()
	const newInvoice = `{"customer": {"id": "cus-7", "name": "Ada Lovelace"}, "amount_cents": 1250, "currency": "EUR", "due_date": "2026-12-31"}`
	expect := func(status, want int, what string) {
		t.Helper()
		if status != want {
			t.Errorf("%s: status %d, want %d", what, status, want)
		}
	}

	status, paid := call(t, "POST", base+"/invoices", "job-create-1", newInvoice)
	expect(status, http.StatusCreated, "create")
	status, inv := call(t, "POST", base+"/invoices/"+paid.ID+"/pay", "job-pay", "")
	expect(status, http.StatusOK, "pay")
	if inv.Status != "paid" {
		t.Errorf("paid invoice has status %q", inv.Status)
	}
	status, _ = call(t, "POST", base+"/invoices/"+paid.ID+"/cancel", "job-cancel-paid", `{"reason": "duplicate"}`)
	expect(status, http.StatusConflict, "cancel a paid invoice")

	status, cancelled := call(t, "POST", base+"/invoices", "job-create-2", newInvoice)
	expect(status, http.StatusCreated, "create another")
	status, _ = call(t, "POST", base+"/invoices/"+cancelled.ID+"/cancel", "job-no-reason", `{}`)
	expect(status, http.StatusBadRequest, "cancel without a reason")
	status, _ = call(t, "POST", base+"/invoices/"+cancelled.ID+"/cancel", "job-cancel", `{"reason": "issued twice"}`)
	expect(status, http.StatusOK, "cancel")

	status, _ = call(t, "POST", base+"/invoices", "job-bad-currency", strings.Replace(newInvoice, "EUR", "XXX", 1))
	expect(status, http.StatusBadRequest, "create in an unknown currency")
	status, _ = call(t, "POST", base+"/invoices/inv-none/pay", "job-pay-none", "")
	expect(status, http.StatusNotFound, "pay an unknown invoice")
	status, inv = call(t, "GET", base+"/invoices/"+paid.ID, "job-get", "")
	expect(status, http.StatusOK, "get")
	if inv.ID != paid.ID || inv.Status != "paid" {
		t.Errorf("get: %+v", inv)
	}

	user := func(topic, key, job string) Row { return Row{topic, key, "user-42", "user", job} }
	want := []Row{
		user("billing.InvoiceCreated", paid.ID, "job-create-1"),
		user("billing.InvoicePaid", paid.ID, "job-pay"),
		user("billing.InvoiceCreated", cancelled.ID, "job-create-2"),
		user("billing.InvoiceCancelled", cancelled.ID, "job-cancel"),
	}
	if got := Rows(t, pool); !slices.Equal(got, want) {
		t.Errorf("outbox rows\n got  %+v\n want %+v", got, want)
	}
}

// Pool opens a pool on url, closed when the test ends.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
