//go:build !unix

package bench

import "time"

// processCPU is not measured here; the CPU rows stay empty.
func processCPU() time.Duration { return 0 }
