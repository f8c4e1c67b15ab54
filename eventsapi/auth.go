package eventsapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/txoutbox/txoutbox/internal/ingest"
)

// Right is what a key allows.
type Right string

// The rights a key may hold.
const (
	RightIngest    Right = "ingest"    // post events (the relay)
	RightSubscribe Right = "subscribe" // live subscriptions
	RightQuery     Right = "query"     // the query API
	RightJobs      Right = "jobs"      // enrol for events, update jobs, report progress
)

// rightSet is a set of rights, one bit each.
type rightSet uint8

const (
	bitIngest rightSet = 1 << iota
	bitSubscribe
	bitQuery
	bitJobs
	allRights = bitIngest | bitSubscribe | bitQuery | bitJobs
)

var rightBits = map[Right]rightSet{RightIngest: bitIngest, RightSubscribe: bitSubscribe, RightQuery: bitQuery, RightJobs: bitJobs}

func (rs rightSet) has(r Right) bool { return rs&rightBits[r] != 0 }

// ErrInvalidKeys is wrapped by the errors of ParseKeys, LoadKeys and
// NewKeys about the keys given.
var ErrInvalidKeys = errors.New("eventsapi: invalid keys")

// MinSecretBytes is the shortest secret accepted where the server can see
// it (secret, secret_env). Secrets are meant to be random, e.g. from
// "openssl rand -base64 32".
const MinSecretBytes = 16

// Key is one credential: a name for logs, the SHA-256 of the secret its
// holder presents, the tenant it is bound to and its rights.
type Key struct {
	// Name names the key in logs and error answers; never the secret.
	Name string
	// Tenant binds the key to one tenant's events; "" is every tenant.
	Tenant string
	// Rights are what the key allows.
	Rights []Right
	// SecretSHA256 is the SHA-256 of the secret (see HashSecret). The
	// server never holds the secret itself.
	SecretSHA256 [sha256.Size]byte
	// ExpiresAt, when set, is when the key stops being accepted. Open
	// gRPC streams of the key are asked to reauthenticate before then
	// (reconnect_before with reauthenticate), and end then.
	ExpiresAt time.Time
}

// String names the key, leaving its hash out.
func (k Key) String() string { return fmt.Sprintf("eventsapi.Key(%s)", k.Name) }

// HashSecret returns the SHA-256 of a secret, as Key.SecretSHA256 holds it
// and as "printf %s SECRET | sha256sum" prints it in hex.
func HashSecret(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// Keys are the credentials a Server accepts. They are immutable and safe
// for concurrent use. A nil *Keys in Config is development mode.
type Keys struct {
	keys     []key
	warnings []string
	plain    bool // some secret was written in plain text
}

type key struct {
	name    string
	tenant  string
	rights  rightSet
	hash    [sha256.Size]byte
	expires time.Time
}

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// NewKeys returns the Keys of the keys given. Names must be unique and
// read as [A-Za-z0-9][A-Za-z0-9._-]* (at most 64 characters), secrets
// distinct, and every key must hold at least one right.
func NewKeys(keys ...Key) (*Keys, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrInvalidKeys)
	}
	ks := &Keys{keys: make([]key, 0, len(keys))}
	for i, k := range keys {
		if !keyNameRE.MatchString(k.Name) {
			return nil, fmt.Errorf("%w: key %d: name %q: want letters, digits, '.', '_' or '-', at most 64", ErrInvalidKeys, i, k.Name)
		}
		if len(k.Tenant) > ingest.MaxTenantBytes || strings.ContainsFunc(k.Tenant, isControl) {
			return nil, fmt.Errorf("%w: key %q: tenant: at most %d bytes, no control characters", ErrInvalidKeys, k.Name, ingest.MaxTenantBytes)
		}
		if k.SecretSHA256 == ([sha256.Size]byte{}) {
			return nil, fmt.Errorf("%w: key %q: no secret hash", ErrInvalidKeys, k.Name)
		}
		if len(k.Rights) == 0 {
			return nil, fmt.Errorf("%w: key %q: no rights (want some of %s, %s, %s, %s)", ErrInvalidKeys, k.Name, RightIngest, RightSubscribe, RightQuery, RightJobs)
		}
		var rs rightSet
		for _, r := range k.Rights {
			bit, ok := rightBits[r]
			if !ok {
				return nil, fmt.Errorf("%w: key %q: unknown right %q (want %s, %s, %s or %s)", ErrInvalidKeys, k.Name, r, RightIngest, RightSubscribe, RightQuery, RightJobs)
			}
			rs |= bit
		}
		for _, o := range ks.keys {
			switch {
			case o.name == k.Name:
				return nil, fmt.Errorf("%w: two keys named %q", ErrInvalidKeys, k.Name)
			case o.hash == k.SecretSHA256:
				return nil, fmt.Errorf("%w: keys %q and %q have the same secret", ErrInvalidKeys, o.name, k.Name)
			}
		}
		ks.keys = append(ks.keys, key{name: k.Name, tenant: k.Tenant, rights: rs, hash: k.SecretSHA256, expires: k.ExpiresAt})
	}
	return ks, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Len returns the number of keys.
