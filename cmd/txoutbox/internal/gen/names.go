package gen

import (
	"go/token"
	"strings"
	"unicode"
	"unicode/utf8"
)

// initialisms are written in capitals inside Go names (customer_id is
// CustomerID), as golint and the standard library spell them.
var initialisms = map[string]bool{
	"acl": true, "api": true, "ascii": true, "cpu": true, "css": true, "dns": true,
	"eof": true, "guid": true, "html": true, "http": true, "https": true, "id": true,
	"ip": true, "json": true, "qps": true, "ram": true, "rpc": true, "sla": true,
	"smtp": true, "sql": true, "ssh": true, "tcp": true, "tls": true, "ttl": true,
	"udp": true, "ui": true, "uid": true, "uuid": true, "uri": true, "url": true,
	"utf8": true, "vm": true, "xml": true, "xmpp": true, "xsrf": true, "xss": true,
}

// words splits a name at characters that are not letters or digits and
// where a lower-case letter or digit is followed by an upper-case one:
// "customer_id", "customer-id" and "customerId" all give customer, id.
func words(s string) []string {
	var out []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			out = append(out, string(cur))
			cur = cur[:0]
		}
	}
	var prev rune
	for _, r := range s {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
		case unicode.IsUpper(r) && (unicode.IsLower(prev) || unicode.IsDigit(prev)):
			flush()
			cur = append(cur, r)
		default:
			cur = append(cur, r)
		}
		prev = r
	}
	flush()
	return out
}

// exported turns a property name into an exported Go name: amount_cents is
// AmountCents, customerId CustomerID. It returns "" when s has no letters or
// digits at all.
func exported(s string) string {
	var b strings.Builder
	for _, w := range words(s) {
		if initialisms[strings.ToLower(w)] {
			b.WriteString(strings.ToUpper(w))
			continue
		}
		r, size := utf8.DecodeRuneInString(w)
		b.WriteRune(unicode.ToUpper(r))
		b.WriteString(w[size:])
	}
	name := b.String()
	if name == "" {
		return ""
	}
	if r, _ := utf8.DecodeRuneInString(name); !unicode.IsUpper(r) {
		name = "X" + name // starts with a digit or an uncased letter
	}
	return name
}

// constSuffix turns an enum value into the end of a constant's name: EUR
// stays EUR, draft is Draft, in_progress InProgress. The result follows a
// type name, so it may start with a digit.
func constSuffix(v string) string {
	var b strings.Builder
	for _, w := range words(v) {
		r, size := utf8.DecodeRuneInString(w)
		b.WriteRune(unicode.ToUpper(r))
		b.WriteString(w[size:])
	}
	return b.String()
}

// validTag reports whether s can be the name in a `json:"..."` struct tag;
// encoding/json ignores a tag name with other characters and would use the
// field's Go name instead.
func validTag(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", r):
		case unicode.IsLetter(r) || unicode.IsDigit(r):
		default:
			return false
		}
	}
	return true
}

// ValidPackageName reports whether name can be the package clause of the
// generated file: a Go identifier that is not a keyword.
func ValidPackageName(name string) bool {
	return token.IsIdentifier(name) && name != "_"
}

// PackageNameFor suggests a package name for a directory's base name, e.g.
// billing-events gives billingevents.
func PackageNameFor(dir string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(dir) {
		if r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			b.WriteRune(r)
		}
	}
	name := b.String()
	if name == "" || !ValidPackageName(name) || unicode.IsDigit(rune(name[0])) {
		return "events"
	}
	return name
}

// commentLines turns free text from the definitions into comment lines,
// without trailing spaces or blank lines at either end.
func commentLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		lines = append(lines, strings.TrimRightFunc(l, unicode.IsSpace))
	}
	for len(lines) > 0 && lines[0] == "" {
		lines = lines[1:]
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}
