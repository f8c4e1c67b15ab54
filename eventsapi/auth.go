package eventsapi

import "net/http"

// Right is what a key allows.
type Right string

// The rights a key may hold.
const (
	RightIngest    Right = "ingest"    // post events (the relay)
	RightSubscribe Right = "subscribe" // live subscriptions
	RightQuery     Right = "query"     // the query API
)

// Keys are the credentials a Server accepts.
type Keys struct {
	// TODO: loaded from a file; see LoadKeys.
}

// Principal is who a request was authenticated as.
type Principal struct {
	// Name names the key, for logs; never the secret.
	Name string
	// Tenant restricts the principal to one tenant's events; "" is every
	// tenant.
	Tenant string
}

// authorize authenticates r and checks that it holds right. On failure it
// has answered the request (401, 403) and returns false.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, right Right) (*Principal, bool) {
	// TODO: keys; development mode answers loopback only.
	return &Principal{Name: "development"}, true
}
