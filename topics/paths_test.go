package topics

import "testing"

// TestFastPathLoaded checks that loading gives each topic its fast path
// (package fastpath tests the fast path itself).
func TestFastPathLoaded(t *testing.T) {
	t.Parallel()
	reg, err := Load("../topic_definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range reg.Topics() {
		if tp.fast == nil {
			t.Errorf("%s: no fast path", tp.Name)
		}
	}
}

// BenchmarkValidatePaths measures Validate on valid data beside the general
// path alone, which is what Validate cost before it had a fast path.
func BenchmarkValidatePaths(b *testing.B) {
	reg, err := Load("../topic_definitions.yaml")
	if err != nil {
		b.Fatal(err)
	}
	created, _ := reg.Topic("billing.InvoiceCreated")
	data := []byte(`{"id":"inv-1","customer":{"id":"cus-1","name":"Ada Lovelace"},"amount_cents":1250,"currency":"EUR","status":"open","due_date":"2026-12-31"}`)
	for _, path := range []struct {
		name     string
		validate func([]byte) (string, error)
	}{
		{"Validate", created.Validate},
		{"general", created.validateGeneral},
	} {
		b.Run(path.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := path.validate(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
