package outboxhttp_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/middleware/internal/mwtest"
)

// TestHostileHeaders sends identity headers no service should trust: huge,
// binary, or a traceparent W3C says to ignore. Ids are refused with 400
// before the handler runs (control characters by net/http itself, the rest
// by the middleware) and nothing is written; a bad traceparent is dropped
// and the request goes through without it.
func TestHostileHeaders(t *testing.T) {
	t.Parallel()
	env := mwtest.NewEnv(t)
	srv := httptest.NewServer(build(env, mwtest.Options{TenantHeader: mwtest.TenantHeader}))
	t.Cleanup(srv.Close)
	// post writes the request by hand: Go's client refuses to send control
	// characters in a header, and an attacker's client does not.
	post := func(id string, h map[string]string) (int, string) {
		t.Helper()
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var req strings.Builder
		fmt.Fprintf(&req, "POST /invoices/%s HTTP/1.1\r\nHost: service\r\nContent-Length: 0\r\nConnection: close\r\n", id)
		for k, v := range h {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
		req.WriteString("\r\n")
		if _, err := io.WriteString(conn, req.String()); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return res.StatusCode, string(body)
	}

	for name, h := range map[string]map[string]string{
		"64 KiB user id":      {"X-User-Id": strings.Repeat("u", 64<<10)},
		"64 KiB job id":       {"X-Job-Id": strings.Repeat("j", 64<<10)},
		"64 KiB tenant":       {mwtest.TenantHeader: strings.Repeat("t", 64<<10)},
		"user id not UTF-8":   {"X-User-Id": "user-\xff\xfe-42"},
		"job id with NUL":     {"X-Job-Id": "job-\x00-1"},
		"tenant with escapes": {mwtest.TenantHeader: "acme\x1b[2J"},
	} {
		if status, body := post("inv-refused", h); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, status, body)
		}
	}
	if rows := env.Rows(t); len(rows) != 0 {
		t.Fatalf("refused requests wrote %d events", len(rows))
	}

	for i, tp := range []string{
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + strings.Repeat("-x", 32<<10),
		"\xff\xfe",
	} {
		id := fmt.Sprintf("inv-trace-%d", i)
		if status, body := post(id, map[string]string{"Traceparent": tp}); status != http.StatusCreated {
			t.Errorf("traceparent %.60q: %d %s, want 201 (an invalid traceparent is ignored)", tp, status, body)
		}
	}
	for _, r := range env.Rows(t) {
		if r.Traceparent != "" {
			t.Errorf("row %+v kept an invalid traceparent", r)
		}
	}
}
