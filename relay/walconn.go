package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
)

// replConn is a replication connection streaming a logical slot's changes
// in pgoutput, and confirming what its reader is done with.
type replConn struct {
	conn *pgconn.PgConn
	// confirmed is the LSN up to which the reader needs nothing more: the
	// server may recycle the WAL before it and, for a durable slot, starts
	// there after a reconnect.
	confirmed  pglogrepl.LSN
	sent       pglogrepl.LSN // confirmed as last sent to the server
	nextStatus time.Time
	// settled: the reader holds nothing unconfirmed and no transaction is
	// open, so a keepalive's WAL end may be confirmed: everything before
	// it was sent, and the reader has handled all of it.
	settled bool
}

// walStatusEvery is how often the relay confirms what it has handled when
// the server does not ask sooner.
const walStatusEvery = 5 * time.Second

// dialReplication opens a replication connection with pool's settings.
func dialReplication(ctx context.Context, pool *pgxpool.Pool) (*replConn, error) {
	cfg := pool.Config().ConnConfig.Config.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "txoutbox relay"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect for replication: %w", err)
	}
	return &replConn{conn: conn, settled: true}, nil
}

// close ends the connection; a temporary slot goes with it.
func (c *replConn) close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = c.conn.Close(ctx)
}

// start streams slot's changes after lsn (0: after the slot's confirmed
// position) through publication pub, with logical decoding messages.
func (c *replConn) start(ctx context.Context, slot string, lsn pglogrepl.LSN, pub string) error {
	err := pglogrepl.StartReplication(ctx, c.conn, slot, lsn, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + quotePublication(pub) + "'", "messages 'true'"},
	})
	if err != nil {
		return fmt.Errorf("start replication from slot %s: %w", slot, err)
	}
	c.confirmed, c.sent = lsn, lsn
	c.nextStatus = time.Now().Add(walStatusEvery)
	return nil
}

// confirm records that the reader is done with everything up to lsn; the
// server hears of it at the next status update (flush sends one now).
func (c *replConn) confirm(lsn pglogrepl.LSN) {
	if lsn > c.confirmed {
		c.confirmed = lsn
	}
}

// flush sends the confirmed position now if it moved.
func (c *replConn) flush(ctx context.Context) error {
	if c.confirmed == c.sent {
		return nil
	}
	return c.status(ctx)
}

func (c *replConn) status(ctx context.Context) error {
	if err := pglogrepl.SendStandbyStatusUpdate(ctx, c.conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: c.confirmed}); err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	c.sent = c.confirmed
	c.nextStatus = time.Now().Add(walStatusEvery)
	return nil
}

// errNoMessage is receive's answer when until passed without a message.
var errNoMessage = errors.New("no message")

// receive returns the next pgoutput message and the WAL position it came
// at, answering keepalives and sending status updates on the way. It
// returns errNoMessage when until passes first (a zero until waits for the
// next status update only).
func (c *replConn) receive(ctx context.Context, until time.Time) (pglogrepl.Message, pglogrepl.LSN, error) {
	for {
		if !time.Now().Before(c.nextStatus) {
			if err := c.status(ctx); err != nil {
				return nil, 0, err
			}
		}
		deadline := c.nextStatus
		if !until.IsZero() && until.Before(deadline) {
			deadline = until
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		msg, err := c.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				if !until.IsZero() && !time.Now().Before(until) {
					return nil, 0, errNoMessage
				}
				continue
			}
			return nil, 0, fmt.Errorf("receive: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.ErrorResponse:
			return nil, 0, fmt.Errorf("receive: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return nil, 0, fmt.Errorf("parse keepalive: %w", err)
				}
				if c.settled {
					c.confirm(ka.ServerWALEnd)
				}
				if ka.ReplyRequested {
					c.nextStatus = time.Time{}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return nil, 0, fmt.Errorf("parse WAL data: %w", err)
				}
				m, err := pglogrepl.Parse(xld.WALData)
				if err != nil {
					return nil, 0, fmt.Errorf("decode WAL message: %w", err)
				}
				return m, xld.WALStart, nil
			}
		}
	}
}

// quotePublication quotes a publication name for pgoutput's
// publication_names, a string literal holding a list of identifiers.
func quotePublication(name string) string {
	q := `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
	return strings.ReplaceAll(q, `'`, `''`)
}

// sleepCtx waits for d, or until ctx is done; it reports whether it waited
// the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
