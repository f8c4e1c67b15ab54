package topics_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/txoutbox/txoutbox/topics"
)

func ExampleLoad() {
	// A service keeps its definitions in topic_definitions.yaml at its root.
	reg, err := topics.Load("../topic_definitions.yaml")
	if err != nil {
		log.Fatal(err) // every problem in the file, one per line, as file:line:col: message
	}
	for _, t := range reg.Topics() {
		fmt.Printf("%-28s key %s\n", t.Name, t.Key)
	}
	// Output:
	// billing.CustomerCreated      key /id
	// billing.CustomerUpdated      key /id
	// billing.InvoiceCancelled     key /id
	// billing.InvoiceCreated       key /id
	// billing.InvoiceOverdue       key /id
	// billing.InvoicePaid          key /id
	// billing.PaymentReceived      key /invoice_id
	// billing.PaymentRefunded      key /invoice_id
	// notifications.ReminderSent   key /invoice_id
}

func ExampleParse() {
	_, err := topics.Parse("topic_definitions.yaml", []byte(`DefaultCategory: billing
Topics:
  - Action: created
    Entitiy: Invoice
    Description: A new invoice was issued.
    Schema: {type: object, required: [id], properties: {id: {type: strng}}}
`))
	fmt.Println(err)
	// Output:
	// topic_definitions.yaml:3:13: Action "created" must match ^[A-Z][a-z]+$ (hint: one capitalised word in the past tense, e.g. Created)
	// topic_definitions.yaml:4:5: unknown key "Entitiy" in a topic (hint: did you mean "Entity"?)
	// topic_definitions.yaml:6:68: invalid JSON Schema at /properties/id/type: value must be one of 'array', 'boolean', 'integer', 'null', 'number', 'object', 'string' (hint: did you mean "string"?)
}

func ExampleRegistry_Lookup() {
	reg, err := topics.Load("../topic_definitions.yaml")
	if err != nil {
		log.Fatal(err)
	}
	// Any common spelling finds the topic; "" is the default category.
	for _, spelling := range [][3]string{
		{"", "Invoice", "Created"},
		{"billing", "invoice", "created"},
		{"Notifications", "reminder", "SENT"},
	} {
		t, err := reg.Lookup(spelling[0], spelling[1], spelling[2])
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(t.Name)
	}

	_, err = reg.Lookup("", "Invoice", "Refunded")
	fmt.Println(errors.Is(err, topics.ErrUnknownTopic), err)
	// Output:
	// billing.InvoiceCreated
	// billing.InvoiceCreated
	// notifications.ReminderSent
	// true unknown topic billing.InvoiceRefunded (hint: Invoice has actions Cancelled, Created, Overdue, Paid)
}

func ExampleTopic_Validate() {
	reg, err := topics.Load("../topic_definitions.yaml")
	if err != nil {
		log.Fatal(err)
	}
	t, err := reg.Lookup("", "Payment", "Received")
	if err != nil {
		log.Fatal(err)
	}

	key, err := t.Validate([]byte(`{"id": "pay-1", "invoice_id": "inv-7", "amount_cents": 1250}`))
	fmt.Printf("key %q, err %v\n", key, err)

	_, err = t.Validate([]byte(`{"id": "pay-2", "invoice_id": "inv-7", "amount_cents": "12.50"}`))
	var verr *topics.ValidationError
	if errors.As(err, &verr) {
		fmt.Printf("%s %s: %s\n", verr.Topic, verr.Path, verr.Msg)
	}
	// Output:
	// key "inv-7", err <nil>
	// billing.PaymentReceived /amount_cents: got string, want integer
}