func (k *Keys) Len() int { return len(k.keys) }

// Warnings returns what ParseKeys or LoadKeys found unsafe but accepted,
// such as secrets written in plain text; the server logs them.
func (k *Keys) Warnings() []string { return slices.Clone(k.warnings) }

// String names the keys, never their secrets. (A value receiver, so that
// printing a Keys value does not show the hashes either.)
func (k Keys) String() string {
	names := make([]string, len(k.keys))
	for i := range k.keys {
		names[i] = k.keys[i].name
	}
	return "eventsapi.Keys(" + strings.Join(names, ", ") + ")"
}

// LogValue logs the keys as String does.
func (k Keys) LogValue() slog.Value { return slog.StringValue(k.String()) }

// lookup returns the key whose secret is secret, or nil. It hashes the
// secret and compares the hash with every key's in constant time, without
// stopping at a match, so that neither which key matched nor how much of
// a hash did shows in the time it takes.
func (k *Keys) lookup(secret string) *key {
	h := HashSecret(secret)
	match := -1
	for i := range k.keys {
		eq := subtle.ConstantTimeCompare(h[:], k.keys[i].hash[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return nil
	}
	return &k.keys[match]
}

// keysFile is the YAML of a keys file.
type keysFile struct {
	Version int            `yaml:"version"`
	Keys    []keysFileItem `yaml:"keys"`
}

type keysFileItem struct {
	Name         string   `yaml:"name"`
	Tenant       string   `yaml:"tenant"`
	Rights       []string `yaml:"rights"`
	SecretSHA256 string   `yaml:"secret_sha256"`
	SecretEnv    string   `yaml:"secret_env"`
	Secret       string   `yaml:"secret"`
	// ExpiresAt is an RFC 3339 time; empty: the key does not expire.
	ExpiresAt string `yaml:"expires_at"`
}

// ParseKeys reads keys from YAML:
//
//	version: 1
//	keys:
//	  - name: relay                  # for logs; never the secret
//	    secret_sha256: 5e88…         # hex SHA-256 of the secret (preferred)
//	    rights: [ingest]
//	  - name: acme-dashboard
//	    tenant: acme                 # only acme's events; omit for all
//	    secret_env: ACME_EVENTS_KEY  # the secret, from this environment variable
//	    rights: [subscribe, query]
//	  - name: local-tools
//	    secret: "…"                  # the secret in plain text: accepted, warned
//	    rights: [ingest, subscribe, query]
//	    expires_at: 2027-01-01T00:00:00Z  # optional: refused from then on
//
// Each key has exactly one of secret_sha256, secret_env and secret. The
// server keeps only hashes; a plain secret in the file is accepted with a
// warning (Warnings), and must, like one read from the environment, be at
// least MinSecretBytes long. Errors wrap ErrInvalidKeys and name keys by
// name, never by secret.
func ParseKeys(data []byte) (*Keys, error) {
	var f keysFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKeys, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("%w: version: %d, want 1", ErrInvalidKeys, f.Version)
	}
	keys := make([]Key, len(f.Keys))
	var warnings []string
	plain := false
	for i, it := range f.Keys {
		name := it.Name
		if name == "" {
			name = fmt.Sprint("#", i)
		}
		k := Key{Name: it.Name, Tenant: it.Tenant}
		if it.ExpiresAt != "" {
			t, err := time.Parse(time.RFC3339, it.ExpiresAt)
			if err != nil {
				return nil, fmt.Errorf("%w: key %q: expires_at: %q is not an RFC 3339 time (e.g. 2027-01-02T15:04:05Z)", ErrInvalidKeys, name, it.ExpiresAt)
			}
			k.ExpiresAt = t
		}
		for _, r := range it.Rights {
			k.Rights = append(k.Rights, Right(r))
		}
		set := 0
		for _, s := range []string{it.SecretSHA256, it.SecretEnv, it.Secret} {
			if s != "" {
				set++
			}
		}
		if set != 1 {
			return nil, fmt.Errorf("%w: key %q: give exactly one of secret_sha256, secret_env and secret", ErrInvalidKeys, name)
		}
		switch {
		case it.SecretSHA256 != "":
			b, err := hex.DecodeString(it.SecretSHA256)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("%w: key %q: secret_sha256 is not 64 hex digits", ErrInvalidKeys, name)
			}
			k.SecretSHA256 = [sha256.Size]byte(b)
		case it.SecretEnv != "":
			secret, ok := os.LookupEnv(it.SecretEnv)
			switch {
			case !ok || secret == "":
				return nil, fmt.Errorf("%w: key %q: environment variable %s is not set", ErrInvalidKeys, name, it.SecretEnv)
			case len(secret) < MinSecretBytes:
				return nil, fmt.Errorf("%w: key %q: the secret in %s is shorter than %d bytes", ErrInvalidKeys, name, it.SecretEnv, MinSecretBytes)
			}
			k.SecretSHA256 = HashSecret(secret)
		default:
			if len(it.Secret) < MinSecretBytes {
				return nil, fmt.Errorf("%w: key %q: secret is shorter than %d bytes", ErrInvalidKeys, name, MinSecretBytes)
			}
			k.SecretSHA256 = HashSecret(it.Secret)
			plain = true
			warnings = append(warnings, fmt.Sprintf("key %q: the secret is written in plain text; store its SHA-256 (secret_sha256) or read it from the environment (secret_env) instead", name))
		}
		keys[i] = k
	}
	ks, err := NewKeys(keys...)
	if err != nil {
		return nil, err
	}
	ks.warnings, ks.plain = warnings, plain
	return ks, nil
}

