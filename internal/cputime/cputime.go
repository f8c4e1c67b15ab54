// Package cputime reads the CPU time of this process, for benchmarks that
// report the client's share of a transaction's cost: PostgreSQL runs in
// processes of its own, so on a machine both share, this is the part the
// client can cut, and it is steadier than wall time when other jobs run.
package cputime
