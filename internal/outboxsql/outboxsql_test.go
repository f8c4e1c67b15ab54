package outboxsql

import (
	"reflect"
	"strings"
	"testing"
)

func TestCheckSchema(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "outbox", `Out"box'; DROP TABLE victim; --`, strings.Repeat("s", 63)} {
		if err := CheckSchema(ok); err != nil {
			t.Errorf("CheckSchema(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{strings.Repeat("s", 64), "out\x00box", " outbox", "outbox\n"} {
		if err := CheckSchema(bad); err == nil {
			t.Errorf("CheckSchema(%q) = nil, want an error", bad)
		}
	}
}

func TestMigrationsInOrder(t *testing.T) {
	t.Parallel()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.Version != i+1 || !strings.HasPrefix(m.Name, "00") || m.SQL == "" {
			t.Errorf("migration %d: version %d, name %q, %d bytes of SQL; want version %d", i, m.Version, m.Name, len(m.SQL), i+1)
		}
	}
	if len(ms) < 2 {
		t.Fatalf("%d migrations, want the events table and the relay's tables", len(ms))
	}
}

// TestNewQualifiesEveryTable: every statement of a schema names its tables
// quoted and qualified, so none reads the search_path's tables instead.
func TestNewQualifiesEveryTable(t *testing.T) {
	t.Parallel()
	const schema = `Out"box`
	q := New(schema)
	var all []string
	for _, group := range []any{q.Relay, q.Admin, q.Console, struct{ Backlog, ReadEvents string }{q.Backlog, q.ReadEvents}} {
		v := reflect.ValueOf(group)
		for i := range v.NumField() {
			all = append(all, v.Field(i).String())
		}
	}
	all = append(all, q.Insert(InsertShape{}), q.Insert(InsertShape{Rows: 2, SharedTopic: true, Dedupe: true}))
	f := &ConsoleFilter{State: StateBlocked, Topic: "t", Key: "k", Error: "e", After: 1, MaxSeq: 9}
	list, _ := q.ConsoleList(f, 10)
	count, _ := q.ConsoleCount(f)
	replay, _, _ := q.ConsoleAction(ActionReplay, f, "")
	discard, _, _ := q.ConsoleAction(ActionDiscard, f, "note")
	all = append(all, list, count, replay, discard)
	for _, s := range all {
		if s == "" || strings.ContainsAny(s, "{}") {
			t.Errorf("statement left empty or with a placeholder:\n%s", s)
		}
		rest := strings.NewReplacer(`"Out""box"."txoutbox_`, "").Replace(s)
		if strings.Contains(rest, "txoutbox_") {
			t.Errorf("statement names a table outside schema %q:\n%s", schema, s)
		}
	}
	if a, b := q.Insert(InsertShape{Rows: 3}), q.Insert(InsertShape{Rows: 3}); a != b {
		t.Error("Insert built two texts for one shape")
	}
}

// TestConsoleFilterParameters: every value of a console filter is a
// parameter, numbered in order, and none is spliced into the text.
func TestConsoleFilterParameters(t *testing.T) {
	t.Parallel()
	q := New("")
	evil := `x'; DROP TABLE txoutbox_events; --`
	f := &ConsoleFilter{State: StatusDead, Topic: evil, Key: evil, Tenant: evil, JobID: evil, Error: evil, After: 5}
	sql, args := q.ConsoleList(f, 10)
	if strings.Contains(sql, "DROP") {
		t.Fatalf("a value was spliced into the statement:\n%s", sql)
	}
	if len(args) != 8 || args[len(args)-1] != 10 || !strings.Contains(sql, "LIMIT $8") {
		t.Errorf("args %v, statement:\n%s", args, sql)
	}
	if got := args[5]; got != `%x'; DROP TABLE txoutbox\_events; --%` {
		t.Errorf("error pattern %q: want it escaped and wrapped in %%", got)
	}
	if _, _, err := q.ConsoleAction("drop", f, ""); err == nil {
		t.Error("ConsoleAction accepted an unknown action")
	}
}
