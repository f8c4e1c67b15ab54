package billingevents_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/examples/billingevents"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/topics"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newClient(t *testing.T) (*pgxpool.Pool, *outbox.Client) {
	t.Helper()
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	reg, err := topics.Load("../../topic_definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "billing-api"})
	if err != nil {
		t.Fatal(err)
	}
	return pool, client
}

func ptr[T any](v T) *T { return &v }

// Every generated function publishes an event its topic's schema accepts,
// under the right topic and key, in the caller's transaction.
func TestPublishEveryTopic(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, client := newClient(t)
	sess := client.UserSession("user-42", "job-1")

	publish := []struct {
		topic, key string
		call       func(context.Context, *outbox.Session) error
	}{
		{billingevents.TopicCustomerCreated, "cus-1", func(ctx context.Context, s *outbox.Session) error {
			return billingevents.CustomerCreated(ctx, s, billingevents.Customer{ID: "cus-1", Name: "Ada", Email: "ada@example.com"})
		}},
		{billingevents.TopicCustomerUpdated, "cus-1", func(ctx context.Context, s *outbox.Session) error {
			return billingevents.CustomerUpdated(ctx, s, billingevents.CustomerUpdatedData{ID: "cus-1", Name: ptr("Ada L.")})
		}},
		{billingevents.TopicInvoiceCreated, "inv-1", func(ctx context.Context, s *outbox.Session) error {
			return billingevents.InvoiceCreated(ctx, s, billingevents.Invoice{
				ID:          "inv-1",
				Customer:    billingevents.InvoiceCustomer{ID: "cus-1", Name: "Ada"},
				AmountCents: 1250,
				Currency:    billingevents.InvoiceCurrencyEUR,
				Status:      billingevents.InvoiceStatusOpen,
				DueDate:     "2026-12-31",
			})
		}},
		{billingevents.TopicPaymentReceived, "inv-1", func(ctx context.Context, s *outbox.Session) error {
			return billingevents.PaymentReceived(ctx, s, billingevents.PaymentReceivedData{ID: "pay-1", InvoiceID: "inv-1", AmountCents: 1250})
		}},
		{billingevents.TopicPaymentRefunded, "inv-1", func(ctx context.Context, s *outbox.Session) error {
			return billingevents.PaymentRefunded(ctx, s, billingevents.PaymentRefundedData{ID: "pay-1", InvoiceID: "inv-1", AmountCents: 250})
		}},
		{billingevents.TopicInvoicePaid, "inv-1", func(ctx context.Context, s *outbox.Session) error {
			return billingevents.InvoicePaid(ctx, s, billingevents.InvoicePaidData{ID: "inv-1", AmountCents: 1000, PaidAt: "2026-11-23T10:00:00Z"})
		}},
		{billingevents.TopicInvoiceOverdue, "inv-2", func(ctx context.Context, s *outbox.Session) error {
			return billingevents.InvoiceOverdue(ctx, s, billingevents.InvoiceOverdueData{ID: "inv-2", DaysOverdue: 3})
		}},
		{billingevents.TopicInvoiceCancelled, "inv-2", func(ctx context.Context, s *outbox.Session) error {
			return billingevents.InvoiceCancelled(ctx, s, billingevents.InvoiceCancelledData{ID: "inv-2", Reason: "issued twice"})
		}},
		{billingevents.TopicNotificationsReminderSent, "inv-2", func(ctx context.Context, s *outbox.Session) error {
			return billingevents.NotificationsReminderSent(ctx, s, billingevents.NotificationsReminder{
				ID: "rem-1", InvoiceID: "inv-2", Channel: billingevents.NotificationsReminderChannelEmail,
			})
		}},
	}
	err := outbox.InTx(ctx, pool, sess, func(ctx context.Context, _ pgx.Tx) error {
		for _, p := range publish {
			if err := p.call(ctx, sess); err != nil {
				return fmt.Errorf("%s: %w", p.topic, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	rows, err := pool.Query(ctx, "SELECT topic, key, data::text FROM txoutbox_events ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var topic, key, data string
		if err := rows.Scan(&topic, &key, &data); err != nil {
			t.Fatal(err)
		}
		if i >= len(publish) {
			t.Fatalf("more rows than events published: %s", topic)
		}
		if topic != publish[i].topic || key != publish[i].key {
			t.Errorf("row %d: topic %s key %s, want %s %s", i, topic, key, publish[i].topic, publish[i].key)
		}
		if !json.Valid([]byte(data)) {
			t.Errorf("row %d: data is not JSON: %s", i, data)
		}
		i++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(publish) {
		t.Fatalf("%d rows, want %d", i, len(publish))
	}
}

// Optional fields left nil are left out of the JSON, not sent as zero
// values the schema might refuse.
func TestOptionalFieldsOmitted(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(billingevents.CustomerUpdatedData{ID: "cus-1", Email: ptr("a@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"id":"cus-1","email":"a@example.com"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// What the types cannot say is still checked against the schema when the
// event is published.
func TestSchemaStillValidated(t *testing.T) {
	t.Parallel()
	_, client := newClient(t)
	sess := client.ServiceSession("job-1")
	err := billingevents.PaymentReceived(t.Context(), sess, billingevents.PaymentReceivedData{ID: "pay-1", InvoiceID: "inv-1", AmountCents: 0})
	var verr *topics.ValidationError
	if !errors.As(err, &verr) || verr.Path != "/amount_cents" {
		t.Fatalf("err = %v, want a ValidationError at /amount_cents", err)
	}
	if sess.Len() != 0 {
		t.Errorf("%d events buffered after a refused publish", sess.Len())
	}
	// An enum value outside the constants converts, and the schema refuses it.
	err = billingevents.NotificationsReminderSent(t.Context(), sess, billingevents.NotificationsReminder{
		ID: "rem-1", InvoiceID: "inv-1", Channel: billingevents.NotificationsReminderChannel("pigeon"),
	})
	if !errors.As(err, &verr) || verr.Path != "/channel" {
		t.Fatalf("err = %v, want a ValidationError at /channel", err)
	}
}