// LoadKeys reads a keys file (see ParseKeys). A file that holds plain
// secrets and that other users may read gets a warning too.
func LoadKeys(path string) (*Keys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	ks, err := ParseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && ks.plain && fi.Mode().Perm()&0o077 != 0 {
		ks.warnings = append(ks.warnings, fmt.Sprintf("%s holds plain secrets and other users may read it (mode %s); chmod 600 it", path, fi.Mode().Perm()))
	}
	return ks, nil
}

// Principal is who a request was authenticated as.
type Principal struct {
	// Name names the key, for logs; never the secret.
	Name string
	// Tenant restricts the principal to one tenant's events; "" is every
	// tenant.
	Tenant string
	// Expires is when the key expires; zero when it does not. Streams opened
	// with it are asked to reauthenticate before then, and end then.
	Expires time.Time
	rights  rightSet
}

// Can reports whether the principal holds right.
func (p *Principal) Can(right Right) bool { return p.rights.has(right) }

type principalKey struct{}

func withPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principalFrom returns the principal a route's wrapper authenticated.
func principalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Tickets let a browser's EventSource, which cannot send headers, open a
// stream without putting a key in the URL.
const (
	// TicketTTL is how long a ticket is valid.
	TicketTTL = 60 * time.Second
	// MaxTickets bounds the tickets issued within one TicketTTL, over all
	// keys; MaxTicketsPerKey for one key. Beyond them POST /api/tickets
	// answers 429.
	MaxTickets       = 10_000
	MaxTicketsPerKey = 1_000
)

// access is a server's keys and the tickets it issued.
type access struct {
	keys   *Keys
	logger *slog.Logger
	now    func() time.Time // tests move it

	mu     sync.Mutex
	live   map[[sha256.Size]byte]ticket // by SHA-256 of the ticket
	issued []issuedTicket               // in order of issue, so of expiry
	perKey map[string]int               // tickets in issued, by key
}

type ticket struct {
	principal Principal
	expires   time.Time
}

type issuedTicket struct {
	hash    [sha256.Size]byte
	key     string
	expires time.Time
}

var errTooManyTickets = errors.New("too many tickets")

