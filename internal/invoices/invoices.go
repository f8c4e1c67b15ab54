// Package invoices is the business logic of the sample invoices service
// that the examples and `txoutbox demo` run: a small invoices table and the
// state changes on it. Each change returns the event it calls for; the
// services publish it through their outbox session in the same transaction.
//
// It is application code, not part of the library, and no library package
// imports it. It lives here rather than under examples/ because the
// txoutbox binary's demo runs the service too, and nothing outside
// examples/ imports examples/.
package invoices

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Statuses of an invoice.
const (
	StatusOpen      = "open"
	StatusPaid      = "paid"
	StatusCancelled = "cancelled"
	StatusOverdue   = "overdue"
)

// DB is what the functions here run their statements on: a pgx.Tx to make
// them part of a transaction, or a pool or connection to run them alone.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Migrate creates the invoices table when it is missing. Real services
// keep their schema in migrations; the examples create it at start-up.
func Migrate(ctx context.Context, db DB) error {
	_, err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS invoices (
		id            text        PRIMARY KEY,
		customer_id   text        NOT NULL,
		customer_name text        NOT NULL,
		amount_cents  bigint      NOT NULL CHECK (amount_cents >= 0),
		currency      text        NOT NULL,
		status        text        NOT NULL CHECK (status IN ('open', 'paid', 'cancelled', 'overdue')),
		due_date      date        NOT NULL,
		paid_at       timestamptz,
		cancel_reason text,
		created_at    timestamptz NOT NULL DEFAULT now()
	)`)
	if err != nil {
		return fmt.Errorf("create invoices table: %w", err)
	}
	return nil
}

// Customer is who an invoice is addressed to.
type Customer struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Invoice is an invoice as the API shows it.
type Invoice struct {
	ID           string     `json:"id"`
	Customer     Customer   `json:"customer"`
	AmountCents  int64      `json:"amount_cents"`
	Currency     string     `json:"currency"`
	Status       string     `json:"status"`
	DueDate      string     `json:"due_date"` // YYYY-MM-DD
	PaidAt       *time.Time `json:"paid_at,omitempty"`
	CancelReason string     `json:"cancel_reason,omitempty"`
}

// Event is what a change calls for: the action on the Invoice entity of
// topic_definitions.yaml, and the event's data.
type Event struct {
	Action string
	Data   any
}

// Entity is the topic entity of every Event here.
const Entity = "Invoice"

// New is the request to issue an invoice.
type New struct {
	Customer    Customer `json:"customer"`
	AmountCents int64    `json:"amount_cents"`
	Currency    string   `json:"currency"`
	DueDate     string   `json:"due_date"` // YYYY-MM-DD
}

var (
	// ErrNotFound means there is no invoice with the id.
	ErrNotFound = errors.New("invoice not found")
	// ErrState means the invoice's status does not allow the change, such
	// as paying a cancelled invoice.
	ErrState = errors.New("invoice status does not allow this")
)

// InputError is a request that cannot become an invoice.
type InputError struct {
	Field, Problem string
}

func (e *InputError) Error() string { return e.Field + ": " + e.Problem }

func (n *New) validate() error {
	switch {
	case n.Customer.ID == "":
		return &InputError{"customer.id", "required"}
	case n.Customer.Name == "":
		return &InputError{"customer.name", "required"}
	case n.AmountCents < 0:
		return &InputError{"amount_cents", "must not be negative"}
	case n.Currency != "EUR" && n.Currency != "GBP" && n.Currency != "USD":
		return &InputError{"currency", "must be EUR, GBP or USD"}
	}
	if _, err := time.Parse(time.DateOnly, n.DueDate); err != nil {
		return &InputError{"due_date", "must be a date as YYYY-MM-DD"}
	}
	return nil
}

const columns = `id, customer_id, customer_name, amount_cents, currency, status,
	to_char(due_date, 'YYYY-MM-DD'), paid_at, coalesce(cancel_reason, '')`

// scan reads the columns, then any extra ones into extra.
func scan(row pgx.Row, extra ...any) (Invoice, error) {
	var inv Invoice
	dest := []any{&inv.ID, &inv.Customer.ID, &inv.Customer.Name, &inv.AmountCents, &inv.Currency,
		&inv.Status, &inv.DueDate, &inv.PaidAt, &inv.CancelReason}
	err := row.Scan(append(dest, extra...)...)
	return inv, err
}

// Create issues an invoice and calls for billing.InvoiceCreated.
func Create(ctx context.Context, db DB, n New) (Invoice, Event, error) {
	if err := n.validate(); err != nil {
		return Invoice{}, Event{}, err
	}
	inv, err := scan(db.QueryRow(ctx, `INSERT INTO invoices
		(id, customer_id, customer_name, amount_cents, currency, status, due_date)
		VALUES ($1, $2, $3, $4, $5, 'open', $6) RETURNING `+columns,
		uuid.Must(uuid.NewV7()).String(), n.Customer.ID, n.Customer.Name, n.AmountCents, n.Currency, n.DueDate))
	if err != nil {
		return Invoice{}, Event{}, fmt.Errorf("insert invoice: %w", err)
	}
	return inv, Event{"Created", created{inv.ID, inv.Customer, inv.AmountCents, inv.Currency, inv.Status, inv.DueDate}}, nil
}

// Get returns the invoice with the id.
func Get(ctx context.Context, db DB, id string) (Invoice, error) {
	inv, err := scan(db.QueryRow(ctx, `SELECT `+columns+` FROM invoices WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Invoice{}, ErrNotFound
	}
	return inv, err
}

