package pgtest_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// A cluster of one's own, as the demo and the fault tests use: it survives a
// Restart with its data, and Close removes it.
func ExampleStart() {
	ctx := context.Background()
	c, err := pgtest.Start(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	url, err := c.CreateDB(ctx, "demo")
	if err != nil {
		fmt.Println(err)
		return
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = conn.Exec(ctx, "CREATE TABLE greeting (text text); INSERT INTO greeting VALUES ('hello')")
	conn.Close(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}

	if err := c.Restart(ctx); err != nil {
		fmt.Println(err)
		return
	}
	conn, err = pgx.Connect(ctx, url)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(ctx)
	var text string
	if err := conn.QueryRow(ctx, "SELECT text FROM greeting").Scan(&text); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(text, "after restart")
	// Output: hello after restart
}

// Example functions have no *testing.T; ExampleDB gives them a database that
// is dropped once all tests and examples have run.
func ExampleExampleDB() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.ExampleDB())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(ctx)
	var tables int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("tables in a fresh database:", tables)
	// Output: tables in a fresh database: 0
}
