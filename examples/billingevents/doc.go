// Package billingevents is what `txoutbox gen` makes of the example
// topic_definitions.yaml: typed publishers for the billing service's events,
// so that a mistyped field is a compile error instead of a validation error
// at run time.
//
//	sess := client.UserSession(userID, jobID)
//	err := billingevents.InvoiceCreated(ctx, sess, billingevents.Invoice{
//		ID:          "inv-1001",
//		Customer:    billingevents.InvoiceCustomer{ID: "cus-7", Name: "Ada Lovelace"},
//		AmountCents: 1250,
//		Currency:    billingevents.InvoiceCurrencyEUR,
//		Status:      billingevents.InvoiceStatusOpen,
//		DueDate:     "2026-12-31",
//	})
//	err = sess.Flush(ctx, tx)
//
// The generated file is topics_gen.go; regenerate it with `go generate` after
// changing the definitions.
package billingevents

//go:generate go run ../../cmd/txoutbox gen --package billingevents --out . ../../topic_definitions.yaml