// Pay records that an open or overdue invoice was paid in full at paidAt,
// and calls for billing.InvoicePaid.
func Pay(ctx context.Context, db DB, id string, paidAt time.Time) (Invoice, Event, error) {
	inv, err := change(ctx, db, id, `status = 'paid', paid_at = $2`, paidAt)
	if err != nil {
		return Invoice{}, Event{}, err
	}
	return inv, Event{"Paid", paid{inv.ID, inv.AmountCents, paidAt.UTC().Format(time.RFC3339)}}, nil
}

// Cancel withdraws an open or overdue invoice, and calls for
// billing.InvoiceCancelled.
func Cancel(ctx context.Context, db DB, id, reason string) (Invoice, Event, error) {
	if reason == "" {
		return Invoice{}, Event{}, &InputError{"reason", "required"}
	}
	inv, err := change(ctx, db, id, `status = 'cancelled', cancel_reason = $2`, reason)
	if err != nil {
		return Invoice{}, Event{}, err
	}
	return inv, Event{"Cancelled", cancelled{inv.ID, reason}}, nil
}

// change applies set ($2 is arg) to an open or overdue invoice.
func change(ctx context.Context, db DB, id, set string, arg any) (Invoice, error) {
	inv, err := scan(db.QueryRow(ctx, `UPDATE invoices SET `+set+`
		WHERE id = $1 AND status IN ('open', 'overdue') RETURNING `+columns, id, arg))
	if !errors.Is(err, pgx.ErrNoRows) {
		return inv, err
	}
	if _, err := Get(ctx, db, id); err != nil {
		return Invoice{}, err
	}
	return Invoice{}, ErrState
}

// MarkOverdue marks up to limit open invoices due before today's date as
// overdue, and calls for billing.InvoiceOverdue for each. Rows another
// sweep holds are skipped, so sweeps can run side by side.
func MarkOverdue(ctx context.Context, db DB, today time.Time, limit int) ([]Invoice, []Event, error) {
	rows, err := db.Query(ctx, `UPDATE invoices SET status = 'overdue'
		WHERE id IN (SELECT id FROM invoices WHERE status = 'open' AND due_date < $1::date
			ORDER BY due_date, id LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING `+columns+`, $1::date - due_date`, today.Format(time.DateOnly), limit)
	if err != nil {
		return nil, nil, fmt.Errorf("mark overdue: %w", err)
	}
	var invs []Invoice
	var events []Event
	for rows.Next() {
		var days int
		inv, err := scan(rows, &days)
		if err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("mark overdue: %w", err)
		}
		invs = append(invs, inv)
		events = append(events, Event{"Overdue", overdue{inv.ID, days}})
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("mark overdue: %w", err)
	}
	return invs, events, nil
}

// The events' data, as topic_definitions.yaml defines it.
type (
	created struct {
		ID          string   `json:"id"`
		Customer    Customer `json:"customer"`
		AmountCents int64    `json:"amount_cents"`
		Currency    string   `json:"currency"`
		Status      string   `json:"status"`
		DueDate     string   `json:"due_date"`
	}
	paid struct {
		ID          string `json:"id"`
		AmountCents int64  `json:"amount_cents"`
		PaidAt      string `json:"paid_at"`
	}
	cancelled struct {
		ID     string `json:"id"`
		Reason string `json:"reason"`
	}
	overdue struct {
		ID          string `json:"id"`
		DaysOverdue int    `json:"days_overdue"`
	}
)
