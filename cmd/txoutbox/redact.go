package main

import (
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// masked stands in for a secret in what the command prints, as pgx masks
// passwords.
const masked = "xxxxx"

var (
	// urlStart finds where something URL-like begins: a scheme and "://".
	urlStart = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://`)
	// secretKey finds a key whose value is a secret, in a keyword/value
	// connection string (password=...) or a query (?token=...).
	secretKey = regexp.MustCompile(`(?i)[a-z0-9_-]*(?:password|passwd|pwd|secret|token|api[_-]?key)=`)
)

// redact returns s with the secrets it may hold masked: the password of
// every URL-like part (scheme://user:password@host), the value of password=
// in a keyword/value connection string, and the values of query parameters
// such as password, token, secret and api_key. It reads s as text, so it
// also masks URLs that do not parse. Every message that echoes what a user
// typed passes through it.
func redact(s string) string {
	return redactKeys(redactUserinfo(s))
}

// redactUserinfo masks the password in the user info of every URL-like part
// of s. The user info ends at the last "@" before the next space or quote,
// since a password written unescaped may hold "@" or "/".
func redactUserinfo(s string) string {
	return maskAfter(s, urlStart, func(rest string) (int, int) {
		end := strings.IndexAny(rest, " \t\r\n\"'`<>")
		if end < 0 {
			end = len(rest)
		}
		at := strings.LastIndexByte(rest[:end], '@')
		colon := strings.IndexByte(rest[:max(at, 0)], ':')
		if at < 0 || colon < 0 {
			return 0, 0
		}
		return colon + 1, at
	})
}

// redactKeys masks the value after every secretKey in s: up to the closing
// quote when it is quoted with ', else up to the next space, quote or
// separator.
func redactKeys(s string) string {
	return maskAfter(s, secretKey, func(rest string) (int, int) {
		if !strings.HasPrefix(rest, "'") {
			if end := strings.IndexAny(rest, " \t\r\n\"'`&;,)"); end >= 0 {
				return 0, end
			}
			return 0, len(rest)
		}
		for i := 1; i < len(rest); i++ {
			if rest[i] == '\\' {
				i++
			} else if rest[i] == '\'' {
				return 0, i + 1
			}
		}
		return 0, len(rest)
	})
}

// maskAfter returns s with, after each match of re, the part of the rest
// of s that secret locates (rest[start:end]) masked; an empty part is left
// as it is.
func maskAfter(s string, re *regexp.Regexp, secret func(rest string) (start, end int)) string {
	var b strings.Builder
	for {
		loc := re.FindStringIndex(s)
		if loc == nil {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:loc[1]])
		s = s[loc[1]:]
		if start, end := secret(s); end > start {
			b.WriteString(s[:start])
			b.WriteString(masked)
			s = s[end:]
		}
	}
}

// redactWriter passes each write through redact. The commands write a log
// record, a problem or a message in one Write, so no secret is split.
type redactWriter struct{ w io.Writer }

func (r redactWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// redactedError is an error whose message was redacted and folded onto one
// line; errors.Is and errors.As still see the original.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr returns err with its message redacted and its lines joined,
// repeated ones dropped (pgx lists every connection attempt on a line of
// its own, often the same one twice), and every known secret masked too:
// the passwords of the URLs and connection strings the user gave, which a
// message may show without their context, decoded.
func redactErr(err error, known ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, raw := range known {
		if pw := password(raw); len(pw) >= 4 {
			msg = strings.ReplaceAll(msg, pw, masked)
			if esc := url.PathEscape(pw); esc != pw {
				msg = strings.ReplaceAll(msg, esc, masked)
			}
		}
	}
	var lines []string
	for l := range strings.SplitSeq(redact(msg), "\n") {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
	}
	return &redactedError{msg: strings.Join(lines, " "), err: err}
}

// password returns the password in a URL or a keyword/value connection
// string, or "".
func password(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		pw, _ := u.User.Password()
		return pw
	}
	for field := range strings.FieldsSeq(raw) {
		if v, ok := strings.CutPrefix(field, "password="); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}

// redactURL returns a URL for logs and messages: scheme, user, host and
// path, without the password, query or fragment, which may carry
// credentials. Something that is not a URL with a host is redacted whole
// as text.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return redact(raw)
	}
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	if u.User != nil {
		c.User = url.User(u.User.Username())
	}
	return c.String()
}
