package pgtest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// User is the superuser of the clusters Start creates; they trust every
	// connection from the loopback address, so no password is needed.
	User = "postgres"

	// MaxConnectionsDefault is the max_connections setting of the clusters Start
	// creates: parallel tests each holding a pool need more than the stock 100.
	MaxConnectionsDefault = 200

	// StartTimeoutDefault bounds how long Start and Restart wait for the server
	// to accept connections, when ctx allows longer.
	StartTimeoutDefault = time.Minute

	// StopTimeoutDefault bounds a fast shutdown before Close falls back to an
	// immediate one.
	StopTimeoutDefault = 30 * time.Second

	// dirPrefix names cluster directories, so that stale ones can be found.
	dirPrefix = "txoutbox-pgtest-"
	// ownerFile holds "pid starttime" of the process that owns a cluster directory.
	ownerFile  = "owner"
	dataSubdir = "data"
	logFile    = "server.log"
	// readyPoll is how often Start tries to connect while the server comes up.
	readyPoll = 10 * time.Millisecond
	// startAttempts bounds retries when another process takes the chosen port
	// between picking it and the server binding it.
	startAttempts = 3
)

// Options configures Start. The zero value (or nil) gives a fast, non-durable
// throwaway cluster.
type Options struct {
	// Durable keeps PostgreSQL's durability settings (fsync, synchronous_commit,
	// full_page_writes) at their defaults, for benchmarks whose numbers must mean
	// something. By default they are off: tests never need to survive a power loss.
	Durable bool

	// Logf, if set, receives progress messages (binaries found, cluster started
	// and stopped). Defaults to discarding them.
	Logf func(format string, args ...any)

	// Settings are extra server settings passed as "-c name=value"; they
	// override the defaults, including max_connections (defaults to
	// MaxConnectionsDefault), the durability settings and wal_level (logical,
	// with max_replication_slots and max_wal_senders of 20, for the relay's
	// WAL mode).
	Settings map[string]string

	// BinDirs are the directories searched, in order, for initdb and postgres.
	// Defaults to DefaultBinDirs().
	BinDirs []string

	// TempDir is where the cluster's directory is created, and where stale
	// directories of dead processes are removed from. Defaults to os.TempDir().
	// The server's account must be able to reach it. The cached result of
	// initdb is kept in os.TempDir() regardless.
	TempDir string
}

// Cluster is a PostgreSQL server Start created in a temporary directory. It runs
// as a child of this process, bound to 127.0.0.1 on a port of its own, and dies
// with this process even if that process crashes (on Linux). Its methods are
// safe for concurrent use.
type Cluster struct {
	logf    func(format string, args ...any)
	binDir  string
	dir     string // the cluster's directory: owner marker, log, socket, data
	dataDir string
	logPath string
	args    []string // postgres command-line arguments, reused by Restart
	as      *runAs
	port    int

	lifecycle sync.Mutex // serialises Stop, Restart and Close
	mu        sync.Mutex // guards server and closed
	server    *child     // nil while stopped
	closed    bool
}

