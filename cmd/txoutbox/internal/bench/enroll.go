package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// enrollWorkers are the concurrent workers of the enrolment point.
const enrollWorkers = 8

// enrollBody asks for the oldest invoice without a job: every event the
// ingest points stored is a source.
const enrollBody = `{"sourceTopic":"billing.InvoiceCreated","targetTopic":"billing.InvoiceExported","sender":"bench"}`

// enroll measures claims per second: enrollWorkers workers each posting
// POST /api/enroll in a loop to the Postgres store's server, which holds
// the events the ingest points stored. A worker that finds nothing left
// fails the point: the ingest stored too few events for the window.
func (b *eventsBench) enroll(ctx context.Context) (float64, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: enrollWorkers}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	url := "http://" + b.pgAPI.addr + "/api/enroll"
	return closedLoop(ctx, enrollWorkers, warmup(b.e.cfg), b.e.cfg.Duration, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(enrollBody))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+b.keys.jobs)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		switch resp.StatusCode {
		case http.StatusCreated:
			return nil
		case http.StatusNoContent:
			return fmt.Errorf("enroll: no source event left: the ingest points stored too few for the window")
		}
		return fmt.Errorf("enroll: %s: %s", resp.Status, body)
	})
}
