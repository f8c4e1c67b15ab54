package pgtest_test

import (
	"testing"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// BenchmarkNewDB measures creating a test database on the shared server (set
// TXOUTBOX_TEST_DATABASE_URL to measure another). The databases are dropped
// when the benchmark ends, outside the timing.
func BenchmarkNewDB(b *testing.B) {
	pgtest.NewDB(b) // start the shared server outside the timing
	for b.Loop() {
		pgtest.NewDB(b)
	}
}
