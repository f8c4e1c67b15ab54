package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
)

func TestInTx(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	errBusiness := errors.New("invoice already exists")
	var hooked []int // events visible to another connection when each OnCommit hook ran
	defer b.client.OnCommit(func() { hooked = append(hooked, countEvents(t, b.pool, "true")) })()

	// insertAndPublish is a handler body; after it, fail decides how it ends.
	run := func(t *testing.T, id string, fail func(ctx context.Context, tx pgx.Tx) error) (sess *outbox.Session, err error) {
		t.Helper()
		sess = b.client.UserSession("user-42", "job-"+id)
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		err = outbox.InTx(t.Context(), b.pool, sess, func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO invoices VALUES ($1, 1250)", id); err != nil {
				return err
			}
			if err := sess.Publish(ctx, "Created", "Invoice", invoice(id)); err != nil {
				return err
			}
			return fail(ctx, tx)
		})
		return sess, err
	}
	invoices := func(id string) int {
		var n int
		if err := b.pool.QueryRow(t.Context(), "SELECT count(*) FROM invoices WHERE id = $1", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("commits business rows and events", func(t *testing.T) {
		sess, err := run(t, "inv-ok", func(context.Context, pgx.Tx) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if invoices("inv-ok") != 1 || countEvents(t, b.pool, "key = 'inv-ok'") != 1 || sess.Len() != 0 {
			t.Errorf("invoice %d, events %d, buffered %d; want 1, 1, 0", invoices("inv-ok"), countEvents(t, b.pool, "key = 'inv-ok'"), sess.Len())
		}
		if fmt.Sprint(hooked) != "[1]" {
			t.Errorf("OnCommit hooks saw %v events, want one hook seeing the committed event", hooked)
		}
	})
	t.Run("error rolls back and drops events", func(t *testing.T) {
		sess, err := run(t, "inv-err", func(context.Context, pgx.Tx) error { return errBusiness })
		if !errors.Is(err, errBusiness) {
			t.Fatalf("err = %v, want fn's error", err)
		}
		if invoices("inv-err") != 0 || countEvents(t, b.pool, "key = 'inv-err'") != 0 || sess.Len() != 0 {
			t.Errorf("invoice, events or buffer left behind")
		}
	})
	t.Run("failed flush rolls back", func(t *testing.T) {
		// fn swallows a failed statement: the transaction is aborted, so Flush fails.
		sess, err := run(t, "inv-aborted", func(ctx context.Context, tx pgx.Tx) error {
			_, _ = tx.Exec(ctx, "SELECT 1/0")
			return nil
		})
		if err == nil || invoices("inv-aborted") != 0 || countEvents(t, b.pool, "key = 'inv-aborted'") != 0 || sess.Len() != 0 {
			t.Errorf("err %v; want an error and nothing left behind", err)
		}
	})
	t.Run("panic rolls back, drops events and goes on", func(t *testing.T) {
		sess, err := run(t, "inv-panic", func(context.Context, pgx.Tx) error { panic("boom") })
		if err == nil || err.Error() != "panic: boom" {
			t.Errorf("err = %v, want the handler's panic to go on", err)
		}
		if invoices("inv-panic") != 0 || countEvents(t, b.pool, "key = 'inv-panic'") != 0 || sess.Len() != 0 {
			t.Errorf("a panicking handler left writes, events or a buffer behind")
		}
		if n := b.pool.Stat().AcquiredConns(); n != 0 {
			t.Errorf("%d connections still acquired: the transaction was not ended", n)
		}
	})
	t.Run("nil session", func(t *testing.T) {
		err := outbox.InTx(t.Context(), b.pool, nil, func(context.Context, pgx.Tx) error { return nil })
		if err == nil {
			t.Error("InTx with a nil session succeeded")
		}
	})
	if fmt.Sprint(hooked) != "[1]" {
		t.Errorf("OnCommit hooks saw %v events; want only the committed transaction's hook", hooked)
	}
}
