package topics_test

import (
	"testing"
)

func BenchmarkValidate(b *testing.B) {
	reg := loadRoot(b)
	cases := []struct {
		name, entity, action, data string
	}{
		{"small", "Invoice", "Paid", `{"id":"inv-1","amount_cents":1250,"paid_at":"2026-11-23T10:00:00Z"}`},
		{"nested", "Invoice", "Created", `{"id":"inv-1","customer":{"id":"cus-1","name":"Ada Lovelace"},"amount_cents":1250,"currency":"EUR","status":"open","due_date":"2026-12-31"}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			t := lookup(b, reg, "", c.entity, c.action)
			data := []byte(c.data)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := t.Validate(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	reg := loadRoot(b)
	cases := []struct {
		name, category, entity, action string
	}{
		{"exact", "", "Invoice", "Created"},
		{"spelled", "Billing", "PAYMENT", "RECEIVED"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Lookup(c.category, c.entity, c.action); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
