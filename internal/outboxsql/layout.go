package outboxsql

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"
)

// Layout is the file layout a migration tool reads.
type Layout string

// The layouts Files writes.
const (
	// LayoutGolangMigrate is golang-migrate's: NNN_title.up.sql and
	// NNN_title.down.sql per migration. Atlas imports it (atlas migrate
	// import --from "file://DIR?format=golang-migrate").
	LayoutGolangMigrate Layout = "golang-migrate"
	// LayoutGoose is goose's: one NNNNN_title.sql per migration holding the
	// up under -- +goose Up and the down under -- +goose Down.
	LayoutGoose Layout = "goose"
	// LayoutSQL is plain versioned SQL: NNN_title.sql per migration, the up
	// only. It is the layout of an atlas migration directory (before
	// atlas migrate hash writes atlas.sum) and of most other tools.
	LayoutSQL Layout = "sql"
)

// Layouts lists every Layout, for flags and messages.
var Layouts = []Layout{LayoutSQL, LayoutGoose, LayoutGolangMigrate}

// ErrUnknownLayout is returned for a Layout that is not one of Layouts.
var ErrUnknownLayout = errors.New("unknown migration layout")

// File is one file of a migration directory.
type File struct {
	Name string
	Data []byte
}

// Files returns the migrations ms as the files of layout, in version order
// (for golang-migrate, each up before its down).
func Files(ms []Migration, layout Layout) ([]File, error) {
	var files []File
	for _, m := range ms {
		switch layout {
		case LayoutGolangMigrate:
			files = append(files,
				File{fmt.Sprintf("%03d_%s.up.sql", m.Version, m.Title), []byte(withNewline(m.SQL))},
				File{fmt.Sprintf("%03d_%s.down.sql", m.Version, m.Title), []byte(withNewline(m.Down))})
		case LayoutGoose:
			files = append(files, File{fmt.Sprintf("%05d_%s.sql", m.Version, m.Title), []byte(GooseMigration(m.SQL, m.Down))})
		case LayoutSQL:
			files = append(files, File{fmt.Sprintf("%03d_%s.sql", m.Version, m.Title), []byte(withNewline(m.SQL))})
		default:
			return nil, fmt.Errorf("%w %q: want %s", ErrUnknownLayout, layout, joinLayouts())
		}
	}
	return files, nil
}

// GooseMigration returns one goose migration file applying up and reverting
// with down.
func GooseMigration(up, down string) string {
	return "-- +goose Up\n" + withNewline(up) + "\n-- +goose Down\n" + withNewline(down)
}

func joinLayouts() string {
	s := make([]string, len(Layouts))
	for i, l := range Layouts {
		s[i] = string(l)
	}
	return strings.Join(s, ", ")
}

func withNewline(s string) string {
	if s == "" || strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// FilesFS returns files as a read-only fs.FS holding them at its root.
func FilesFS(files []File) fs.FS {
	m := make(memFS, len(files))
	for _, f := range files {
		m[f.Name] = f.Data
	}
	return m
}

// memFS is a flat, read-only directory of files in memory.
type memFS map[string][]byte

var (
	_ fs.ReadDirFS  = memFS(nil)
	_ fs.ReadFileFS = memFS(nil)
)

func (m memFS) Open(name string) (fs.File, error) {
	if name == "." {
		entries, _ := m.ReadDir(".")
		return &memDir{entries: entries}, nil
	}
	data, ok := m[name]
	if !ok || !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{info: memInfo{name: name, size: int64(len(data))}, data: data}, nil
}

func (m memFS) ReadFile(name string) ([]byte, error) {
	data, ok := m[name]
	if !ok || !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(data), nil
}

func (m memFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name != "." {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	entries := make([]fs.DirEntry, 0, len(m))
	for n, data := range m {
		entries = append(entries, fs.FileInfoToDirEntry(memInfo{name: n, size: int64(len(data))}))
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
}

type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}

type memFile struct {
	info memInfo
	data []byte
	off  int
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Close() error               { return nil }
func (f *memFile) Read(b []byte) (int, error) {
	if f.off >= len(f.data) {
		return 0, io.EOF
	}
	n := copy(b, f.data[f.off:])
	f.off += n
	return n, nil
}

type memDir struct {
	entries []fs.DirEntry
	off     int
}

func (d *memDir) Stat() (fs.FileInfo, error) { return memInfo{name: ".", dir: true}, nil }
func (d *memDir) Close() error               { return nil }
func (d *memDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: ".", Err: errors.New("is a directory")}
}

func (d *memDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n > 0 && len(rest) == 0 {
		return nil, io.EOF
	}
	if n > 0 && n < len(rest) {
		rest = rest[:n]
	}
	d.off += len(rest)
	return rest, nil
}

// EmbeddedLayout returns the migrations of directory dir of the embedded
// fsys as the files of layout. It panics on an error: embedded files are
// fixed at build time, and tested.
func EmbeddedLayout(fsys fs.FS, dir string, layout Layout) fs.FS {
	ms, err := ReadMigrations(fsys, dir)
	if err != nil {
		panic(err)
	}
	files, err := Files(ms, layout)
	if err != nil {
		panic(err)
	}
	return FilesFS(files)
}
