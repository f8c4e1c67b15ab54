//go:build race

package faults

// raceEnabled is whether the tests run with the race detector, in which case
// the txoutbox binary is built with it too.
const raceEnabled = true
