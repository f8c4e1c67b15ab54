// Command enroll-worker turns events into tracked work through the events
// API's jobs: it enrolls for the oldest source event without a job, marks
// the job in progress, reports progress, and finishes it; then enrolls for
// the next. With nothing to do it waits and asks again. Run as many as you
// like: every source event is worked on once.
//
//	txoutbox sink                                                 # or txoutbox serve
//	EVENTS_URL=http://127.0.0.1:8642 go run ./examples/enroll-worker
//
// Environment: EVENTS_URL (the events API), EVENTS_TOKEN (a key with the
// jobs right, when the server has keys), SOURCE_TOPIC (default
// billing.InvoiceCreated), TARGET_TOPIC (default billing.InvoiceExported),
// CONDITION (an optional key=value condition on the source's data, e.g.
// payload/currency="EUR"; the value is JSON), SENDER (default
// enroll-worker).
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
)

// idleWait is how long the worker waits when there is nothing to do.
const idleWait = time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// run works until ctx ends, printing a line per job.
func run(ctx context.Context, getenv func(string) string, out io.Writer) error {
	w, err := newWorker(getenv)
	if err != nil {
		return err
	}
	for {
		done, err := w.workOne(ctx, out)
		if err != nil {
			return err
		}
		if !done {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(idleWait):
			}
		}
	}
}

// worker is one worker's requests.
type worker struct {
	url, token string
	enroll     eventsapi.EnrollRequest
	client     *http.Client
}

func newWorker(getenv func(string) string) (*worker, error) {
	url := strings.TrimSuffix(getenv("EVENTS_URL"), "/")
	if url == "" {
		return nil, errors.New("set EVENTS_URL to the events API, e.g. http://127.0.0.1:8642")
	}
	w := &worker{url: url, token: getenv("EVENTS_TOKEN"), client: &http.Client{Timeout: 30 * time.Second}}
	w.enroll = eventsapi.EnrollRequest{
		SourceTopic: cmp.Or(getenv("SOURCE_TOPIC"), "billing.InvoiceCreated"),
		TargetTopic: cmp.Or(getenv("TARGET_TOPIC"), "billing.InvoiceExported"),
		Sender:      cmp.Or(getenv("SENDER"), "enroll-worker"),
		Description: "export the invoice",
	}
	if c := getenv("CONDITION"); c != "" {
		key, value, ok := strings.Cut(c, "=")
		if !ok || !json.Valid([]byte(value)) {
			return nil, fmt.Errorf("CONDITION %q: want path=json-value, e.g. payload/currency=\"EUR\"", c)
		}
		w.enroll.Conditions = []eventsapi.Condition{{Key: key, Value: json.RawMessage(value)}}
	}
	return w, nil
}

// workOne enrolls for one source event and works on its job; false when
// there was nothing to do.
func (w *worker) workOne(ctx context.Context, out io.Writer) (bool, error) {
	var enrolled struct {
		JobID  string          `json:"jobId"`
		Source eventsapi.Event `json:"source"`
	}
	status, err := w.call(ctx, http.MethodPost, "/api/enroll", w.enroll, &enrolled)
	if err != nil || status == http.StatusNoContent {
		return false, err
	}
	job := "/api/events/" + enrolled.JobID
	if _, err := w.call(ctx, http.MethodPatch, job, eventsapi.JobUpdate{Status: eventsapi.JobInProgress}, nil); err != nil {
		return false, err
	}
	// The work: here, two steps, each reported to live subscribers.
	for step := 1; step <= 2; step++ {
		progress := map[string]int{"step": step, "of": 2}
		if _, err := w.call(ctx, http.MethodPost, job+"/progress", progress, nil); err != nil {
			return false, err
		}
	}
	desc := fmt.Sprintf("exported %s", enrolled.Source.Key)
	var finished eventsapi.Event
	if _, err := w.call(ctx, http.MethodPatch, job, eventsapi.JobUpdate{Status: eventsapi.JobFinished, Description: &desc}, &finished); err != nil {
		return false, err
	}
	fmt.Fprintf(out, "%s %s for %s %s: %s (%s)\n", finished.Topic, finished.ID, enrolled.Source.Topic, enrolled.Source.ID, finished.Status, finished.Description)
	return true, nil
}

// call sends body as JSON and decodes a 2xx answer into into (when not
// nil); it returns the status.
func (w *worker) call(ctx context.Context, method, path string, body, into any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, method, w.url+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if w.token != "" {
		req.Header.Set("Authorization", "Bearer "+w.token)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	if into != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}
