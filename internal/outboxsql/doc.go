// Package outboxsql is the one SQL layer of the outbox schema. Next to the
// migrations that define the tables it holds everything else that spells
// them: the table names, the status values, the rule for schema names, and
// the text of every query the library runs, built once per schema by New.
// The outbox client, the relay, outboxtest, outboxprom and the admin
// queries all take their SQL from here, so a column rename touches one
// package.
//
// Queries take a DB, which a *pgxpool.Pool, a *pgxpool.Conn, a *pgx.Conn and
// a pgx.Tx all satisfy; the public packages name it through aliases
// (relay.Executor, outboxtest.Querier).
package outboxsql