// expire forgets the tickets past their time. Callers hold mu.
func (a *access) expire(now time.Time) {
	n := 0
	for n < len(a.issued) && !a.issued[n].expires.After(now) {
		it := a.issued[n]
		delete(a.live, it.hash)
		if a.perKey[it.key]--; a.perKey[it.key] <= 0 {
			delete(a.perKey, it.key)
		}
		n++
	}
	a.issued = a.issued[n:]
}

// issue returns a new ticket for p, good for one subscription within
// TicketTTL.
func (a *access) issue(p *Principal) (string, time.Time, error) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails
	tk := base64.RawURLEncoding.EncodeToString(b[:])
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expire(now)
	if len(a.issued) >= MaxTickets || a.perKey[p.Name] >= MaxTicketsPerKey {
		return "", time.Time{}, errTooManyTickets
	}
	exp := now.Add(TicketTTL)
	h := sha256.Sum256([]byte(tk))
	a.live[h] = ticket{principal: Principal{Name: p.Name, Tenant: p.Tenant, rights: bitSubscribe}, expires: exp}
	a.issued = append(a.issued, issuedTicket{hash: h, key: p.Name, expires: exp})
	a.perKey[p.Name]++
	return tk, exp, nil
}

// redeem returns the principal of a ticket and spends it; false when the
// ticket is unknown, spent or expired. Tickets are looked up by their
// SHA-256, so the lookup's timing tells nothing of a live ticket.
func (a *access) redeem(tk string) (*Principal, bool) {
	h := sha256.Sum256([]byte(tk))
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expire(now)
	t, ok := a.live[h]
	if !ok {
		return nil, false
	}
	delete(a.live, h)
	return &t.principal, true
}

// routeAccess sets up the keys and the ticket route.
func (s *Server) routeAccess() {
	s.access = &access{
		keys:   s.cfg.Keys,
		logger: s.cfg.Logger,
		now:    time.Now,
		live:   make(map[[sha256.Size]byte]ticket),
		perKey: make(map[string]int),
	}
	switch {
	case s.cfg.Keys == nil && s.cfg.Development:
		s.cfg.Logger.Info("events API: development mode: serving loopback requests only, with every right over every tenant")
	case s.cfg.Keys == nil:
		s.cfg.Logger.Warn("events API: NO API KEYS CONFIGURED: development mode, serving loopback requests only, with every right over every tenant; configure keys before serving anyone else")
	}
	for _, w := range s.cfg.Keys.warningsOrNil() {
		s.cfg.Logger.Warn("events API: keys: " + w)
	}
	s.mux.HandleFunc("POST /api/tickets", s.handleTicket)
}

func (k *Keys) warningsOrNil() []string {
	if k == nil {
		return nil
	}
	return k.warnings
}

// ticketAnswer is the answer of POST /api/tickets.
type ticketAnswer struct {
	Ticket    string    `json:"ticket"`
	ExpiresAt time.Time `json:"expires_at"`
	ExpiresIn int       `json:"expires_in"` // seconds
}

// handleTicket issues a ticket to a caller holding the subscribe right. It
// takes a key only, never a ticket, so a ticket cannot be renewed by
// itself.
func (s *Server) handleTicket(w http.ResponseWriter, r *http.Request) {
	p, ok := s.authenticate(w, r, RightSubscribe, false)
	if !ok {
		return
	}
	tk, exp, err := s.access.issue(p)
	if err != nil {
		s.cfg.Logger.Warn("events API: ticket refused: too many issued", "key", p.Name)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, ingest.CodeTooManyRequests,
			fmt.Sprintf("too many tickets issued in the last %s; retry shortly", TicketTTL))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	ingest.WriteJSON(w, http.StatusCreated, ticketAnswer{Ticket: tk, ExpiresAt: exp.UTC(), ExpiresIn: int(TicketTTL / time.Second)})
}

const realm = `Bearer realm="txoutbox events API"`

// authorize authenticates r and checks that it holds right. On failure it
// has answered the request (401, 403) and returns false. A GET request for
// the subscribe right may present a ticket (?ticket=) instead of a key.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, right Right) (*Principal, bool) {
	return s.authenticate(w, r, right, right == RightSubscribe && r.Method == http.MethodGet)
}

