package outbox

import (
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// TestInsertQueryNeedsEvents: the schema adapter writes the events Flush
// attaches to its messages; a message from elsewhere is refused, not
// written with empty columns.
func TestInsertQueryNeedsEvents(t *testing.T) {
	t.Parallel()
	a := &schemaAdapter{q: outboxsql.New("")}
	msg := message.NewMessage("0190b2a4-6d2e-7c3e-8a3b-1c2d3e4f5a6b", []byte(`{"id":"inv-1"}`))
	if _, err := a.InsertQuery(outboxsql.TableEvents, message.Messages{msg}); !errors.Is(err, errNoEvent) {
		t.Fatalf("InsertQuery(a message without an event) = %v, want errNoEvent", err)
	}
}
