package eventsapi

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/testlog"
)

// ticketServer is a server with two subscribe keys, one bound to acme, a
// query key, and a clock the test moves.
func ticketServer(t *testing.T) (*Server, *testlog.Buffer, func(time.Duration)) {
	t.Helper()
	keys, err := NewKeys(
		Key{Name: "page", Rights: []Right{RightSubscribe}, SecretSHA256: HashSecret("page-secret-0123456789")},
		Key{Name: "acme-page", Tenant: "acme", Rights: []Right{RightSubscribe, RightQuery}, SecretSHA256: HashSecret("acme-secret-0123456789")},
	)
	if err != nil {
		t.Fatal(err)
	}
	logger, log := testlog.New()
	s, err := New(&Config{Keys: keys, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var mu sync.Mutex
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	s.access.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	return s, log, func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(d)
	}
}

// issueTicket posts to /api/tickets with the secret and returns the ticket,
// or the status when there is none.
func issueTicket(t *testing.T, s *Server, secret string) (string, int) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/tickets", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusCreated {
		return "", w.Code
	}
	var a ticketAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || a.Ticket == "" || a.ExpiresIn != 60 || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("ticket answer %s, %v", w.Body, err)
	}
	return a.Ticket, w.Code
}

// useTicket authorizes a request for right presenting the ticket, as the
// subscription routes do.
func useTicket(s *Server, method, ticket string, right Right) (*Principal, int) {
	req := httptest.NewRequest(method, "/api/stream?ticket="+ticket, nil)
	w := httptest.NewRecorder()
	p, ok := s.authorize(w, req, right)
	if !ok {
		return nil, w.Code
	}
	return p, http.StatusOK
}

// TestTickets: a ticket opens one subscription, as the key that asked for
// it, within TicketTTL; it is good for nothing else.
func TestTickets(t *testing.T) {
	t.Parallel()
	s, log, advance := ticketServer(t)

	tk, _ := issueTicket(t, s, "acme-secret-0123456789")
	p, status := useTicket(s, http.MethodGet, tk, RightSubscribe)
	if status != http.StatusOK || p.Name != "acme-page" || p.Tenant != "acme" || !p.Can(RightSubscribe) || p.Can(RightQuery) {
		t.Fatalf("first use: %d %+v", status, p)
	}
	if _, status := useTicket(s, http.MethodGet, tk, RightSubscribe); status != http.StatusUnauthorized {
		t.Errorf("second use: %d, want 401", status)
	}

	tk, _ = issueTicket(t, s, "acme-secret-0123456789")
	for _, tc := range []struct {
		method string
		right  Right
	}{{http.MethodGet, RightQuery}, {http.MethodPost, RightSubscribe}} {
		if _, status := useTicket(s, tc.method, tk, tc.right); status != http.StatusUnauthorized {
			t.Errorf("%s for %s: %d, want 401", tc.method, tc.right, status)
		}
	}
	if _, status := useTicket(s, http.MethodGet, tk, RightSubscribe); status != http.StatusOK {
		t.Errorf("refused uses do not spend the ticket: %d", status)
	}

	tk, _ = issueTicket(t, s, "page-secret-0123456789")
	advance(TicketTTL - time.Second)
	if _, status := useTicket(s, http.MethodGet, tk, RightSubscribe); status != http.StatusOK {
		t.Errorf("just in time: %d", status)
	}
	tk, _ = issueTicket(t, s, "page-secret-0123456789")
	advance(TicketTTL)
	if _, status := useTicket(s, http.MethodGet, tk, RightSubscribe); status != http.StatusUnauthorized {
		t.Errorf("expired: %d, want 401", status)
	}
	for _, bad := range []string{"", "x", strings.Repeat("A", 43)} {
		if _, status := useTicket(s, http.MethodGet, bad, RightSubscribe); status != http.StatusUnauthorized {
			t.Errorf("ticket %q: %d, want 401", bad, status)
		}
	}
	if strings.Contains(log.String(), tk) {
		t.Error("a ticket was logged")
	}
}

