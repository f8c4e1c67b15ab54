package outboxsql

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
)

func TestReadMigrationsRefuses(t *testing.T) {
	t.Parallel()
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, c := range []struct {
		name  string
		files fstest.MapFS
		want  string
	}{
		{"up without down", fstest.MapFS{"m/001_a.up.sql": file("x")}, "001_a.up.sql has no 001_a.down.sql"},
		{"down without up", fstest.MapFS{"m/001_a.down.sql": file("x")}, "001_a.down.sql has no 001_a.up.sql"},
		{"two titles", fstest.MapFS{"m/001_a.up.sql": file("x"), "m/001_b.down.sql": file("x")}, "version 001 is also"},
		{"no number", fstest.MapFS{"m/a.up.sql": file("x")}, "must start with NNN_"},
		{"version 0", fstest.MapFS{"m/000_a.up.sql": file("x")}, "must start with NNN_"},
		{"plain sql", fstest.MapFS{"m/001_a.sql": file("x")}, "must be NNN_title.up.sql or NNN_title.down.sql"},
		{"no title", fstest.MapFS{"m/001_.up.sql": file("x")}, "must be NNN_title.up.sql"},
		{"missing dir", fstest.MapFS{}, "read migrations: "},
	} {
		_, err := ReadMigrations(c.files, "m")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// The embedded files are the golang-migrate layout exactly, every up has a
// down, and each layout names its files as its tool expects.
func TestFilesLayouts(t *testing.T) {
	t.Parallel()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if !strings.Contains(m.Down, "DROP ") {
			t.Errorf("%s: down migration %q drops nothing", m.Name, m.Down)
		}
	}
	gm, err := Files(ms, LayoutGolangMigrate)
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := fs.ReadDir(MigrationFS(), ".")
	if err != nil {
		t.Fatal(err)
	}
	if len(embedded) != len(gm) {
		t.Fatalf("%d embedded files, golang-migrate layout has %d", len(embedded), len(gm))
	}
	for _, f := range gm {
		data, err := fs.ReadFile(MigrationFS(), f.Name)
		if err != nil || string(data) != string(f.Data) {
			t.Errorf("golang-migrate file %s differs from the embedded one (%v)", f.Name, err)
		}
	}
	goose, err := Files(ms, LayoutGoose)
	if err != nil {
		t.Fatal(err)
	}
	if goose[0].Name != "00001_create_events.sql" || !strings.HasPrefix(string(goose[0].Data), "-- +goose Up\n-- The outbox table.") ||
		!strings.Contains(string(goose[0].Data), "\n-- +goose Down\n-- Reverses 001_create_events.up.sql") {
		t.Errorf("goose file %s:\n%s", goose[0].Name, goose[0].Data)
	}
	plain, err := Files(ms, LayoutSQL)
	if err != nil {
		t.Fatal(err)
	}
	if plain[1].Name != "002_create_relay.sql" || string(plain[1].Data) != ms[1].SQL {
		t.Errorf("sql file %s:\n%s", plain[1].Name, plain[1].Data)
	}
	if _, err := Files(ms, "flyway"); !errors.Is(err, ErrUnknownLayout) {
		t.Errorf("Files(flyway): %v, want ErrUnknownLayout", err)
	}
}

func TestFilesFS(t *testing.T) {
	t.Parallel()
	files := []File{{"b.sql", []byte("two")}, {"a.sql", []byte("one")}, {"c.sql", nil}}
	if err := fstest.TestFS(FilesFS(files), "a.sql", "b.sql", "c.sql"); err != nil {
		t.Fatal(err)
	}
}
