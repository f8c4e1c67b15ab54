package exampletest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Txoutbox builds the txoutbox command from this tree into a directory of
// the test's and returns its path, for examples whose README runs it
// beside them. It first looks at every Go, SQL and YAML file of the module
// from inside the test, where go test records the files a test looks at,
// so a cached result is reused only while the command's sources are
// unchanged.
func Txoutbox(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err == nil {
		err = statSources(root)
	}
	if err != nil {
		t.Fatalf("build txoutbox: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	// go test puts its own go command first in the PATH.
	bin := filepath.Join(t.TempDir(), "txoutbox")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/txoutbox/txoutbox/cmd/txoutbox")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build txoutbox: %v\n%s", err, out)
	}
	return bin
}

// moduleRoot is the directory above the working directory that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// statSources stats the files below root a build of the module reads.
func statSources(root string) error {
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := e.Name()
		if e.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(name) {
		case ".go", ".sql", ".yaml", ".html":
		default:
			if name != "go.mod" && name != "go.sum" {
				return nil
			}
		}
		_, err = os.Stat(path)
		return err
	})
	if err != nil {
		return fmt.Errorf("list the module's files: %w", err)
	}
	return nil
}
