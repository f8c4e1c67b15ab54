// Package outboxecho5 is the outbox middleware for Echo v5: it opens an
// outbox session for every request, so handlers publish events stamped
// with who acted, the request's job id and its trace context.
//
// It is package outboxecho on Echo v5's types, with the same configuration,
// behaviour and tests; moving a service from Echo v4 to v5 changes the
// import and the handlers' *echo.Context, nothing else of the outbox code.
//
// Install it once; a handler takes the session with Session and publishes,
// flushes and commits explicitly:
//
//	e.Use(outboxecho5.Middleware(client))
//
//	e.POST("/invoices", func(c *echo.Context) error {
//		ctx := c.Request().Context()
//		sess, err := outboxecho5.Session(c)
//		if err != nil {
//			return err
//		}
//		tx, err := pool.Begin(ctx)
//		if err != nil {
//			return err
//		}
//		defer tx.Rollback(ctx)
//		// ... write the invoice in tx ...
//		if err := sess.Publish(ctx, "Created", "Invoice", inv); err != nil {
//			return err // invalid data: 422 with ErrorHandler (below)
//		}
//		if err := sess.Flush(ctx, tx); err != nil { // the events go into tx
//			return err
//		}
//		if err := tx.Commit(ctx); err != nil {
//			return err
//		}
//		return c.JSON(http.StatusCreated, inv)
//	})
//
// outbox.InTx does the Begin, Flush and Commit for teams that prefer it.
// Code below the handler reaches the session with outbox.FromContext on the
// request's context.
//
// When the handler returns without an error and its status is below 400,
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
// Config.MaxIDBytes (256), or a user id shorter than the five characters
// the events API requires of an actor id, is answered with 400 before the
// handler runs. An extractor's error that carries a status (echo.StatusCode
// is not 0) keeps it.
//
// # Invalid event data
//
// Publish refuses data that fails its topic's schema with a
// *topics.ValidationError. When the data comes from the request, that is
// the client's mistake: install ErrorHandler and the handler's returned
// error answers 422 Unprocessable Entity instead of a bare 500, every
// other error going on to the handler it wraps:
//
//	e.HTTPErrorHandler = outboxecho5.ErrorHandler(e.HTTPErrorHandler)
//
// The JSON body names the topic and the JSON pointer of the failing value
// in the event's data, and never the data or the validator's explanation,
// which can quote it.
//
// # Events that were never flushed
//
// A handler that publishes and answers with success without flushing has
// lost those events. The middleware notices as the status goes out: it logs
// a warning per topic with the count (never the data), calls
// Config.UnflushedFunc for a metric, and in Config.Strict mode (for
// development) answers 500 instead. When the handler returns an error,
// panics, or answers 400 and up, its events are dropped silently, with its
// transaction; a panic goes on to Echo's Recover.
//
// The middleware finds Echo's *echo.Response under c.Response() with
// echo.UnwrapResponse; a middleware before it that replaces the writer must
// keep an Unwrap method (as Echo asks), or the request fails with 500.
package outboxecho5
