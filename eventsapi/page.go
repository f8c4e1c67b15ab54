package eventsapi

import (
	"embed"
	"net/http"
	"path"
)

// pageFiles are the live page and its assets: no other origin, no CDN, so
// it works offline.
//
//go:embed page
var pageFiles embed.FS

// pageTypes are the Content-Types of the page's files.
var pageTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// pagePolicy lets the page load its own script and style and talk to its
// own server, and nothing else: content that slipped into the page could
// neither run nor send anything elsewhere.
const pagePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// routePage serves the live page, GET /, and its assets under /page/. They
// hold no events and need no key: the page reads events through the query
// API and the stream with the credentials of whoever opens it (none in
// development mode; a key, turned into a ticket for the stream, otherwise).
func (s *Server) routePage() {
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { servePageFile(w, "index.html") })
	s.mux.HandleFunc("GET /page/{file}", func(w http.ResponseWriter, r *http.Request) {
		if f := r.PathValue("file"); f != "index.html" {
			servePageFile(w, f)
			return
		}
		http.NotFound(w, r)
	})
}

func servePageFile(w http.ResponseWriter, name string) {
	b, err := pageFiles.ReadFile("page/" + name)
	ct, known := pageTypes[path.Ext(name)]
	if err != nil || !known {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Content-Security-Policy", pagePolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}