func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, right Right, ticketOK bool) (*Principal, bool) {
	p, aerr := s.identify(r, ticketOK)
	if aerr != nil {
		if aerr.status == http.StatusUnauthorized {
			writeUnauthorized(w, aerr.invalid, aerr.msg)
		} else {
			writeError(w, aerr.status, ingest.CodeForbidden, aerr.msg)
		}
		return nil, false
	}
	return s.checkRight(w, p, right)
}

// authError is why a request could not be authenticated: 401 (invalid: a
// credential was presented and is not good) or 403.
type authError struct {
	status  int
	invalid bool
	msg     string
}

func (e *authError) Error() string { return e.msg }

// identify returns who r is, as authenticate takes it, without checking a
// right or answering.
func (s *Server) identify(r *http.Request, ticketOK bool) (*Principal, *authError) {
	a := s.access
	if a.keys == nil {
		if !isLoopbackRemote(r.RemoteAddr) {
			s.cfg.Logger.Warn("events API: refused a request from beyond this machine: no keys configured", "remote", r.RemoteAddr, "path", r.URL.Path)
			return nil, &authError{status: http.StatusForbidden,
				msg: "this events API has no keys configured (development mode) and answers only requests from this machine; configure keys to serve others"}
		}
		return &Principal{Name: "development", rights: allRights}, nil
	}
	secret, present, err := credential(r)
	if err != nil {
		return nil, &authError{status: http.StatusUnauthorized, msg: err.Error()}
	}
	if !present {
		tk := r.URL.Query().Get("ticket")
		switch {
		case tk == "":
			s.cfg.Logger.Debug("events API: no credential", "remote", r.RemoteAddr, "path", r.URL.Path)
			return nil, &authError{status: http.StatusUnauthorized, msg: `no credential: send "Authorization: Bearer <key>" or "X-Api-Key: <key>"`}
		case !ticketOK:
			return nil, &authError{status: http.StatusUnauthorized, msg: "tickets are taken only to open a subscription (GET /api/stream, /api/ws); send a key"}
		}
		p, ok := a.redeem(tk)
		if !ok {
			s.cfg.Logger.Info("events API: unknown, spent or expired ticket", "remote", r.RemoteAddr, "path", r.URL.Path)
			return nil, &authError{status: http.StatusUnauthorized, invalid: true, msg: "the ticket is unknown, spent or expired: get a new one (POST /api/tickets)"}
		}
		return p, nil
	}
	k := a.keys.lookup(secret)
	if k == nil {
		s.cfg.Logger.Warn("events API: unknown credential", "remote", r.RemoteAddr, "path", r.URL.Path)
		return nil, &authError{status: http.StatusUnauthorized, invalid: true, msg: "unknown credential"}
	}
	if !k.expires.IsZero() && !time.Now().Before(k.expires) {
		s.cfg.Logger.Warn("events API: expired credential", "key", k.name, "remote", r.RemoteAddr, "path", r.URL.Path)
		return nil, &authError{status: http.StatusUnauthorized, invalid: true, msg: fmt.Sprintf("key %q expired at %s", k.name, k.expires.Format(time.RFC3339))}
	}
	return &Principal{Name: k.name, Tenant: k.tenant, Expires: k.expires, rights: k.rights}, nil
}

func (s *Server) checkRight(w http.ResponseWriter, p *Principal, right Right) (*Principal, bool) {
	if !p.Can(right) {
		s.cfg.Logger.Warn("events API: key lacks the right", "key", p.Name, "right", right)
		writeError(w, http.StatusForbidden, ingest.CodeForbidden, fmt.Sprintf("key %q does not hold the %s right", p.Name, right))
		return nil, false
	}
	return p, true
}

// credential returns the key a request presents: "Authorization: Bearer
// <key>", or else "X-Api-Key: <key>".
func credential(r *http.Request) (secret string, present bool, err error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, secret, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
			return "", false, errors.New(`the Authorization header is not "Bearer <key>"`)
		}
		return strings.TrimSpace(secret), true, nil
	}
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return k, true, nil
	}
	return "", false, nil
}

func writeUnauthorized(w http.ResponseWriter, invalid bool, msg string) {
	challenge := realm
	if invalid {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, http.StatusUnauthorized, ingest.CodeUnauthorized, msg)
}

// isLoopbackRemote reports whether a request's RemoteAddr is a loopback
// address (127.0.0.0/8, ::1).
func isLoopbackRemote(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// writeError answers with the events API's error object.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	ingest.WriteError(w, status, code, msg)
}
