// Package migratetest applies the outbox's and the events API's migrations
// with the tools teams use, goose and golang-migrate, up, down and up again
// on a real database, and checks that each down migration leaves the schema
// exactly as it found it.
//
// It is a module of its own so that the tools and what they require stay
// out of txoutbox's go.mod, and so out of its users' builds. Run it from
// this directory: go test ./...
package migratetest
