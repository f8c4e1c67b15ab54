package outboxconsole

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// DB is what the console runs its queries on: a *pgxpool.Pool.
type DB interface {
	outboxsql.DB
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Defaults of Config.
const (
	// RefreshIntervalDefault is how often the live overview is recomputed.
	RefreshIntervalDefault = 5 * time.Second
	// PageSizeDefault is how many events a list page shows.
	PageSizeDefault = 50
	// PageSizeMax bounds Config.PageSize and the limit a request asks for.
	PageSizeMax = 500
)

// Config configures a Handler. The zero Config serves the search_path's
// outbox at /, read-write, payloads hidden, to loopback callers only.
type Config struct {
	// Schema holds the outbox tables. Defaults to the search_path.
	Schema string
	// Path is where the handler is mounted, starting and ending with "/",
	// e.g. "/console/". Defaults to "/".
	Path string
	// ReadOnly refuses every action: the console only shows.
	ReadOnly bool
	// ShowPayloads shows events' data on their pages. Event data may hold
	// personal data, so it is hidden unless this is set.
	ShowPayloads bool
	// Token, when set, is accepted as "Authorization: Bearer" and at the
	// sign-in form.
	Token string
	// Users are basic-auth users and their passwords, accepted as
	// "Authorization: Basic" and at the sign-in form. With neither Token
	// nor Users, the console serves loopback callers only.
	Users map[string]string
	// RefreshInterval is how often the live overview is recomputed; it
	// counts the whole table, once per interval however many watch.
	// Defaults to RefreshIntervalDefault.
	RefreshInterval time.Duration
	// PageSize is how many events a list page shows. Defaults to
	// PageSizeDefault.
	PageSize int
	// Logger receives the audit log of actions and the errors of the live
	// overview. Defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) validate() error {
	switch {
	case !strings.HasPrefix(c.Path, "/") || !strings.HasSuffix(c.Path, "/"):
		return fmt.Errorf("outboxconsole: Path: %q must start and end with /", c.Path)
	case c.RefreshInterval < time.Second:
		return fmt.Errorf("outboxconsole: RefreshInterval: %s is below a second", c.RefreshInterval)
	case c.PageSize < 1 || c.PageSize > PageSizeMax:
		return fmt.Errorf("outboxconsole: PageSize: %d is not between 1 and %d", c.PageSize, PageSizeMax)
	}
	if err := outboxsql.CheckSchema(c.Schema); err != nil {
		return fmt.Errorf("outboxconsole: Schema: %w", err)
	}
	return nil
}

// Handler is the operator console: an http.Handler to mount at
// Config.Path. Call Close before shutting its server down, to end the live
// streams, and run Run beside it to record the backlog chart's samples.
type Handler struct {
	cfg    Config
	store  *store
	access *access
	log    *slog.Logger
	mux    *http.ServeMux
	pages  *pages

	done      chan struct{}
	closeOnce sync.Once

	mu   sync.Mutex // guards snap, held while it is recomputed
	snap struct {
		at   time.Time
		cost time.Duration // how long computing it took
		html []byte
	}
}

// New returns the console of the outbox in db.
func New(db DB, cfg *Config) (*Handler, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c.Path = cmp.Or(c.Path, "/")
	c.RefreshInterval = cmp.Or(c.RefreshInterval, RefreshIntervalDefault)
	c.PageSize = cmp.Or(c.PageSize, PageSizeDefault)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	if err := c.validate(); err != nil {
		return nil, err
	}
	acc, err := newAccess(c.Token, c.Users)
	if err != nil {
		return nil, fmt.Errorf("outboxconsole: %w", err)
	}
	h := &Handler{
		cfg:    c,
		store:  &store{db: db, schema: c.Schema, q: outboxsql.New(c.Schema)},
		access: acc,
		log:    c.Logger,
		mux:    http.NewServeMux(),
		pages:  newPages(c.Path),
		done:   make(chan struct{}),
	}
	h.routes()
	return h, nil
}

// Close ends the live streams, which an http.Server's Shutdown would
// otherwise wait for. The handler keeps serving pages.
func (h *Handler) Close() error {
	h.closeOnce.Do(func() { close(h.done) })
	return nil
}

// Run records a sample of the backlog every 10 seconds until ctx ends, for
// the overview's chart of the last hour, and returns nil then. Samples
// land in one row per 10 seconds however many consoles run; a console
// whose database user may not write them logs the error and keeps
// serving.
func (h *Handler) Run(ctx context.Context) error {
	t := time.NewTicker(outboxsql.SampleEvery)
	defer t.Stop()
	var last string
	for {
		err := h.store.sample(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && err.Error() != last:
			h.log.Warn("outboxconsole: record a backlog sample", "err", err)
			last = err.Error()
		case err == nil:
			last = ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ServeHTTP serves the console.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", pagePolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	// Not no-referrer: with it, browsers send "Origin: null" on the
	// console's own form posts, which the CSRF check then cannot tell
	// from another site's.
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// pagePolicy lets pages load the console's own script and style and talk to
// the console, nothing else.
const pagePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// request is what a page handler knows about its caller.
type request struct {
	actor string
	csrf  string
}

// authed wraps a page handler: it finds the caller, sends one that must
// sign in to the sign-in page, and checks every POST for CSRF.
func (h *Handler) authed(next func(http.ResponseWriter, *http.Request, request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		actor, err := h.access.actor(r)
		switch {
		case errors.Is(err, errForbidden):
			http.Error(w, "This console has no credentials configured, so it serves this machine only. "+
				"Start it with a token file or a users file to serve others.", http.StatusForbidden)
			return
		case actor == "" && r.Method == http.MethodGet:
			http.Redirect(w, r, h.cfg.Path+"login", http.StatusSeeOther)
			return
		case actor == "":
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		req := request{actor: actor, csrf: h.access.csrf(actor)}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
			if err := checkPost(r, req.csrf); err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
		}
		next(w, r, req)
	}
}

func (h *Handler) routes() {
	p := h.cfg.Path
	h.mux.HandleFunc("GET "+p+"{$}", h.authed(h.serveOverview))
	h.mux.HandleFunc("GET "+p+"overview/stream", h.authed(h.serveStream))
	h.mux.HandleFunc("GET "+p+"events", h.authed(h.serveEvents))
	h.mux.HandleFunc("GET "+p+"events/{id}", h.authed(h.serveEvent))
	h.mux.HandleFunc("POST "+p+"actions/{action}", h.authed(h.serveAction))
	h.mux.HandleFunc("GET "+p+"audit", h.authed(h.serveAudit))
	h.mux.HandleFunc("GET "+p+"assets/{file}", h.serveAsset)
	h.mux.HandleFunc("GET "+p+"login", h.serveLogin)
	h.mux.HandleFunc("POST "+p+"login", h.serveLogin)
	h.mux.HandleFunc("POST "+p+"logout", h.authed(h.serveLogout))
}

// overviewFragment returns the overview's live part, recomputed at most
// once per RefreshInterval however many pages watch it, and never spending
// more than a fifth of the time counting: on a table whose count takes 3s,
// it is recomputed every 15s.
func (h *Handler) overviewFragment(ctx context.Context) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.snap.html != nil && time.Since(h.snap.at) < max(h.cfg.RefreshInterval, 4*h.snap.cost) {
		return h.snap.html, nil
	}
	start := time.Now()
	o, err := h.store.overview(ctx, chartWindow)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := h.pages.t.ExecuteTemplate(&b, "overview-live", overviewView(o)); err != nil {
		return nil, fmt.Errorf("render overview: %w", err)
	}
	h.snap.at, h.snap.cost, h.snap.html = time.Now(), time.Since(start), b.Bytes()
	return h.snap.html, nil
}

// serveStream streams the overview's live part as server-sent events, each
// an "overview" event whose data is its HTML, whenever it changes.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request, _ request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	t := time.NewTicker(h.cfg.RefreshInterval)
	defer t.Stop()
	var last []byte
	for {
		frag, err := h.overviewFragment(r.Context())
		if err != nil && r.Context().Err() == nil {
			h.log.Warn("outboxconsole: overview", "err", err)
			frag = []byte(`<p class="error">The overview could not be read; retrying.</p>`)
		}
		if !bytes.Equal(frag, last) {
			var b bytes.Buffer
			b.WriteString("event: overview\n")
			for line := range bytes.Lines(frag) {
				b.WriteString("data: ")
				b.Write(bytes.TrimRight(line, "\n"))
				b.WriteByte('\n')
			}
			b.WriteByte('\n')
			if _, err := w.Write(b.Bytes()); err != nil {
				return
			}
			last = frag
		} else if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-h.done:
			return
		case <-t.C:
		}
	}
}
