// Package clitest tests the txoutbox binary as its users run it: its tests
// build the binary once, then run its subcommands against real PostgreSQL
// databases and compare what they print with golden files. It has no code
// of its own.
package clitest
