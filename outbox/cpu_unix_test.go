//go:build unix

package outbox_test

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time this process has used, user and system.
// PostgreSQL runs in processes of its own, so this is the client's share.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
