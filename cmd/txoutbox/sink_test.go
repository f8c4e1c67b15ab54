package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/sinkserver"
	"github.com/txoutbox/txoutbox/internal/wire"
)

// topicsFile is the repository's example definitions.
const topicsFile = "../../topic_definitions.yaml"

var sinkURLRE = regexp.MustCompile(`msg="sink listening" url=(\S+)`)

// sinkURL waits for the sink's "listening" log line and returns its URL.
func sinkURL(t *testing.T, stderr *lockedBuffer) string {
	t.Helper()
	var url string
	waitFor(t, 10*time.Second, "the sink to listen", func() bool {
		if m := sinkURLRE.FindStringSubmatch(stderr.String()); m != nil {
			url = m[1]
		}
		return url != ""
	})
	return url
}

func invoiceCE(id, invoice string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"billing-service","type":"billing.InvoiceCreated","jobid":"job-1",`+
		`"actorid":"user-4711","actortype":"user","data":{"id":%q,"customer":{"id":"c-1","name":"Ada"},`+
		`"amount_cents":1250,"currency":"EUR","status":"open","due_date":"2026-12-01"}}`, id, invoice)
}

func postSink(t *testing.T, url, contentType, body string, header map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// checkSinkContract posts what the issue asks the local events API to get
// right: a batch is accepted, a duplicate is harmless (409 alone, 2xx in a
// batch), bad JSON is 400, a schema failure 422. It returns how many events
// should now be stored.
func checkSinkContract(t *testing.T, url string) int {
	t.Helper()
	batch := "[" + invoiceCE("ev-1", "inv-1") + "," + invoiceCE("ev-2", "inv-2") + "]"
	brite := `{"category":"billing","entity":"Invoice","action":"Paid","data":{"id":"inv-1","amount_cents":1250,"paid_at":"2026-11-23T10:00:00Z"},"actor":{"id":"user-4711","type":"user"}}`
	for _, tc := range []struct {
		what, path, ct, body string
		header               map[string]string
		want                 int
	}{
		{"batch", "/", wire.ContentTypeCloudEventBatch, batch, nil, http.StatusAccepted},
		{"batch again", "/", wire.ContentTypeCloudEventBatch, batch, nil, http.StatusAccepted},
		{"duplicate event", "/", wire.ContentTypeCloudEvent, invoiceCE("ev-1", "inv-1"), nil, http.StatusConflict},
		{"bad JSON", "/", wire.ContentTypeCloudEventBatch, `[{"specversion":`, nil, http.StatusBadRequest},
		{"schema failure", "/", wire.ContentTypeCloudEventBatch, "[" + strings.Replace(invoiceCE("ev-3", "inv-3"), `"EUR"`, `"DOGE"`, 1) + "]", nil, http.StatusUnprocessableEntity},
		{"bc-events", "/events", "application/json", brite, map[string]string{wire.HeaderIdempotencyKey: "ev-4", wire.HeaderJobID: "job-2"}, http.StatusCreated},
		{"bc-events duplicate", "/events", "application/json", brite, map[string]string{wire.HeaderIdempotencyKey: "ev-4"}, http.StatusConflict},
		{"bc-events bad JSON", "/events", "application/json", `{"category"`, nil, http.StatusBadRequest},
	} {
		if got := postSink(t, url+tc.path, tc.ct, tc.body, tc.header); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.what, got, tc.want)
		}
	}
	return 3
}

func TestSinkHelp(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if err := dispatch(t.Context(), []string{"sink", "--help"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--addr address", "TXOUTBOX_ADDR", "--topics file", "--jsonl file", "Examples:", "/api/stats", "409",
		"events API in memory", "live page", "/api/stream", "txoutbox serve"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("txoutbox sink --help lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := dispatch(t.Context(), []string{"--help"}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "sink") {
		t.Errorf("txoutbox --help does not list sink: %v\n%s", err, out.String())
	}
}

// TestSinkDefaultPort checks that the sink's default port is none that the
// examples or the relay's admin endpoints listen on, so that all of them
// run side by side on one machine.
func TestSinkDefaultPort(t *testing.T) {
	t.Parallel()
	port := func(addr string) string {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	taken := map[string]string{}
	rfs := flag.NewFlagSet("relay", flag.ContinueOnError)
	new(relayFlags).register(rfs)
	taken[port(rfs.Lookup("admin-addr").DefValue)] = "the relay's --admin-addr"
	files, err := filepath.Glob("../../examples/*/main.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Addresses, not URLs: an example that calls the sink names its
		// port in a URL.
		for _, m := range regexp.MustCompile(`(?:^|[^/])127\.0\.0\.1:(\d+)`).FindAllStringSubmatch(string(src), -1) {
			taken[m[1]] = f
		}
	}
	sfs := flag.NewFlagSet("sink", flag.ContinueOnError)
	new(sinkFlags).register(sfs)
	if p := port(sfs.Lookup("addr").DefValue); taken[p] != "" {
		t.Errorf("the sink's default port %s is also the port of %s", p, taken[p])
	}
}

func TestSinkErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sink", "--topics", "no/such/file.yaml"}, "sink: --topics:"},
		{[]string{"sink", "--topics", "sink.go"}, "sink: --topics:"},
		{[]string{"sink", "--addr", "127.0.0.1:99999"}, "sink: --addr:"},
		{[]string{"sink", "--addr", "0.0.0.0:0"}, "serves this machine only"},
		{[]string{"sink", "--fail-status", "200"}, "--fail-status: 200"},
		{[]string{"sink", "--jsonl", t.TempDir()}, "sink: --jsonl:"},
	} {
		err := dispatch(t.Context(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("txoutbox %s = %v, want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// TestSinkInProcess runs txoutbox sink in process: the contract holds, one
// line is printed per stored event, the JSONL file gets them, and
// cancellation stops it cleanly even with the live page's stream open.
func TestSinkInProcess(t *testing.T) {
	t.Parallel()
	jsonl := filepath.Join(t.TempDir(), "events.jsonl")
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- dispatch(ctx, []string{"sink", "--addr", "127.0.0.1:0", "--topics", topicsFile, "--jsonl", jsonl}, &stdout, &stderr)
	}()
	url := sinkURL(t, &stderr)
	if !strings.Contains(stderr.String(), " from "+topicsFile) {
		t.Errorf("start-up log does not say which topics are checked:\n%s", stderr.String())
	}

	// An open stream must not hold up shutdown.
	streamCtx, stopStream := context.WithCancel(context.Background())
	defer stopStream()
	req, _ := http.NewRequestWithContext(streamCtx, http.MethodGet, url+"/api/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	n := checkSinkContract(t, url)
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != n || !strings.Contains(lines[0], "#1 billing.InvoiceCreated key=inv-1 job=job-1 actor=user:user-4711 id=ev-1 (cloudevents)") {
		t.Errorf("stdout has %d lines, want %d:\n%s", len(lines), n, stdout.String())
	}
	var st sinkserver.Stats
	r, err := http.Get(url + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(r.Body).Decode(&st)
	r.Body.Close()
	if st.Accepted != int64(n) || st.Duplicates != 4 || st.Rejected != 1 || st.BadRequests != 2 {
		t.Errorf("stats %+v", st)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("sink = %v\n%s", err, stderr.String())
	}
	f, err := os.Open(jsonl)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stored []eventsapi.Event
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var ev eventsapi.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("JSONL line %q: %v", sc.Text(), err)
		}
		stored = append(stored, ev)
	}
	if len(stored) != n || stored[2].ID != "ev-4" || stored[2].Topic != "billing.InvoicePaid" || stored[2].JobID != "job-2" || stored[2].Position != 3 {
		t.Errorf("JSONL holds %+v", stored)
	}
}

// TestSinkProcess runs the built binary: the contract holds and SIGTERM
// stops it with exit status 0.
func TestSinkProcess(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	var stdout lockedBuffer
	cmd, stderr := startSink(t, bin, &stdout, "sink", "--addr", "127.0.0.1:0", "--topics", topicsFile)
	url := sinkURL(t, stderr)
	n := checkSinkContract(t, url)
	waitFor(t, 5*time.Second, "a line per event", func() bool { return strings.Count(stdout.String(), "\n") == n })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("txoutbox sink after SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "sink stopped") {
		t.Errorf("no shutdown line:\n%s", stderr.String())
	}
}

// startSink starts the binary; the sink has no admin address to wait for.
func startSink(t *testing.T, bin string, stdout io.Writer, args ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	return cmd, &stderr
}
