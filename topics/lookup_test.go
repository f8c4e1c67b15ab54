package topics_test

import (
	"errors"
	"testing"

	"github.com/txoutbox/txoutbox/topics"
)

func TestLookupSpellings(t *testing.T) {
	t.Parallel()
	reg, err := topics.Parse("spellings.yaml", []byte(`DefaultCategory: billing
Topics:
  - {Action: Created, Entity: MyEntity, Description: d, Schema: {type: object}}
  - {Action: Created, Entity: Invoice, Description: d, Schema: {type: object}}
  - {Action: Sent, Entity: Reminder, Category: notifications, Description: d, Schema: {type: object}}
`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		category, entity, action, want string
	}{
		{"", "MyEntity", "Created", "billing.MyEntityCreated"},
		{"", "my_entity", "created", "billing.MyEntityCreated"},
		{"", "myEntity", "CREATED", "billing.MyEntityCreated"},
		{"", "my-entity", "Created", "billing.MyEntityCreated"},
		{"", "myentity", "created", "billing.MyEntityCreated"},
		{"", "MY_ENTITY", "created", "billing.MyEntityCreated"},
		{"", "my entity", "created", "billing.MyEntityCreated"},
		{"billing", "Invoice", "Created", "billing.InvoiceCreated"},
		{"Billing", "invoice", "created", "billing.InvoiceCreated"},
		{"BILLING", "INVOICE", "CREATED", "billing.InvoiceCreated"},
		{"notifications", "reminder", "sent", "notifications.ReminderSent"},
		{"Notifications", "Reminder", "Sent", "notifications.ReminderSent"},
	}
	for _, c := range cases {
		tp, err := reg.Lookup(c.category, c.entity, c.action)
		if err != nil || tp.Name != c.want {
			t.Errorf("Lookup(%q, %q, %q) = %v, %v; want %s", c.category, c.entity, c.action, tp, err, c.want)
		}
	}

	for name, want := range map[string]string{
		"billing.MyEntityCreated":     "billing.MyEntityCreated",
		"billing.my_entity_created":   "billing.MyEntityCreated",
		"notifications.reminder-sent": "notifications.ReminderSent",
	} {
		if tp, ok := reg.Topic(name); !ok || tp.Name != want {
			t.Errorf("Topic(%q) = %v, %v; want %s", name, tp, ok, want)
		}
	}
	for _, name := range []string{"", "billing", "billing.", "MyEntityCreated", "billing.MyEntity", "shipping.InvoiceCreated"} {
		if tp, ok := reg.Topic(name); ok {
			t.Errorf("Topic(%q) = %s, want none", name, tp.Name)
		}
	}
}

func TestLookupUnknown(t *testing.T) {
	t.Parallel()
	reg := loadRoot(t)
	cases := []struct {
		category, entity, action, msg string
	}{
		{"", "Invoice", "Exploded",
			"unknown topic billing.InvoiceExploded (hint: Invoice has actions Cancelled, Created, Overdue, Paid)"},
		{"", "invoice", "creatd",
			"unknown topic billing.invoicecreatd (hint: did you mean billing.InvoiceCreated? Invoice has actions Cancelled, Created, Overdue, Paid)"},
		{"", "Invoce", "Created",
			"unknown topic billing.InvoceCreated (hint: did you mean billing.InvoiceCreated?)"},
		{"", "Spaceship", "Launched", "unknown topic billing.SpaceshipLaunched"},
		{"biling", "Invoice", "Paid",
			"unknown topic biling.InvoicePaid (hint: did you mean billing.InvoicePaid?)"},
		{"shipping", "Parcel", "Lost",
			"unknown topic shipping.ParcelLost (hint: known categories: billing, notifications)"},
		// The entity exists, but in another category.
		{"", "Reminder", "Sent", "unknown topic billing.ReminderSent (hint: did you mean notifications.ReminderSent?)"},
		// Separators cannot move letters between entity and action.
		{"", "InvoiceCreated", "", "unknown topic billing.InvoiceCreated (hint: did you mean billing.InvoiceCreated?)"},
	}
	for _, c := range cases {
		tp, err := reg.Lookup(c.category, c.entity, c.action)
		if tp != nil || !errors.Is(err, topics.ErrUnknownTopic) {
			t.Errorf("Lookup(%q, %q, %q) = %v, %v; want ErrUnknownTopic", c.category, c.entity, c.action, tp, err)
			continue
		}
		if err.Error() != c.msg {
			t.Errorf("Lookup(%q, %q, %q):\n got %s\nwant %s", c.category, c.entity, c.action, err, c.msg)
		}
		var uerr *topics.UnknownTopicError
		if !errors.As(err, &uerr) || uerr.Entity != c.entity || uerr.Action != c.action || uerr.Category == "" {
			t.Errorf("UnknownTopicError fields = %+v", uerr)
		}
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	reg := loadRoot(t)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := reg.Lookup("", "payment", "RECEIVED"); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Lookup("Notifications", "reminder", "sent"); err != nil {
			t.Fatal(err)
		}
		if _, ok := reg.Topic("billing.invoice_created"); !ok {
			t.Fatal("no billing.invoice_created")
		}
	})
	if allocs != 0 {
		t.Errorf("Lookup allocates %v times per run, want 0", allocs)
	}
}
