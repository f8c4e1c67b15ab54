package clitest

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// The demo embeds the example definitions; they must not drift from the
// repository's.
func TestDemoTopicsAreTheExamples(t *testing.T) {
	t.Parallel()
	root, err := os.ReadFile("../../../topic_definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := os.ReadFile("../demo_topics.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, embedded) {
		t.Error("cmd/txoutbox/demo_topics.yaml differs from topic_definitions.yaml: copy it over")
	}
}

// checkDemo checks the summary of a demo run that must have succeeded.
func checkDemo(t *testing.T, r result, requests string, latency bool) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("demo failed:\n%s", r)
	}
	want := []string{
		`(?m)^  requests +` + requests + ` \(0 failed\)`,
		`(?m)^  events published +` + requests + `$`,
		`(?m)^  events delivered +` + requests + ` \(0 duplicates\)`,
		`(?m)^  left in the outbox 0$`,
		`(?m)^  listener +received ` + requests + ` of ` + requests + ` events, 0 out of order or again$`,
		`(?m)^  sink +the events API in memory \(as txoutbox sink\) at http://127\.0\.0\.1:\d+, live page at `,
		`(?m)^every event arrived, exactly once\.$`,
		`(?m)^  mode +wal: a temporary replication slot`, // the test servers run wal_level=logical
		`(?m)^  ` + requests + `/` + requests + ` requests`,
	}
	if latency {
		want = append(want, `(?m)^  latency +p50 [0-9.]+ ms, p99 [0-9.]+ ms`)
	}
	for _, w := range want {
		if !regexp.MustCompile(w).MatchString(r.stdout) {
			t.Errorf("demo output lacks %s:\n%s", w, r.stdout)
		}
	}
}

func TestDemoThrowawayDatabase(t *testing.T) {
	t.Parallel()
	start := time.Now()
	r := runTimeout(t, 2*time.Minute, "", nil, "demo", "--requests", "200")
	checkDemo(t, r, "200", true)
	if !strings.Contains(r.stdout, "throwaway PostgreSQL on 127.0.0.1:") {
		t.Errorf("demo did not start its own database:\n%s", r.stdout)
	}
	t.Logf("demo took %s", time.Since(start))
}

// With --database-url the demo works in a schema of its own and drops it.
func TestDemoOwnDatabase(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	r := runTimeout(t, 2*time.Minute, "", []string{"TXOUTBOX_DATABASE_URL=" + db},
		"demo", "--database-url", withPassword(t, db, "s3cret-demo-pw"), "--format", "briteevents", "--requests", "150", "--concurrency", "4")
	checkDemo(t, r, "150", false)
	if strings.Contains(r.stdout+r.stderr, "s3cret-demo-pw") {
		t.Errorf("demo shows the password:\n%s", r)
	}
	pool, err := pgxpool.New(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var schemas, tables int
	if err := pool.QueryRow(t.Context(), `SELECT
		(SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'txoutbox_demo_%'),
		(SELECT count(*) FROM pg_tables WHERE schemaname = 'public')`).Scan(&schemas, &tables); err != nil {
		t.Fatal(err)
	}
	if schemas != 0 || tables != 0 {
		t.Errorf("demo left %d schemas and %d public tables behind", schemas, tables)
	}
}

func TestDemoFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--requests", "0"}, {"--format", "xml"}, {"--concurrency", "-1"}, {"--timeout", "0s"}} {
		r := run(t, "", nil, append([]string{"demo"}, args...)...)
		if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, args[0]) {
			t.Errorf("demo %v:\n%s", args, r)
		}
	}
}
