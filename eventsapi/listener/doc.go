// Package listener follows an events API's stream from Go: it connects,
// hands every event to a handler in stream order, and when the connection
// drops it reconnects by itself (backoff with full jitter) and resumes after
// the last event its handler finished.
//
//	l, err := listener.New(&listener.Config{
//		URL:    "http://127.0.0.1:8642",
//		Token:  os.Getenv("EVENTS_TOKEN"),
//		Filter: eventsapi.Filter{Include: []eventsapi.Selector{{Topic: []string{"billing.*"}}}},
//		After:  lastSavedPosition,
//	}, func(ctx context.Context, ev *eventsapi.Event) error {
//		return apply(ctx, ev) // save ev.Position with the effects
//	})
//	if err != nil { ... }
//	err = l.Run(ctx) // blocks until ctx ends
//
// The stream is the server's server-sent events route (/api/stream); see
// the eventsapi package's PROTOCOL.md. What the listener promises is in the
// Listener type's doc.
package listener
