package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/txoutbox/txoutbox/cmd/txoutbox/internal/gen"
)

const genUsage = `
Generate typed Go publishers from a topic definitions file: per topic a
function and a struct for its data, so a mistyped field is a compile error:

  billingevents.InvoiceCreated(ctx, sess, billingevents.Invoice{ID: "inv-1", ...})

--out is a directory (the file is written there as topics_gen.go), a .go
file, or - for stdout. The file is rewritten only when its contents change,
so running gen on unchanged definitions changes nothing. With --check
nothing is written; gen exits 1 if the file is out of date (for CI).

FILE defaults to --topics (TXOUTBOX_TOPICS), or topic_definitions.yaml. Put
the command in a go:generate line next to the package:

  //go:generate go run github.com/txoutbox/txoutbox/cmd/txoutbox gen --package billingevents --out . ../topic_definitions.yaml`

const genExamples = `  txoutbox gen --package billingevents --out internal/billingevents
  txoutbox gen --out events/topics.go config/topic_definitions.yaml
  txoutbox gen --check --out internal/billingevents   # in CI
  txoutbox gen --package events --out - | less`

func runGen(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gen", genUsage, genExamples)
	var pkg, out string
	var check bool
	fs.StringVar(&pkg, "package", "", "package `name` of the generated file (default: the --out directory's name)")
	fs.StringVar(&out, "out", ".", "output `directory`, .go file, or - for stdout")
	fs.BoolVar(&check, "check", false, "write nothing; exit 1 if the generated file is missing or out of date")
	file, err := parseTopicsArgs(fs, args, stdout)
	if err != nil {
		return err
	}

	path := out
	if out != "-" && !strings.HasSuffix(out, ".go") {
		path = filepath.Join(out, gen.FileNameDefault)
	}
	if pkg == "" {
		dir, err := filepath.Abs(filepath.Dir(path))
		if err != nil {
			return fmt.Errorf("gen: --out: %w", err)
		}
		pkg = gen.PackageNameFor(filepath.Base(dir))
	}
	if !gen.ValidPackageName(pkg) {
		return fmt.Errorf("gen: --package: %q is not a Go package name", pkg)
	}
	reg, err := loadTopics("gen", file, stderr)
	if err != nil {
		return err
	}
	src, err := gen.Generate(reg, &gen.Config{Package: pkg, Source: file})
	if err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	if out == "-" {
		_, err := stdout.Write(src)
		return err
	}

	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, src):
		if !check {
			fmt.Fprintf(stdout, "%s is up to date (%s)\n", redact(path), plural(len(reg.Topics()), "topic", "topics"))
		}
		return nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("gen: cannot read %s: %w", path, pathErr(err))
	case check:
		return fmt.Errorf("gen: %s is out of date: run txoutbox gen", path)
	}
	if err := writeFileAtomic(path, src); err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: package %s, %s\n", redact(path), pkg, plural(len(reg.Topics()), "topic", "topics"))
	return nil
}

// writeFileAtomic replaces path with data so that a reader (or a build
// running at the same time) sees the old file or the new one, never half.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, pathErr(err))
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, pathErr(err))
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, pathErr(err))
	}
	return nil
}

// pathErr drops the path from an *fs.PathError, for messages that name the
// file already.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
