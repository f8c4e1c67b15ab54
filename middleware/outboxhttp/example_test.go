package outboxhttp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/middleware/internal/mwtest"
	"github.com/txoutbox/txoutbox/middleware/outboxhttp"
	"github.com/txoutbox/txoutbox/outbox"
)

// Wrap a ServeMux in the middleware; a handler takes the request's session
// from its context. This one lets outbox.InTx begin, flush and commit.
func Example() {
	env := mwtest.ExampleEnv() // a migrated database and an outbox client
	pool, client := env.Pool, env.Client
	defer pool.Close()
	inv := mwtest.Invoice("inv-1001")

	mux := http.NewServeMux()
	mux.HandleFunc("POST /invoices", func(w http.ResponseWriter, r *http.Request) {
		sess, ok := outbox.FromContext(r.Context())
		if !ok {
			http.Error(w, outbox.ErrNoSession.Error(), http.StatusInternalServerError)
			return
		}
		err := outbox.InTx(r.Context(), pool, sess, func(ctx context.Context, tx pgx.Tx) error {
			// ... write the invoice in tx ...
			return sess.Publish(ctx, "Created", "Invoice", inv)
		}) // flushed and committed, or rolled back with its events
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	handler := outboxhttp.Middleware(client, &outboxhttp.Config{
		JobIDHeader: "x-britecore-job-id", // as bc-events services send it; defaults to X-Job-ID
		Strict:      true,                 // a forgotten Flush answers 500: for development
	})(mux)
	// http.ListenAndServe("127.0.0.1:8080", handler)

	req := httptest.NewRequest(http.MethodPost, "/invoices", nil)
	req.Header.Set("X-User-ID", "user-42")
	req.Header.Set("x-britecore-job-id", "job-7f3a")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)

	var topic, actor, job string
	err := pool.QueryRow(context.Background(), "SELECT topic, actor_id, job_id FROM txoutbox_events").Scan(&topic, &actor, &job)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.Code, rec.Header().Get("x-britecore-job-id"))
	fmt.Println(topic, actor, job)
	// Output:
	// 201 job-7f3a
	// billing.InvoiceCreated user-42 job-7f3a
}

// A handler publishes what the client sent; data that fails its topic's
// schema answers 422 with the topic and the field at fault, not a bare 500.
func ExampleWriteValidationError() {
	env := mwtest.ExampleEnv()
	pool, client := env.Pool, env.Client
	defer pool.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /invoices", func(w http.ResponseWriter, r *http.Request) {
		var inv map[string]any
		if err := json.NewDecoder(r.Body).Decode(&inv); err != nil {
			http.Error(w, "body is not a JSON object", http.StatusBadRequest)
			return
		}
		sess, ok := outbox.FromContext(r.Context())
		if !ok {
			http.Error(w, outbox.ErrNoSession.Error(), http.StatusInternalServerError)
			return
		}
		err := outbox.InTx(r.Context(), pool, sess, func(ctx context.Context, tx pgx.Tx) error {
			// ... write the invoice in tx ...
			return sess.Publish(ctx, "Created", "Invoice", inv)
		})
		if err != nil {
			if !outboxhttp.WriteValidationError(w, err) { // 422 for a *topics.ValidationError
				http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": inv["id"]})
	})
	handler := outboxhttp.Middleware(client, nil)(mux)

	for _, amount := range []any{1250, "12.50"} {
		inv := mwtest.Invoice("inv-1001")
		inv["amount_cents"] = amount
		body, _ := json.Marshal(inv)
		req := httptest.NewRequest(http.MethodPost, "/invoices", strings.NewReader(string(body)))
		req.Header.Set("X-User-ID", "user-42")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Body)
	}
	// Output:
	// 201 {"id":"inv-1001"}
	// 422 {"message":"event data does not match its topic's schema","topic":"billing.InvoiceCreated","path":"/amount_cents"}
}
