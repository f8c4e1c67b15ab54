package outboxsql

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }
