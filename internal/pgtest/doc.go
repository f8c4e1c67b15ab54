// Package pgtest gives tests, the demo and the benchmarks a real, throwaway
// PostgreSQL server.
//
// # In tests
//
// Call Main from TestMain, then ask for a fresh database per test:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestInsert(t *testing.T) {
//		t.Parallel()
//		pool := pgtest.NewPool(t) // a new, empty database; closed and dropped after the test
//		...
//	}
//
// NewDB returns the URL of a new database instead, for code that opens its own
// connections. Databases are created from template0, so they are empty: run
// the migrations a test needs in the test, or in a helper it calls.
//
// Where the server comes from:
//
//   - If TXOUTBOX_TEST_DATABASE_URL is set (for example
//     postgres://postgres@127.0.0.1:5432/postgres), databases are created on
//     that server, named txoutbox_test_..., and dropped after each test. The
//     role in the URL needs CREATEDB.
//   - Otherwise the first NewDB starts one cluster for the whole test binary:
//     initdb in a temporary directory, then postgres on a free port on
//     127.0.0.1 with fsync, synchronous_commit and full_page_writes off. The
//     binaries are found on PATH, through pg_config, or in the usual install
//     directories (newest version first). Main stops the cluster and removes
//     its directory when the tests end.
//   - With neither, NewDB fails the test with a message saying how to install
//     PostgreSQL. Tests never skip for want of a database.
//
// PostgreSQL refuses to run as root, so as root the server runs as the
// postgres account (or nobody). initdb's output is cached in the system temp
// directory, so only the first cluster on a machine pays for it in full.
//
// A test that panics ends the test binary without running Main's cleanup. On
// Linux the server is started with a parent-death signal, so it shuts down
// with the binary anyway; the directory it leaves behind is removed by the
// next Start on the machine, once the process that owned it is gone.
//
// Main exits the process. To run a check after the tests, such as goleak's,
// use Wrap:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }
//
// # Outside tests
//
// Start runs a cluster of one's own, independent of the shared one and of
// TXOUTBOX_TEST_DATABASE_URL: what the demo uses on a machine with nothing
// configured, and what fault tests use to take the server away under load:
//
//	c, err := pgtest.Start(ctx, &pgtest.Options{Durable: true}) // durable for benchmarks
//	if err != nil {
//		return err
//	}
//	defer c.Close() // stops the server and removes its directory
//	url, err := c.CreateDB(ctx, "demo")
//	...
//	err = c.Stop(ctx)    // fast shutdown: clients are disconnected
//	err = c.Restart(ctx) // same port, same data
//
// When a start fails, the *StartError carries the end of the server's log.
package pgtest