// Start creates and starts a new cluster: initdb in a fresh temporary directory,
// then postgres on a free loopback port. It first removes cluster directories
// that processes which have since died left behind. The caller must Close the
// cluster. Start ignores TXOUTBOX_TEST_DATABASE_URL: it always runs its own
// server, which is what a demo or benchmark on a bare machine needs.
func Start(ctx context.Context, opts *Options) (*Cluster, error) {
	if opts == nil {
		opts = &Options{}
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	binDirs := opts.BinDirs
	if len(binDirs) == 0 {
		binDirs = DefaultBinDirs()
	}
	binDir, err := findBinDir(binDirs)
	if err != nil {
		return nil, err
	}
	as, err := serverUser()
	if err != nil {
		return nil, err
	}
	parent := cmp.Or(opts.TempDir, os.TempDir())
	for _, d := range removeStale(parent) {
		logf("pgtest: removed stale cluster directory %s", d)
	}

	dir, err := os.MkdirTemp(parent, dirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("pgtest: create cluster directory: %w", err)
	}
	c := &Cluster{
		logf:    logf,
		binDir:  binDir,
		dir:     dir,
		dataDir: filepath.Join(dir, dataSubdir),
		logPath: filepath.Join(dir, logFile),
		as:      as,
	}
	if err := c.create(ctx, opts); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) create(ctx context.Context, opts *Options) error {
	self := os.Getpid()
	marker := strconv.Itoa(self) + " " + procStartTime(self) + "\n"
	if err := os.WriteFile(filepath.Join(c.dir, ownerFile), []byte(marker), 0o644); err != nil {
		return fmt.Errorf("pgtest: write owner marker: %w", err)
	}
	if err := c.as.chown(c.dir); err != nil {
		return fmt.Errorf("pgtest: hand cluster directory to user %s: %w", c.as.name, err)
	}
	if err := c.as.checkReachable(c.dir); err != nil {
		return err
	}

	began := time.Now()
	cached, err := c.initData(ctx)
	if err != nil {
		return err
	}
	how := "initdb"
	if cached {
		how = "copying the cached initdb result"
	}
	c.logf("pgtest: data directory for %s by %s took %v", c.binDir, how, time.Since(began).Round(time.Millisecond))

	// wal_level=logical so that the relay's WAL mode, which streams from a
	// logical replication slot, is tested on every cluster.
	settings := map[string]string{
		"max_connections":       strconv.Itoa(MaxConnectionsDefault),
		"wal_level":             "logical",
		"max_replication_slots": "20",
		"max_wal_senders":       "20",
	}
	if !opts.Durable {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	maps.Copy(settings, opts.Settings)

	err = c.startOnFreePort(ctx, settings)
	if err != nil && cached {
		// Try once more from a fresh initdb. If that works the cache was
		// damaged and would fail every later Start too, so drop it.
		c.logf("pgtest: start from the cached data directory failed, running initdb: %v", err)
		if err := os.RemoveAll(c.dataDir); err != nil {
			return fmt.Errorf("pgtest: remove data directory: %w", err)
		}
		if err := c.initdb(ctx, c.dataDir); err != nil {
			return err
		}
		if err = c.startOnFreePort(ctx, settings); err == nil {
			_ = os.RemoveAll(c.cacheDir())
		}
	}
	return err
}

// startOnFreePort starts the server on a free port, choosing another if the
// chosen one is taken before the server binds it.
func (c *Cluster) startOnFreePort(ctx context.Context, settings map[string]string) error {
	var err error
	for range startAttempts {
		if c.port, err = freePort(); err != nil {
			return fmt.Errorf("pgtest: pick a port: %w", err)
		}
		c.args = serverArgs(c.dataDir, c.dir, c.port, settings)
		began := time.Now()
		if err = c.start(ctx); err == nil {
			c.logf("pgtest: PostgreSQL on 127.0.0.1:%d (dir %s) ready after %v", c.port, c.dir, time.Since(began).Round(time.Millisecond))
			return nil
		}
		if !strings.Contains(tail(c.logPath), "already in use") {
			return err
		}
		c.logf("pgtest: port %d taken meanwhile, trying another", c.port)
	}
	return err
}

func serverArgs(dataDir, socketDir string, port int, settings map[string]string) []string {
	args := []string{"-D", dataDir, "-k", socketDir, "-h", "127.0.0.1", "-p", strconv.Itoa(port)}
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		args = append(args, "-c", k+"="+settings[k])
	}
	return args
}

// initdb creates a new cluster's data directory at dataDir.
func (c *Cluster) initdb(ctx context.Context, dataDir string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "initdb"),
		"-D", dataDir, "-U", User, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = c.dir
	// TZ spares initdb probing the time zone database.
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	cmd.SysProcAttr = sysProcAttr(c.as, syscall.SIGKILL)
	p, err := spawn(cmd)
	if err == nil {
		<-p.done
		err = p.err
	}
	if err != nil {
		return &StartError{Step: "initdb", Dir: c.dir, Log: lastLines(out.String()), Err: err}
	}
	return nil
}

// start runs postgres and waits until it accepts connections. The caller holds
// no lock; start takes c.mu only to publish the running server.
func (c *Cluster) start(ctx context.Context) error {
	log, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: open server log: %w", err)
	}
	defer log.Close() // the child has its own copy
	cmd := exec.Command(filepath.Join(c.binDir, "postgres"), c.args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	// Immediate shutdown if this process dies without stopping the server.
	cmd.SysProcAttr = sysProcAttr(c.as, sigImmediateShutdown)
	p, err := spawn(cmd)
	if err != nil {
		return &StartError{Step: "start postgres", Dir: c.dir, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, StartTimeoutDefault)
	defer cancel()
	if err := c.waitReady(ctx, p); err != nil {
		_ = p.proc.Signal(sigImmediateShutdown)
		<-p.done
		return &StartError{Step: "start postgres", Dir: c.dir, Log: tail(c.logPath), Err: err}
	}
	c.mu.Lock()
	c.server = p
	c.mu.Unlock()
	return nil
}

func (c *Cluster) waitReady(ctx context.Context, p *child) error {
	url := c.URL("postgres")
	ticker := time.NewTicker(readyPoll)
	defer ticker.Stop()
	for {
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-p.done:
			return fmt.Errorf("server exited: %v", cmp.Or(p.err, errors.New("exit status 0")))
		case <-ctx.Done():
			return fmt.Errorf("wait for server: %w (last attempt: %v)", ctx.Err(), err)
		case <-ticker.C:
		}
	}
}

