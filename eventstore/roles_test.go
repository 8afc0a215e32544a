package eventstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// rolePool connects to a copy of the migrated schema as a login that is a
// member of group only, and returns that pool and one as the owner.
func rolePool(t *testing.T, group string) (role, owner *pgxpool.Pool) {
	t.Helper()
	ownerURL := testenv.MigratedPostgresURL(t)
	owner, err := pgxpool.New(context.Background(), ownerURL)
	testenv.NoError(t, err)
	t.Cleanup(owner.Close)
	var exists bool
	testenv.NoError(t, owner.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, group).Scan(&exists))
	if !exists {
		t.Skipf("the test user may not create roles: no %s role to check", group)
	}
	role, err = pgxpool.New(context.Background(), testenv.LoginURL(t, ownerURL, group))
	testenv.NoError(t, err)
	t.Cleanup(role.Close)
	return role, owner
}

// refused fails t unless err is PostgreSQL's insufficient_privilege: a
// missing grant, or one of the event store's triggers.
func refused(t *testing.T, what string, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("%s: %v, want insufficient_privilege (42501)", what, err)
	}
}

// inTx runs stmts in one transaction on pool and returns the first error,
// the COMMIT's included.
func inTx(ctx context.Context, pool *pgxpool.Pool, stmts func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, pool, stmts)
}

// callAppend calls append_events with recs after expected, as Append does,
// and says whether it moved the head.
func callAppend(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, ledger string, expected int64, recs ...eventstore.Record) (bool, error) {
	var (
		types, commands        []string
		versions               []int16
		recorded               []time.Time
		payloads, prev, hashes [][]byte
	)
	for _, r := range recs {
		types, commands = append(types, r.Type), append(commands, r.CommandID)
		versions, recorded = append(versions, int16(r.SchemaVersion)), append(recorded, r.RecordedAt)
		payloads, prev, hashes = append(payloads, r.Payload), append(prev, r.PrevHash[:]), append(hashes, r.Hash[:])
	}
	var moved bool
	err := q.QueryRow(ctx, `SELECT append_events($1, $2, $3, $4, $5, $6, $7, $8, $9)`, ledger, expected,
		types, versions, recorded, commands, payloads, prev, hashes).Scan(&moved)
	return moved, err
}

func insertRecord(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
	_, err := tx.Exec(ctx, `INSERT INTO events (ledger, position, type, schema_version, recorded_at, command_id, payload, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, r.Ledger, int64(r.Position), r.Type, int16(r.SchemaVersion),
		r.RecordedAt, r.CommandID, r.Payload, r.PrevHash[:], r.Hash[:])
	return err
}

// TestWriterLoginRefusals: a login that is only in ledger_writer appends
// through Append and a lease, and the database refuses it everything else
// that would change the log or its head: UPDATE, DELETE or TRUNCATE of
// events, an INSERT into events, a direct write of ledger_heads, an append
// from a position the head is not at (sideways), off the chain at the head
// or within the batch, or with arrays of unequal length. The head and the
// log are unchanged after each.
func TestWriterLoginRefusals(t *testing.T) {
	t.Parallel()
	writer, owner := rolePool(t, "ledger_writer")
	ctx := context.Background()
	ledger := testenv.Name(t)
	s := eventstore.New(writer)
	recs := records(ledger, 0, eventstore.Hash{}, 3)
	testenv.NoError(t, s.Append(ctx, ledger, 0, eventstore.Hash{}, recs[:2]))
	lease := eventstore.NewLease(writer.Config().ConnConfig)
	defer lease.Close()
	held, ok, err := lease.TryAcquire(ctx, ledger)
	testenv.NoError(t, err)
	if !ok {
		t.Fatal("lease held")
	}
	testenv.NoError(t, held.Append(ctx, 2, recs[1].Hash, recs[2:]))
	held.Release()
	head, headHash := recs[2].Position, recs[2].Hash
	next := records(ledger, head, headHash, 2)
	other := records(ledger, head, eventstore.Hash{7}, 1)[0] // chained to another hash

	for _, c := range []struct {
		what  string
		stmts func(pgx.Tx) error
	}{
		{"UPDATE events", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE events SET command_id = 'x' WHERE ledger = $1`, ledger)
			return err
		}},
		{"DELETE events", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM events WHERE ledger = $1 AND position = 3`, ledger)
			return err
		}},
		{"TRUNCATE events", func(tx pgx.Tx) error { _, err := tx.Exec(ctx, `TRUNCATE events`); return err }},
		{"UPDATE ledger_heads", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE ledger_heads SET position = 2, hash = $2 WHERE ledger = $1`, ledger, recs[1].Hash[:])
			return err
		}},
		{"INSERT ledger_heads", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO ledger_heads (ledger, position, hash) VALUES ($1 || 'x', 5, $2)`, ledger, headHash[:])
			return err
		}},
		{"DELETE ledger_heads", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM ledger_heads WHERE ledger = $1`, ledger)
			return err
		}},
		{"INSERT events", func(tx pgx.Tx) error { return insertRecord(ctx, tx, next[0]) }},
		{"an append off the chain at the head", func(tx pgx.Tx) error {
			_, err := callAppend(ctx, tx, ledger, 3, other)
			return err
		}},
		{"an append whose events are not chained to each other", func(tx pgx.Tx) error {
			broken := next[1]
			broken.PrevHash = eventstore.Hash{9}
			_, err := callAppend(ctx, tx, ledger, 3, next[0], broken)
			return err
		}},
		{"INSERT api_keys", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO api_keys (id, secret_hash, roles) VALUES ('0123456789ab', $1, ARRAY['admin'])`, headHash[:])
			return err
		}},
		{"UPDATE api_keys", func(tx pgx.Tx) error { _, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = NULL`); return err }},
	} {
		refused(t, c.what+" as ledger_writer", inTx(ctx, writer, c.stmts))
	}

	// Sideways: an append from a position the head is not at moves nothing.
	moved, err := callAppend(ctx, writer, ledger, 2, next[0])
	testenv.NoError(t, err)
	if moved {
		t.Errorf("append_events from 2 with the head at 3 moved it")
	}
	// Arrays that do not line up, or a position before the first, are
	// refused as bad arguments.
	var pgErr *pgconn.PgError
	if _, err := writer.Exec(ctx, `SELECT append_events($1, 3, ARRAY['a'], ARRAY[1]::smallint[], ARRAY[now()], ARRAY['c'],
		ARRAY['{}']::json[], ARRAY[$2::bytea, $2], ARRAY[$2::bytea])`, ledger, headHash[:]); !errors.As(err, &pgErr) || pgErr.Code != "22023" {
		t.Errorf("append_events with arrays of unequal length: %v, want invalid_parameter_value (22023)", err)
	}
	if _, err := callAppend(ctx, writer, ledger, -1, next[0]); !errors.As(err, &pgErr) || pgErr.Code != "22023" {
		t.Errorf("append_events from -1: %v, want invalid_parameter_value (22023)", err)
	}
	// Nor may the role write a read model: derived data is the projector's.
	rows, err := owner.Query(ctx, `SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace
		AND c.relkind = 'r' AND has_table_privilege('ledger_projector', c.oid, 'DELETE')`)
	testenv.NoError(t, err)
	models, err := pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.NoError(t, err)
	if len(models) < 10 {
		t.Fatalf("read models %v: want the projections' tables", models)
	}
	for _, m := range models {
		_, err := writer.Exec(ctx, "DELETE FROM "+pgx.Identifier{m}.Sanitize())
		refused(t, "DELETE FROM "+m+" as ledger_writer", err)
	}

	pos, hash, err := s.Head(ctx, ledger)
	testenv.NoError(t, err)
	if pos != head || hash != headHash {
		t.Fatalf("head after the refusals: %d %x, want %d %x", pos, hash[:4], head, headHash[:4])
	}
	if got := readAll(t, eventstore.New(owner), ledger); len(got) != 3 || got[2].Hash != headHash {
		t.Fatalf("log after the refusals: %d events, want the 3 appended", len(got))
	}
	// And what a writer is for still works after them.
	testenv.NoError(t, s.Append(ctx, ledger, head, headHash, next))
}

