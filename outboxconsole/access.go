package outboxconsole

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// sessionCookie carries a signed-in browser's session: who, until when,
// signed with the handler's key. It never holds the token or a password.
const sessionCookie = "txoutbox_console"

// sessionTTL is how long a sign-in lasts.
const sessionTTL = 12 * time.Hour

// localActor is who acts on a console without credentials, which serves
// loopback callers only.
const localActor = "local"

// access decides who a request is from and signs sessions and CSRF tokens.
type access struct {
	token string
	users map[string]string
	key   []byte // random per handler: a restart signs everyone out
}

func newAccess(token string, users map[string]string) (*access, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	return &access{token: token, users: users, key: key}, nil
}

// open reports whether no credentials are configured: then only loopback
// callers are served.
func (a *access) open() bool { return a.token == "" && len(a.users) == 0 }

// check returns who the credentials name, or "" when they match no one.
// user "" is the token.
func (a *access) check(user, secret string) string {
	if user == "" {
		if a.token != "" && equal(secret, a.token) {
			return "token"
		}
		return ""
	}
	want, ok := a.users[user]
	if !ok {
		equal(secret, secret) // about as long as a wrong password
		return ""
	}
	if equal(secret, want) {
		return user
	}
	return ""
}

// equal compares secrets in time that does not depend on where they differ.
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// errForbidden is a caller that may not use the console at all.
var errForbidden = errors.New("forbidden")

// actor returns who r is from: the Authorization header's user, the
// session's, or localActor on an open console from loopback; "" when r
// must sign in first, errForbidden when it never may.
func (a *access) actor(r *http.Request) (string, error) {
	if a.open() {
		if !isLoopback(r.RemoteAddr) {
			return "", errForbidden
		}
		return localActor, nil
	}
	if h := r.Header.Get("Authorization"); h != "" {
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
			return a.check("", tok), nil
		}
		if user, pass, ok := r.BasicAuth(); ok {
			return a.check(user, pass), nil
		}
		return "", nil
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", nil
	}
	return a.session(c.Value), nil
}

func isLoopback(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

func (a *access) sign(s string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(s))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession returns a session cookie's value for actor.
func (a *access) newSession(actor string, now time.Time) string {
	body := base64.RawURLEncoding.EncodeToString([]byte(actor)) + "." + strconv.FormatInt(now.Add(sessionTTL).Unix(), 10)
	return body + "." + a.sign("session\x00"+body)
}

// session returns the actor of a session cookie's value, "" when it is
// forged or expired.
func (a *access) session(v string) string {
	i := strings.LastIndexByte(v, '.')
	if i < 0 || !hmac.Equal([]byte(v[i+1:]), []byte(a.sign("session\x00"+v[:i]))) {
		return ""
	}
	name, exp, _ := strings.Cut(v[:i], ".")
	until, err := strconv.ParseInt(exp, 10, 64)
	actor, derr := base64.RawURLEncoding.DecodeString(name)
	if err != nil || derr != nil || time.Now().Unix() > until {
		return ""
	}
	return string(actor)
}

// csrf is the token every form of actor's pages carries and every POST
// must return.
func (a *access) csrf(actor string) string { return a.sign("csrf\x00" + actor) }

// checkPost rejects a state-changing request another site made: its Origin
// must be this site, or, where the browser sends none or "null", its
// Sec-Fetch-Site must be same-origin; and its csrf field, when want is not
// empty, must be want. Clients that are not browsers send neither header
// and are held to the CSRF token alone.
func checkPost(r *http.Request, want string) error {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return errors.New("the request came from another site")
		}
	} else if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" {
		return errors.New("the request came from another site")
	}
	if want != "" && !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(want)) {
		return errors.New("the form is stale or forged: reload the page and try again")
	}
	return nil
}

// ReadUsersFile reads basic-auth users from a file of user:password lines.
// Blank lines and lines starting with # are skipped.
func ReadUsersFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	users := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, pass, ok := strings.Cut(line, ":")
		if !ok || user == "" || pass == "" {
			return nil, fmt.Errorf("users file: line %d: want user:password", n)
		}
		users[user] = pass
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	if len(users) == 0 {
		return nil, errors.New("users file: no users")
	}
	return users, nil
}

// ReadTokenFile reads a token from a file, trimming surrounding space.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("token file: empty")
	}
	return tok, nil
}

// IsLoopbackAddr reports whether a listen address (host:port) binds only
// loopback interfaces: an open console must not listen anywhere else.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
