// Command listener follows the events API's stream and prints every event
// it receives, resuming after a dropped connection or a restart where it
// left off.
//
//	txoutbox sink                                          # or txoutbox serve
//	EVENTS_URL=http://127.0.0.1:8642 go run ./examples/listener
//
// Environment: EVENTS_URL (the events API), EVENTS_TOKEN (a key, when the
// server has keys), TOPIC (a topic pattern, e.g. billing.*), POSITION_FILE
// (where the last handled position is kept; default listener.position).
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/eventsapi/listener"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// run follows the stream until ctx ends, printing one line per event.
func run(ctx context.Context, getenv func(string) string, out io.Writer) error {
	url := getenv("EVENTS_URL")
	if url == "" {
		return errors.New("set EVENTS_URL to the events API, e.g. http://127.0.0.1:8642")
	}
	posFile := cmp.Or(getenv("POSITION_FILE"), "listener.position")
	after, err := loadPosition(posFile)
	if err != nil {
		return err
	}
	var filter eventsapi.Filter
	if topic := getenv("TOPIC"); topic != "" {
		filter.Include = []eventsapi.Selector{{Topic: []string{topic}}}
	}
	l, err := listener.New(&listener.Config{
		URL:    url,
		Token:  getenv("EVENTS_TOKEN"),
		Filter: filter,
		After:  after,
	}, func(ctx context.Context, ev *eventsapi.Event) error {
		fmt.Fprintf(out, "%d %s key=%s tenant=%s %s\n", ev.Position, ev.Topic, ev.Key, ev.Tenant, ev.Data)
		// A real consumer applies the event and saves the position in one
		// database transaction; a file stands in for that here.
		return savePosition(posFile, ev.Position)
	})
	if err != nil {
		return err
	}
	return l.Run(ctx)
}

func loadPosition(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pos, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: not a position: %w", path, err)
	}
	return pos, nil
}

// savePosition replaces the file atomically: write a temporary file, then
// rename it over the old one.
func savePosition(path string, pos int64) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".listener-position-*")
	if err != nil {
		return err
	}
	_, err = tmp.WriteString(strconv.FormatInt(pos, 10) + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}
