package pgtest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// startCluster starts a cluster of the test's own and closes it at cleanup.
func startCluster(t *testing.T, opts *pgtest.Options) *pgtest.Cluster {
	t.Helper()
	if opts == nil {
		opts = &pgtest.Options{}
	}
	opts.Logf = t.Logf
	c, err := pgtest.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// tempDir returns a directory for cluster directories that the server's
// account can reach: t.TempDir() and its parent are private to the test's user.
func tempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func show(t *testing.T, conn *pgx.Conn, setting string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(t.Context(), "SELECT current_setting($1)", setting).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestClusterLifecycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := startCluster(t, &pgtest.Options{Settings: map[string]string{"work_mem": "8MB"}})

	url, err := c.CreateDB(ctx, "Lifecycle Test")
	if err != nil {
		t.Fatal(err)
	}
	if url != c.URL("Lifecycle Test") {
		t.Errorf("CreateDB URL %q, URL() %q", url, c.URL("Lifecycle Test"))
	}
	conn := connect(t, url)
	for setting, want := range map[string]string{
		"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
		"max_connections": strconv.Itoa(pgtest.MaxConnectionsDefault), "work_mem": "8MB",
		"listen_addresses": "127.0.0.1", "port": strconv.Itoa(c.Port()),
	} {
		if got := show(t, conn, setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before restart')"); err != nil {
		t.Fatal(err)
	}

	port := c.Port()
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Port() != port {
		t.Errorf("port changed on restart: %d -> %d", port, c.Port())
	}
	var v string
	if err := connect(t, url).QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil {
		t.Fatalf("read after restart: %v", err)
	}
	if v != "before restart" {
		t.Errorf("after restart v = %q", v)
	}

	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := c.CreateDB(ctx, "while_stopped"); err == nil {
		t.Error("CreateDB on a stopped cluster succeeded")
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatalf("Restart from stopped: %v", err)
	}
	if err := c.DropDB(ctx, "Lifecycle Test"); err != nil {
		t.Fatal(err)
	}
	if err := c.DropDB(ctx, "Lifecycle Test"); err != nil {
		t.Fatalf("dropping a missing database: %v", err)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster directory after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Restart(ctx); !errors.Is(err, pgtest.ErrClosed) {
		t.Errorf("Restart after Close: %v, want ErrClosed", err)
	}
	if conn, err := pgx.Connect(ctx, c.URL("postgres")); err == nil {
		_ = conn.Close(ctx)
		t.Error("server still accepts connections after Close")
	}
}

func TestStartDurable(t *testing.T) {
	t.Parallel()
	c := startCluster(t, &pgtest.Options{Durable: true})
	conn := connect(t, c.URL("postgres"))
	for _, setting := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
		if got := show(t, conn, setting); got != "on" {
			t.Errorf("Durable: %s = %q, want on", setting, got)
		}
	}
}

func TestStartWithoutBinaries(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	_, err := pgtest.Start(t.Context(), &pgtest.Options{BinDirs: []string{empty}, TempDir: t.TempDir()})
	var nf *pgtest.NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("err = %v, want *NotFoundError", err)
	}
	if len(nf.Searched) != 1 || nf.Searched[0] != empty {
		t.Errorf("Searched = %v, want [%s]", nf.Searched, empty)
	}
	for _, want := range []string{"apt-get install postgresql", "brew install postgresql@15", pgtest.EnvURL} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %s", want, err)
		}
	}
}

func TestStartFailureIncludesServerLog(t *testing.T) {
	t.Parallel()
	_, err := pgtest.Start(t.Context(), &pgtest.Options{
		Settings: map[string]string{"shared_buffers": "not-a-size"},
		TempDir:  tempDir(t),
	})
	var se *pgtest.StartError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *StartError", err)
	}
	if se.Step != "start postgres" || !strings.Contains(se.Log, "shared_buffers") {
		t.Errorf("Step = %q, Log = %q; want the server's complaint about shared_buffers", se.Step, se.Log)
	}
	if _, err := os.Stat(se.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed start left its directory: %v", err)
	}
}

// crashDirEnv tells a re-executed test binary to start a cluster in the named
// directory and then panic, as a crashing test does.
const crashDirEnv = "PGTEST_CRASH_DIR"

func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return // runs only as the child of TestCrashedTestBinary
	}
	c, err := pgtest.Start(context.Background(), &pgtest.Options{TempDir: dir})
	if err != nil {
		fmt.Println("start:", err)
		os.Exit(3)
	}
	pidFile, err := os.ReadFile(filepath.Join(c.Dir(), "data", "postmaster.pid"))
	if err != nil {
		fmt.Println("read postmaster.pid:", err)
		os.Exit(3)
	}
	pid, _, _ := strings.Cut(string(pidFile), "\n")
	fmt.Println("CLUSTER", c.Dir(), pid)
	panic("a test panics with a cluster running")
}

func TestCrashedTestBinary(t *testing.T) {
	t.Parallel()
	parent := tempDir(t)
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+parent)
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || !strings.Contains(string(out), "a test panics") {
		t.Fatalf("helper did not panic: %v\n%s", err, out)
	}
	_, after, ok := strings.Cut(string(out), "CLUSTER ")
	var crashed string
	var pid int
	if ok {
		_, err = fmt.Sscan(after, &crashed, &pid)
	}
	if !ok || err != nil {
		t.Fatalf("helper printed no cluster directory and pid (%v):\n%s", err, out)
	}
	// The server got SIGQUIT when the helper died; give it a bounded while to go.
	deadline := time.Now().Add(20 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("server %d outlived its crashed test binary", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The next Start in the same place removes what the crashed one left.
	startCluster(t, &pgtest.Options{TempDir: parent})
	if _, err := os.Stat(crashed); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale cluster directory %s not removed: %v", crashed, err)
	}
}

// running reports whether pid is a live, non-zombie process.
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && !strings.HasPrefix(strings.TrimSpace(string(stat[i+1:])), "Z")
}
