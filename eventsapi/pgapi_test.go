package eventsapi_test

import (
	"testing"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// The ingest, query and access tests run on the Postgres store too.
func init() {
	apiStores = append(apiStores, struct {
		name string
		new  func(t *testing.T) eventsapi.Store
	}{"postgres", func(t *testing.T) eventsapi.Store {
		pool := pgtest.NewPool(t)
		if err := eventsapi.MigratePostgres(t.Context(), pool, nil); err != nil {
			t.Fatal(err)
		}
		st, err := eventsapi.NewPostgresStore(t.Context(), pool, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}})
}