// TestTicketsBounded: the tickets of one TicketTTL are bounded per key and
// in all, and the bound frees up as they expire.
func TestTicketsBounded(t *testing.T) {
	t.Parallel()
	s, _, advance := ticketServer(t)
	for i := range MaxTicketsPerKey {
		if _, status := issueTicket(t, s, "page-secret-0123456789"); status != http.StatusCreated {
			t.Fatalf("ticket %d: %d", i, status)
		}
	}
	if _, status := issueTicket(t, s, "page-secret-0123456789"); status != http.StatusTooManyRequests {
		t.Errorf("one ticket too many: %d, want 429", status)
	}
	if _, status := issueTicket(t, s, "acme-secret-0123456789"); status != http.StatusCreated {
		t.Errorf("another key: %d, want 201", status)
	}
	for i := range MaxTickets - MaxTicketsPerKey - 1 {
		if _, _, err := s.access.issue(&Principal{Name: fmt.Sprint("k", i%100)}); err != nil {
			t.Fatalf("ticket %d of all: %v", i, err)
		}
	}
	if _, _, err := s.access.issue(&Principal{Name: "fresh"}); err == nil {
		t.Errorf("ticket %d of all: issued", MaxTickets+1)
	}
	advance(TicketTTL)
	if _, status := issueTicket(t, s, "page-secret-0123456789"); status != http.StatusCreated {
		t.Errorf("after they expired: %d", status)
	}
	s.access.mu.Lock()
	defer s.access.mu.Unlock()
	if len(s.access.issued) != 1 || len(s.access.live) != 1 || len(s.access.perKey) != 1 {
		t.Errorf("held after expiry: %d issued, %d live, %d keys", len(s.access.issued), len(s.access.live), len(s.access.perKey))
	}
}

// TestKeyLookup finds each key of many by its secret, and none by anything
// else.
func TestKeyLookup(t *testing.T) {
	t.Parallel()
	var ks []Key
	for i := range 50 {
		ks = append(ks, Key{Name: fmt.Sprint("k", i), Rights: []Right{RightQuery}, SecretSHA256: HashSecret(fmt.Sprint("secret-number-", i))})
	}
	keys, err := NewKeys(ks...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ks {
		if k := keys.lookup(fmt.Sprint("secret-number-", i)); k == nil || k.name != ks[i].Name {
			t.Errorf("secret %d: %v", i, k)
		}
	}
	for _, s := range []string{"", "secret-number-", "secret-number-50", "secret-number-1 "} {
		if k := keys.lookup(s); k != nil {
			t.Errorf("%q found %s", s, k.name)
		}
	}
}

// TestKeyLookupConstantTime holds lookup to its shape: the presented secret
// is hashed and compared with every key's hash by subtle.ConstantTimeCompare,
// and the loop neither returns nor breaks at a match, so the time taken
// does not tell which key matched or how much of a hash did. A timing
// measurement would be flaky on a shared machine; the shape is what keeps
// the property.
func TestKeyLookupConstantTime(t *testing.T) {
	t.Parallel()
	f, err := parser.ParseFile(token.NewFileSet(), "auth.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var lookup *ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "lookup" && fd.Recv != nil {
			lookup = fd
		}
	}
	if lookup == nil {
		t.Fatal("no method lookup in auth.go")
	}
	calls := map[string]bool{}
	loops := 0
	ast.Inspect(lookup.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			switch fun := n.Fun.(type) {
			case *ast.Ident:
				calls[fun.Name] = true
			case *ast.SelectorExpr:
				if x, ok := fun.X.(*ast.Ident); ok {
					calls[x.Name+"."+fun.Sel.Name] = true
				}
			}
		case *ast.BinaryExpr:
			if n.Op == token.EQL || n.Op == token.NEQ {
				t.Errorf("lookup compares with %s, which may stop at the first differing byte", n.Op)
			}
		case *ast.RangeStmt:
			loops++
			ast.Inspect(n.Body, func(m ast.Node) bool {
				switch m := m.(type) {
				case *ast.ReturnStmt:
					t.Error("lookup returns from inside its loop")
				case *ast.BranchStmt:
					t.Errorf("lookup's loop has a %s", m.Tok)
				case *ast.IfStmt:
					t.Error("lookup's loop branches")
				}
				return true
			})
		}
		return true
	})
	for _, want := range []string{"HashSecret", "subtle.ConstantTimeCompare", "subtle.ConstantTimeSelect"} {
		if !calls[want] {
			t.Errorf("lookup does not call %s", want)
		}
	}
	if calls["bytes.Equal"] || loops != 1 {
		t.Errorf("lookup calls %v in %d loops, want one loop and no bytes.Equal", calls, loops)
	}
}
