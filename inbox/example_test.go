package inbox_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/inbox"
	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// A consumer credits a customer's balance for each payment event. The
// event id goes into the inbox in the transaction of the credit, so the
// copy that at-least-once delivery brings again credits nothing.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.ExampleDB()) // the consumer's own database
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := inbox.Migrate(ctx, pool, nil); err != nil { // or apply inbox.Migrations() with your tool
		log.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE balances (customer text PRIMARY KEY, cents bigint NOT NULL);
		INSERT INTO balances VALUES ('cus-7', 0)`); err != nil {
		log.Fatal(err)
	}
	ib, err := inbox.New(nil)
	if err != nil {
		log.Fatal(err)
	}

	credit := func(eventID string, cents int) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			first, err := ib.Once(ctx, tx, "balances", eventID)
			if err != nil || !first {
				fmt.Println(eventID, "seen before: skipped")
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE balances SET cents = cents + $1 WHERE customer = 'cus-7'`, cents)
			fmt.Println(eventID, "credited")
			return err
		})
	}
	for _, id := range []string{"evt-1", "evt-2", "evt-1"} { // evt-1 delivered twice
		if err := credit(id, 1250); err != nil {
			log.Fatal(err)
		}
	}

	var cents int
	if err := pool.QueryRow(ctx, `SELECT cents FROM balances`).Scan(&cents); err != nil {
		log.Fatal(err)
	}
	fmt.Println("balance", cents)
	// Output:
	// evt-1 credited
	// evt-2 credited
	// evt-1 seen before: skipped
	// balance 2500
}