// Dir returns the cluster's directory; the server log is server.log in it.
func (c *Cluster) Dir() string { return c.dir }

// Port returns the loopback TCP port the server listens on. Restart keeps it.
func (c *Cluster) Port() int { return c.port }

// URL returns the connection URL of database dbname on the cluster, as the
// superuser User over TCP on 127.0.0.1.
func (c *Cluster) URL(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(User),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDB creates database name (an identifier, quoted as needed) and returns
// its URL.
func (c *Cluster) CreateDB(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: connect to create database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := createDB(ctx, conn, name); err != nil {
		return "", err
	}
	return c.URL(name), nil
}

// DropDB drops database name, disconnecting its sessions first. Dropping a
// database that does not exist is not an error.
func (c *Cluster) DropDB(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: connect to drop database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return dropDB(ctx, conn, name)
}

// Stop shuts the server down (PostgreSQL's fast shutdown: open sessions are
// disconnected, committed data is kept) and waits for it to exit, keeping the
// data directory for Restart. If ctx ends first the server is stopped
// immediately. Stopping a stopped cluster does nothing.
func (c *Cluster) Stop(ctx context.Context) error {
	c.lifecycle.Lock()
	defer c.lifecycle.Unlock()
	return c.stop(ctx)
}

func (c *Cluster) stop(ctx context.Context) error {
	c.mu.Lock()
	p := c.server
	c.server = nil
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.proc.Signal(sigFastShutdown); err != nil {
		_ = p.proc.Kill()
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.proc.Signal(sigImmediateShutdown)
		<-p.done
		return fmt.Errorf("pgtest: stop server: %w", ctx.Err())
	}
	c.logf("pgtest: PostgreSQL on 127.0.0.1:%d stopped", c.port)
	return nil
}

// Restart stops the server if it runs and starts it again on the same port with
// the same data and settings, as a fault test needs ("the database went away
// under load and came back").
func (c *Cluster) Restart(ctx context.Context) error {
	c.lifecycle.Lock()
	defer c.lifecycle.Unlock()
	if err := c.stop(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return c.start(ctx)
}

// Close stops the server and removes the cluster's directory. It is safe to
// call more than once; later calls return nil.
func (c *Cluster) Close() error {
	c.lifecycle.Lock()
	defer c.lifecycle.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), StopTimeoutDefault)
	defer cancel()
	stopErr := c.stop(ctx)
	if err := os.RemoveAll(c.dir); err != nil {
		return errors.Join(stopErr, fmt.Errorf("pgtest: remove cluster directory: %w", err))
	}
	return stopErr
}

// child is a process started by spawn.
type child struct {
	proc *os.Process
	done chan struct{} // closed once the process has been waited for
	err  error         // from cmd.Wait; read only after done is closed
}

// spawn starts cmd from a goroutine locked to its own OS thread that lives
// until the process exits. Linux sends a child's parent-death signal when the
// thread that started it ends, not the process, so starting from an arbitrary
// goroutine's thread could kill the server the moment the runtime retires that
// thread. A dedicated thread ends only when this process does, or after the
// child has been reaped.
func spawn(cmd *exec.Cmd) (*child, error) {
	p := &child{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread exits with this goroutine, once the
		// child it started is gone.
		defer close(p.done)
		if err := cmd.Start(); err != nil {
			p.err = err
			started <- err
			return
		}
		p.proc = cmd.Process
		started <- nil
		p.err = cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// tail returns the last lines of the file at path, or "" if it cannot be read.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 4096
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, 0)
	}
	b := make([]byte, max)
	n, _ := f.Read(b)
	return lastLines(string(b[:n]))
}

// lastLines keeps the last 20 lines of s.
func lastLines(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
