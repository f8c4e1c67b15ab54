package relayhttp

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relaytest"
	"github.com/txoutbox/txoutbox/topics"
)

// eventsAPISecret is the relay's key to the events API of these tests.
const eventsAPISecret = "relay-key-of-the-end-to-end-tests"

// newEventsAPIServer runs an events API (package eventsapi) on a memory
// store, checking events against the topics of yaml and taking the relay's
// key only.
func newEventsAPIServer(t *testing.T, yaml string) (eventsapi.Store, string) {
	t.Helper()
	reg, err := topics.Parse("topics.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := eventsapi.NewKeys(eventsapi.Key{Name: "relay", Rights: []eventsapi.Right{eventsapi.RightIngest}, SecretSHA256: eventsapi.HashSecret(eventsAPISecret)})
	if err != nil {
		t.Fatal(err)
	}
	api, err := eventsapi.New(&eventsapi.Config{Registry: reg, Keys: keys, Logger: slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = api.Close() })
	return api.Store(), srv.URL
}

// storedEvents returns every event of st, in position order.
func storedEvents(t *testing.T, st eventsapi.Store) []eventsapi.Event {
	t.Helper()
	evs, err := st.Read(t.Context(), &eventsapi.ReadRequest{Limit: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestConformanceEventsAPI runs the sink conformance suite against the
// events API, in both wire formats, with a key.
func TestConformanceEventsAPI(t *testing.T) {
	t.Parallel()
	runConformance(t, func(t *testing.T) (string, string, func() []relaytest.Received) {
		st, url := newEventsAPIServer(t, conformanceTopics)
		return url, eventsAPISecret, func() []relaytest.Received {
			var got []relaytest.Received
			for _, ev := range storedEvents(t, st) {
				got = append(got, relaytest.Received{ID: ev.ID, Key: ev.Key, Data: ev.Data})
			}
			return got
		}
	})
}

// e2eTopics key events by their data's key, which the bc-events body has
// no other field for.
const e2eTopics = `DefaultCategory: billing
Topics:
  - Action: Created
    Entity: Invoice
    Description: An invoice was issued.
    Key: /key
    Schema: {type: object, required: [key], properties: {key: {type: string}}}
  - Action: Paid
    Entity: Invoice
    Description: An invoice was paid.
    Key: /key
    Schema: {type: object, required: [key], properties: {key: {type: string}}}
`

// e2eRow is an outbox row of TestRelayToEventsAPI.
type e2eRow struct {
	id                                   uuid.UUID
	key, action, job, tenant, tp, dedupe string
	n                                    int
}

// insertE2E inserts rows into the outbox, in order.
func insertE2E(t *testing.T, pool *pgxpool.Pool, rows []e2eRow) {
	t.Helper()
	cols := make([][]string, 7)
	ns := make([]int, len(rows))
	for i, r := range rows {
		for c, v := range []string{r.id.String(), r.key, r.action, r.job, r.tenant, r.tp, r.dedupe} {
			cols[c] = append(cols[c], v)
		}
		ns[i] = r.n
	}
	_, err := pool.Exec(t.Context(), `INSERT INTO txoutbox_events
		(id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, traceparent, tenant, dedupe_key, published_at)
		SELECT u.id::uuid, 'billing.Invoice' || u.a, 'billing', 'Invoice', u.a, json_build_object('key', u.k, 'n', u.n),
			'user-4711', 'user', u.j, 'billing-api', u.k, NULLIF(u.tp, ''), NULLIF(u.tn, ''), NULLIF(u.d, ''), now()
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[])
			WITH ORDINALITY AS u(id, k, a, j, tn, tp, d, n, i) ORDER BY i`,
		cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], ns)
	if err != nil {
		t.Fatalf("insert events: %v", err)
	}
}

// TestRelayToEventsAPI runs the relay from the outbox to the events API in
// both wire formats: every event is stored once, with its tenant, trace
// context, dedupe key, job and key; a key's events in order. Delivering
// events again, or a new event with the dedupe key of one stored for the
// same tenant, stores nothing new; the same dedupe key for another tenant
// is another event.
func TestRelayToEventsAPI(t *testing.T) {
	t.Parallel()
	const tp1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const tp2 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, format := range []Format{FormatCloudEvents, FormatBriteEvents} {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			st, url := newEventsAPIServer(t, e2eTopics)
			pool := newTestDB(t)
			var rows []e2eRow
			for i := range 60 {
				r := e2eRow{
					id: uuid.Must(uuid.NewV7()), key: fmt.Sprint("k", i%5), action: []string{"Created", "Paid"}[i%2],
					job: fmt.Sprint("job-", i%3), tenant: []string{"acme", "globex", ""}[i%3], tp: []string{tp1, "", tp2}[i%4%3], n: i,
				}
				if i%2 == 0 {
					r.dedupe = fmt.Sprint("d-", i)
				}
				rows = append(rows, r)
			}
			insertE2E(t, pool, rows)
			sink := newTestHTTPSink(t, Config{URL: url, Format: format, BearerToken: eventsAPISecret, MaxBatch: 8})
			startRelay(t, pool, sink, &relay.Config{PollInterval: 20 * time.Millisecond})
			drained := func(what string) {
				t.Helper()
				waitFor(t, 30*time.Second, what, func() bool { return count(t, pool, "true") == 0 })
			}
			drained("every event delivered")

			stored := storedEvents(t, st)
			byID := make(map[string]eventsapi.Event)
			lastN := make(map[string]int)
			for _, ev := range stored {
				var data struct{ N int }
				_ = json.Unmarshal(ev.Data, &data)
				if prev, ok := lastN[ev.Key]; ok && data.N <= prev {
					t.Errorf("key %s: event %d stored after %d", ev.Key, data.N, prev)
				}
				lastN[ev.Key] = data.N
				byID[ev.ID] = ev
			}
			if len(stored) != len(rows) || len(byID) != len(rows) {
				t.Fatalf("stored %d events (%d ids), want %d", len(stored), len(byID), len(rows))
			}
			for _, r := range rows {
				ev, ok := byID[r.id.String()]
				var data struct {
					Key string
					N   int
				}
				_ = json.Unmarshal(ev.Data, &data)
				want := fmt.Sprintf("%s billing.Invoice%s %s %s %q %q %q user-4711 %s/%d", r.key, r.action, r.job, format, r.tenant, r.tp, r.dedupe, r.key, r.n)
				got := fmt.Sprintf("%s %s %s %s %q %q %q %s %s/%d", ev.Key, ev.Topic, ev.JobID, ev.Format, ev.Tenant, ev.Traceparent, ev.DedupeKey, ev.ActorID, data.Key, data.N)
				if !ok || got != want {
					t.Errorf("event %d stored as\n %s\nwant\n %s", r.n, got, want)
				}
			}

			// Delivered again: the same ids (a relay that lost the answer, a
			// replay), then a new id with the dedupe key of event 0, acme's.
			insertE2E(t, pool, rows[:10])
			drained("the events sent again delivered")
			sameKey := e2eRow{id: uuid.Must(uuid.NewV7()), key: "k9", action: "Created", job: "job-9", tenant: "acme", dedupe: rows[0].dedupe, n: 100}
			insertE2E(t, pool, []e2eRow{sameKey})
			drained("the event of a stored dedupe key delivered")
			if n := len(storedEvents(t, st)); n != len(rows) {
				t.Errorf("%d events stored after sending some again, want %d", n, len(rows))
			}
			// The same dedupe key for another tenant is another event.
			otherTenant := sameKey
			otherTenant.id, otherTenant.tenant = uuid.Must(uuid.NewV7()), "globex"
			insertE2E(t, pool, []e2eRow{otherTenant})
			drained("globex's event delivered")
			stored = storedEvents(t, st)
			if last := stored[len(stored)-1]; len(stored) != len(rows)+1 || last.ID != otherTenant.id.String() || last.Tenant != "globex" || last.DedupeKey != rows[0].dedupe {
				t.Errorf("stored %d events, the last %+v; want globex's event with dedupe key %s", len(stored), last, rows[0].dedupe)
			}
		})
	}
}