// TestProjectorReaderKeysLoginRefusals: a login in ledger_projector writes
// read models but neither the log, its heads nor API keys; one in
// ledger_reader writes nothing; one in ledger_keys writes API keys and
// nothing of the log or the read models.
func TestProjectorReaderKeysLoginRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	zero := make([]byte, eventstore.HashSize)
	appendEvent := func(pool *pgxpool.Pool) error {
		return inTx(ctx, pool, func(tx pgx.Tx) error {
			if _, err := callAppend(ctx, tx, "x", 0, records("x", 0, eventstore.Hash{}, 1)[0]); err != nil {
				return err
			}
			return insertRecord(ctx, tx, records("x", 0, eventstore.Hash{}, 1)[0])
		})
	}
	mintKey := func(pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `INSERT INTO api_keys (id, secret_hash, roles) VALUES ('0123456789ab', $1, ARRAY['admin'])`, zero)
		return err
	}
	writeModel := func(pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `INSERT INTO projection_checkpoints (ledger, projection, version, position) VALUES ('x', 'balances', 1, 1)`)
		return err
	}
	moveHead := func(pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `INSERT INTO ledger_heads (ledger, position, hash) VALUES ('x', 1, $1)`, zero)
		return err
	}
	for _, c := range []struct {
		group   string
		refused map[string]func(*pgxpool.Pool) error
		allowed map[string]func(*pgxpool.Pool) error
	}{
		{"ledger_projector", map[string]func(*pgxpool.Pool) error{"append": appendEvent, "mint a key": mintKey, "move a head": moveHead},
			map[string]func(*pgxpool.Pool) error{"write a read model": writeModel}},
		{"ledger_reader", map[string]func(*pgxpool.Pool) error{"append": appendEvent, "mint a key": mintKey,
			"move a head": moveHead, "write a read model": writeModel}, nil},
		{"ledger_keys", map[string]func(*pgxpool.Pool) error{"append": appendEvent, "move a head": moveHead, "write a read model": writeModel},
			map[string]func(*pgxpool.Pool) error{"mint a key": mintKey}},
	} {
		t.Run(c.group, func(t *testing.T) {
			t.Parallel()
			pool, _ := rolePool(t, c.group)
			for what, f := range c.refused {
				refused(t, what+" as "+c.group, f(pool))
			}
			for what, f := range c.allowed {
				if err := f(pool); err != nil {
					t.Errorf("%s as %s: %v, want allowed", what, c.group, err)
				}
			}
		})
	}
}
