package pgtest

import (
	"context"
	"fmt"
	"sync"
)

// exampleDBs are the databases ExampleDB created; Wrap's Run drops them.
var exampleDBs struct {
	mu    sync.Mutex
	names []string
}

// ExampleDB creates a fresh, empty database for an Example function, which
// has no testing.TB to clean up after it, and returns its URL. The database
// is dropped when the Run of Wrap (or Main) returns. ExampleDB panics when
// there is no server, with the same message NewDB fails a test with.
func ExampleDB() string {
	ctx := context.Background()
	s, err := shared.get(ctx)
	if err != nil {
		panic(err)
	}
	name := dbName("example", s.seq.Add(1))
	if err := createDB(ctx, s.admin, name); err != nil {
		panic(err)
	}
	exampleDBs.mu.Lock()
	exampleDBs.names = append(exampleDBs.names, name)
	exampleDBs.mu.Unlock()
	u := *s.base
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

// dropExampleDBs drops what ExampleDB created.
func dropExampleDBs() error {
	exampleDBs.mu.Lock()
	names := exampleDBs.names
	exampleDBs.names = nil
	exampleDBs.mu.Unlock()
	if len(names) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	s, err := shared.get(ctx)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := dropDB(ctx, s.admin, name); err != nil {
			return fmt.Errorf("pgtest: example database: %w", err)
		}
	}
	return nil
}
