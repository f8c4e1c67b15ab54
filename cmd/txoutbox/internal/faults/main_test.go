package faults

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

var long = flag.Bool("fault.long", false, "run the soak versions of the fault tests (minutes, not seconds)")

// pick returns short in the default run and soak with -fault.long.
func pick[T any](short, soak T) T {
	if *long {
		return soak
	}
	return short
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(removeBinary{m}))
}

// removeBinary removes the txoutbox binary built for the tests once they
// have run.
type removeBinary struct{ m pgtest.TestingM }

func (r removeBinary) Run() int {
	code := r.m.Run()
	if txoutbox.dir != "" {
		_ = os.RemoveAll(txoutbox.dir)
	}
	return code
}

// txoutbox is the txoutbox binary, built once by the first test that needs
// it, with the race detector when the tests have it.
var txoutbox struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// txoutboxBinary returns the path of the txoutbox binary built from this tree.
func txoutboxBinary(t testing.TB) string {
	t.Helper()
	txoutbox.once.Do(func() {
		txoutbox.dir, txoutbox.err = os.MkdirTemp("", "txoutbox-faults-")
		if txoutbox.err != nil {
			return
		}
		txoutbox.path = filepath.Join(txoutbox.dir, "txoutbox")
		args := []string{"build", "-o", txoutbox.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/txoutbox/txoutbox/cmd/txoutbox")
		cmd := exec.Command(goTool(), args...)
		txoutbox.out, txoutbox.err = cmd.CombinedOutput()
	})
	if txoutbox.err != nil {
		t.Fatalf("build txoutbox: %v\n%s", txoutbox.err, txoutbox.out)
	}
	return txoutbox.path
}

// goTool returns the go command that runs these tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}
