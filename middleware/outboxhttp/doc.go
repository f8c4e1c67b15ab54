// Package outboxhttp is the outbox middleware for net/http: it opens an
// outbox session for every request, so handlers publish events stamped
// with who acted, the request's job id and its trace context. It does not
// import any web framework, and works with http.ServeMux or any router
// that takes func(http.Handler) http.Handler middleware.
//
// Wrap the handler once; handlers take the session from the request's
// context and publish, flush and commit explicitly:
//
//	handler := outboxhttp.Middleware(client, nil)(mux)
//
//	mux.HandleFunc("POST /invoices", func(w http.ResponseWriter, r *http.Request) {
//		ctx := r.Context()
//		sess, ok := outbox.FromContext(ctx)
//		if !ok {
//			http.Error(w, outbox.ErrNoSession.Error(), http.StatusInternalServerError)
//			return
//		}
//		tx, err := pool.Begin(ctx)
//		...
//		defer tx.Rollback(ctx)
//		// ... write the invoice in tx ...
//		err = sess.Publish(ctx, "Created", "Invoice", inv)
//		...
//		err = sess.Flush(ctx, tx) // the events go into tx
//		...
//		err = tx.Commit(ctx)
//		...
//		w.WriteHeader(http.StatusCreated)
//	})
//
// outbox.InTx does the Begin, Flush and Commit for teams that prefer it.
//
// When the handler returns (without panicking) and its status is below 400,
// the middleware takes its transaction to have committed and calls the
// session's Committed, which runs the client's OnCommit hooks: an embedded
// relay (client.OnCommit(r.Wake)) then delivers the request's events at
// once. A handler that calls sess.Committed() right after tx.Commit wakes
// it a little sooner, before the response is written; the middleware's
// call then has nothing left to run.
//
// # The session
//
// The user comes from Config.UserIDFunc (by default the X-User-ID header);
// without one the session is a service session acting as the client's
// Source. The job id comes from Config.JobIDHeader (X-Job-ID; bc-events
// services set "x-britecore-job-id"), is generated as a UUIDv7 when the
// request has none, and is echoed in the response header. The tenant comes
// from Config.TenantFunc, and the request's W3C traceparent is stored with
// every event; an invalid one is ignored. An id longer than
// Config.MaxIDBytes (256) is refused with 400 (Config.ErrorFunc) before
// the handler runs.
//
// A user id is an actor id to the events API, which requires valid UTF-8 of
// at least five characters: a shorter one ("42", "ada") is refused with 400
// (Config.ErrorFunc) before the handler runs, rather than failing every
// Publish with outbox.ErrInvalidActor. A service session's actor is the
// client's Source, which outbox.New holds to the same rule.
//
// # Invalid event data
//
// Publish refuses data that fails its topic's schema with a
// *topics.ValidationError. When the data comes from the request, that is
// the client's mistake: WriteValidationError answers it with 422
// Unprocessable Entity instead of a bare 500, and leaves any other error
// to the handler:
//
//	if err != nil {
//		if !outboxhttp.WriteValidationError(w, err) {
//			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
//		}
//		return
//	}
//
// The JSON body names the topic and the JSON pointer of the failing value
// in the event's data, and never the data or the validator's explanation,
// which can quote it:
//
//	{"message":"event data does not match its topic's schema","topic":"billing.InvoiceCreated","path":"/amount_cents"}
//
// # Events that were never flushed
//
// A handler that publishes and answers with success without flushing has
// lost those events. The middleware notices as the status goes out (it
// wraps the ResponseWriter): it logs a warning per topic with the count
// (never the data), calls Config.UnflushedFunc for a metric, and in
// Config.Strict mode (for development) answers 500 instead. When the
// handler panics or answers 400 and up, its events are dropped silently,
// with its transaction; a panic goes on to the server or your recovery
// middleware.
package outboxhttp
