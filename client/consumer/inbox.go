package consumer

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/eventstore"
)

// The inbox: a consumer's checkpoint is a row of the service's own
// PostgreSQL, moved in the transaction that applies the events, so that the
// effects of an event and the record of having applied it commit together
// or not at all. A crash before the commit leaves neither, and the events
// come again; after it, both, and they are skipped.

// migrateLockKey serialises Migrate across processes (an advisory lock:
// CREATE TABLE IF NOT EXISTS run concurrently can still collide).
const migrateLockKey = 0x6c65646765720001

// consumerNameMax bounds a consumer's name.
const consumerNameMax = 128

// Migrate creates the checkpoint table, ledger_consumer_checkpoints, if it
// does not exist. It keeps no migration table of its own: a service's
// migrations tool may own schema_migrations.
//
// Errors: the database's.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLockKey)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS ledger_consumer_checkpoints (
			consumer   text NOT NULL,
			ledger     text NOT NULL,
			position   bigint NOT NULL CHECK (position >= 0),
			hash       bytea NOT NULL CHECK (length(hash) = 32),
			updated_at timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (consumer, ledger))`)
		return err
	})
	if err != nil {
		return fmt.Errorf("consumer: migrate: %w", err)
	}
	return nil
}

// TxHandler applies one event within the transaction that moves the
// checkpoint past it. It must do all its work through tx; an error rolls
// back the whole batch and stops the run.
type TxHandler func(ctx context.Context, tx pgx.Tx, ev Event) error

// ErrCheckpointMoved means the checkpoint row went back, or changed hash,
// under a running consumer: reset by hand, or another history. The run
// stops; a new run starts from the row.
var ErrCheckpointMoved = errors.New("the checkpoint moved under the consumer")

// RunPostgres applies the ledger's events with h, exactly once in effect,
// until ctx ends or it fails: each batch (at most Config.BatchMax events)
// in one transaction of pool that locks the checkpoint row (name, ledger),
// skips events at or below it, calls h for each event and moves the row to
// the last one. Call Migrate first. Several processes may run the same
// name: the row lock makes them take turns, each skipping what another
// applied.
//
// Errors: ctx's; h's, wrapped with the position (the batch is rolled back);
// *ChainError; ErrNotInLog; ErrCheckpointMoved; ErrNotInStream; NATS's
// and the database's. After any of them a new run resumes from the checkpoint.
func (c *Consumer) RunPostgres(ctx context.Context, pool *pgxpool.Pool, name string, h TxHandler) error {
	if name == "" || len(name) > consumerNameMax {
		return fmt.Errorf("consumer: name %q: want 1..%d bytes", name, consumerNameMax)
	}
	at, err := c.loadCheckpoint(ctx, pool, name)
	if err != nil {
		return err
	}
	r, err := c.reader(ctx)
	if err != nil {
		return err
	}
	defer r.close()
	for {
		evs, ferr := r.fetch(ctx, at, c.cfg.BatchMax)
		if len(evs) > 0 {
			if at, err = c.apply(ctx, pool, name, at, evs, h); err != nil {
				return err
			}
		}
		if ferr != nil {
			return ferr
		}
	}
}

// loadCheckpoint returns the consumer's checkpoint, creating it at the
// ledger's start.
func (c *Consumer) loadCheckpoint(ctx context.Context, pool *pgxpool.Pool, name string) (Checkpoint, error) {
	var zero eventstore.Hash
	if _, err := pool.Exec(ctx, `INSERT INTO ledger_consumer_checkpoints (consumer, ledger, position, hash)
		VALUES ($1, $2, 0, $3) ON CONFLICT DO NOTHING`, name, c.cfg.Ledger, zero[:]); err != nil {
		return Checkpoint{}, fmt.Errorf("consumer %s: checkpoint of %s: %w", c.cfg.Ledger, name, err)
	}
	at, err := readCheckpoint(ctx, pool, name, c.cfg.Ledger, "")
	if err != nil {
		return Checkpoint{}, fmt.Errorf("consumer %s: checkpoint of %s: %w", c.cfg.Ledger, name, err)
	}
	return at, nil
}

// querier is a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readCheckpoint(ctx context.Context, q querier, name, ledger, suffix string) (Checkpoint, error) {
	var (
		pos  int64
		hash []byte
	)
	if err := q.QueryRow(ctx, `SELECT position, hash FROM ledger_consumer_checkpoints
		WHERE consumer = $1 AND ledger = $2`+suffix, name, ledger).Scan(&pos, &hash); err != nil {
		return Checkpoint{}, err
	}
	if len(hash) != eventstore.HashSize {
		return Checkpoint{}, fmt.Errorf("hash of %d bytes, want %d", len(hash), eventstore.HashSize)
	}
	return Checkpoint{Position: uint64(pos), Hash: eventstore.Hash(hash)}, nil
}

// apply applies evs, which continue at, in one transaction, and returns the
// checkpoint the row holds after it.
func (c *Consumer) apply(ctx context.Context, pool *pgxpool.Pool, name string, at Checkpoint, evs []Event, h TxHandler) (Checkpoint, error) {
	var after Checkpoint
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		stored, err := readCheckpoint(ctx, tx, name, c.cfg.Ledger, " FOR UPDATE")
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		todo, err := c.unapplied(stored, at, evs)
		if err != nil {
			return err
		}
		after = stored
		if len(todo) == 0 {
			return nil // another run of the same name applied them
		}
		for i := range todo {
			if err := h(ctx, tx, todo[i]); err != nil {
				return fmt.Errorf("handler at %d: %w", todo[i].Position, err)
			}
		}
		after = todo[len(todo)-1].Checkpoint()
		_, err = tx.Exec(ctx, `UPDATE ledger_consumer_checkpoints SET position = $3, hash = $4, updated_at = now()
			WHERE consumer = $1 AND ledger = $2`, name, c.cfg.Ledger, int64(after.Position), after.Hash[:])
		return err
	})
	if err != nil {
		return Checkpoint{}, fmt.Errorf("consumer %s: %s at %d: %w", c.cfg.Ledger, name, evs[0].Position, err)
	}
	return after, nil
}

// unapplied returns the events of evs (which continue at) past stored, the
// row's checkpoint: all of them when the row is still at `at`; fewer, or
// none, when another run of the same name moved it on. The row must be on
// the same chain: at a position within evs, with that event's hash.
//
// Errors: ErrCheckpointMoved.
func (c *Consumer) unapplied(stored, at Checkpoint, evs []Event) ([]Event, error) {
	last := evs[len(evs)-1].Checkpoint()
	switch {
	case stored == at:
		return evs, nil
	case stored.Position <= at.Position:
		return nil, fmt.Errorf("at %d (%x), the consumer at %d (%x): %w",
			stored.Position, stored.Hash[:8], at.Position, at.Hash[:8], ErrCheckpointMoved)
	case stored.Position > last.Position:
		// Past the batch: the next fetch starts from the row. Its hash is
		// taken as is: the row was written by a run that verified it.
		return nil, nil
	}
	i := stored.Position - at.Position - 1
	if evs[i].Record.Hash != stored.Hash {
		return nil, fmt.Errorf("at %d with hash %x, the event there has %x: %w",
			stored.Position, stored.Hash[:8], evs[i].Record.Hash[:8], ErrCheckpointMoved)
	}
	return evs[i+1:], nil
}
