package outboxconsole_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outboxconsole"
)

// Mount the console in a service's admin server, beside its other admin
// routes. Without a Token or Users it serves loopback callers only.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.ExampleDB())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := outbox.Migrate(ctx, pool, nil); err != nil {
		log.Fatal(err)
	}

	console, err := outboxconsole.New(pool, &outboxconsole.Config{Path: "/console/", ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer console.Close() // ends the live streams; before the server's Shutdown
	// Run samples the backlog for the overview's charts until its context ends.
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = console.Run(runCtx) })
	defer wg.Wait()
	defer stop()

	mux := http.NewServeMux()
	mux.Handle("/console/", console)

	srv := httptest.NewServer(mux) // in a service: its admin server on 127.0.0.1
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/console/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}
