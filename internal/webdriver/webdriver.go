// Package webdriver drives a browser through chromedriver's W3C WebDriver
// HTTP API, for the tests that check the console in a real browser. It
// holds the few commands those tests use: sessions, navigation, elements,
// script, screenshots.
package webdriver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// elementKey is the W3C name of an element reference's field.
const elementKey = "element-6066-11e4-a52e-4f735466cecf"

// Driver is a running chromedriver.
type Driver struct {
	cmd  *exec.Cmd
	base string
	hc   *http.Client
}

// Start runs chromedriver (the executable at path) on a free loopback port
// and waits until it is ready. Close stops it.
func Start(ctx context.Context, path string) (*Driver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	cmd := exec.Command(path, "--port="+strconv.Itoa(port), "--allowed-ips=127.0.0.1", "--log-level=WARNING")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start chromedriver: %w", err)
	}
	d := &Driver{cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port), hc: &http.Client{Timeout: time.Minute}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st struct {
			Ready bool `json:"ready"`
		}
		if err := d.call(ctx, http.MethodGet, "/status", nil, &st); err == nil && st.Ready {
			return d, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = d.Close()
			return nil, errors.New("chromedriver did not become ready within 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Close stops chromedriver and waits for it.
func (d *Driver) Close() error {
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
	return nil
}

// Error is an error the WebDriver API returned.
type Error struct {
	Status  int
	Code    string // e.g. "no such element"
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("webdriver: %s: %s", e.Code, e.Message) }

// call sends a command and decodes its value into out.
func (d *Driver) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.hc.Do(req)
	if err != nil {
		return fmt.Errorf("webdriver %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	var env struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("webdriver %s %s: decode: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(env.Value, &e)
		return &Error{Status: resp.StatusCode, Code: e.Error, Message: firstLine(e.Message)}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(env.Value, out)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// Session is one browser.
type Session struct {
	d  *Driver
	id string
}

// NewSession starts a browser: the Chrome or Chromium executable at binary
// (empty for chromedriver's choice), with args.
func (d *Driver) NewSession(ctx context.Context, binary string, args []string) (*Session, error) {
	opts := map[string]any{"args": args}
	if binary != "" {
		opts["binary"] = binary
	}
	in := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome", "goog:chromeOptions": opts,
	}}}
	var out struct {
		SessionID string `json:"sessionId"`
	}
	if err := d.call(ctx, http.MethodPost, "/session", in, &out); err != nil {
		return nil, fmt.Errorf("start the browser: %w", err)
	}
	return &Session{d: d, id: out.SessionID}, nil
}

func (s *Session) call(ctx context.Context, method, path string, in, out any) error {
	return s.d.call(ctx, method, "/session/"+s.id+path, in, out)
}

// Close ends the session and its browser.
func (s *Session) Close(ctx context.Context) error {
	return s.call(ctx, http.MethodDelete, "", nil, nil)
}

// Navigate loads url and waits for it.
func (s *Session) Navigate(ctx context.Context, url string) error {
	return s.call(ctx, http.MethodPost, "/url", map[string]string{"url": url}, nil)
}

// URL returns the current page's URL.
func (s *Session) URL(ctx context.Context) (string, error) {
	var u string
	err := s.call(ctx, http.MethodGet, "/url", nil, &u)
	return u, err
}

// SetWindowSize sizes the browser's window, and so its screenshots.
func (s *Session) SetWindowSize(ctx context.Context, width, height int) error {
	return s.call(ctx, http.MethodPost, "/window/rect", map[string]int{"width": width, "height": height}, nil)
}

// Screenshot returns a PNG of the page's viewport.
func (s *Session) Screenshot(ctx context.Context) ([]byte, error) {
	var b64 string
	if err := s.call(ctx, http.MethodGet, "/screenshot", nil, &b64); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(b64)
}

// Execute runs a script in the page and decodes what it returns into out
// (nil to ignore it).
func (s *Session) Execute(ctx context.Context, script string, out any, args ...any) error {
	if args == nil {
		args = []any{}
	}
	return s.call(ctx, http.MethodPost, "/execute/sync", map[string]any{"script": script, "args": args}, out)
}

// Element is an element of the current page.
type Element struct {
	s  *Session
	id string
}

// Find returns the first element matching a CSS selector.
func (s *Session) Find(ctx context.Context, css string) (Element, error) {
	var ref map[string]string
	if err := s.call(ctx, http.MethodPost, "/element", map[string]string{"using": "css selector", "value": css}, &ref); err != nil {
		return Element{}, fmt.Errorf("find %s: %w", css, err)
	}
	return Element{s: s, id: ref[elementKey]}, nil
}

// FindAll returns the elements matching a CSS selector.
func (s *Session) FindAll(ctx context.Context, css string) ([]Element, error) {
	var refs []map[string]string
	if err := s.call(ctx, http.MethodPost, "/elements", map[string]string{"using": "css selector", "value": css}, &refs); err != nil {
		return nil, fmt.Errorf("find %s: %w", css, err)
	}
	els := make([]Element, len(refs))
	for i, r := range refs {
		els[i] = Element{s: s, id: r[elementKey]}
	}
	return els, nil
}

// Click clicks the element, and waits for a page it loads.
func (e Element) Click(ctx context.Context) error {
	return e.s.call(ctx, http.MethodPost, "/element/"+e.id+"/click", map[string]any{}, nil)
}

// SendKeys types text into the element.
func (e Element) SendKeys(ctx context.Context, text string) error {
	return e.s.call(ctx, http.MethodPost, "/element/"+e.id+"/value", map[string]string{"text": text}, nil)
}

// Clear empties an input.
func (e Element) Clear(ctx context.Context) error {
	return e.s.call(ctx, http.MethodPost, "/element/"+e.id+"/clear", map[string]any{}, nil)
}

// Text returns the element's rendered text.
func (e Element) Text(ctx context.Context) (string, error) {
	var t string
	err := e.s.call(ctx, http.MethodGet, "/element/"+e.id+"/text", nil, &t)
	return t, err
}

// Enabled reports whether the element is enabled.
func (e Element) Enabled(ctx context.Context) (bool, error) {
	var ok bool
	err := e.s.call(ctx, http.MethodGet, "/element/"+e.id+"/enabled", nil, &ok)
	return ok, err
}

// WaitText waits until the first element matching css has text want, and
// returns the text it last saw when timeout passes first.
func (s *Session) WaitText(ctx context.Context, css, want string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		if el, err := s.Find(ctx, css); err == nil {
			if last, err = el.Text(ctx); err == nil && last == want {
				return last, nil
			}
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("%s: text %q after %s, want %q", css, last, timeout, want)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
