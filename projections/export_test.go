package projections

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// CopyAmounts copies (i, amounts[i] at scales[i]) into table (i int,
// v numeric) as the projectors write a NUMERIC.
func CopyAmounts(ctx context.Context, conn *pgx.Conn, table string, amounts []domain.Units, scales []uint8) error {
	w := newCopyRows(len(amounts), 32)
	for i, u := range amounts {
		w.row(2)
		w.int4(int32(i))
		w.numeric(u, scales[i])
	}
	err := w.send(ctx, conn, table, []string{"i", "v"})
	w.release(err)
	return err
}

// NumericOf is numericOf: an amount as pgx encodes it, through math/big.
func NumericOf(u domain.Units, scale uint8) any { return numericOf(u, scale) }

// WithLagMax sets how far behind the group's lead a member may be (lagMax).
func (g *Group) WithLagMax(n uint64) *Group {
	g.lagMax = n
	return g
}

// WithAheadFrom makes g read its next batch ahead from batches of n
// records (aheadFromDefault): 1, always.
func (g *Group) WithAheadFrom(n int) *Group {
	g.aheadFrom = n
	return g
}

// WithAheadFrom makes r read its next batch ahead from batches of n
// records (aheadFromDefault): 1, always.
func (r *Runner) WithAheadFrom(n int) *Runner {
	r.aheadFrom = n
	return r
}

// MigrateThrough is Migrate with only the migrations numbered up to last
// (0004_trial_balance.sql is number 4): a test of a migration applies it,
// and only it, on the read model as it stood before, then the later ones.
// The migrations are recorded under the names Migrate gives them.
func MigrateThrough(ctx context.Context, pool *pgxpool.Pool, last int) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sub := fstest.MapFS{}
	for _, name := range names {
		var n int
		if _, err := fmt.Sscanf(path.Base(name), "%04d_", &n); err != nil {
			return fmt.Errorf("migration %s: no number: %w", name, err)
		}
		if n > last {
			continue
		}
		data, err := fs.ReadFile(migrations, name)
		if err != nil {
			return err
		}
		sub[name] = &fstest.MapFile{Data: data}
	}
	return eventstore.ApplyMigrations(ctx, pool, "projections", sub, "migrations")
}

// CopyTypesRow is a row of every kind of field the projectors copy.
type CopyTypesRow struct {
	Text, MaybeText string
	Small           int16
	Int             int32
	Big             int64
	Flag            bool
	At              time.Time
	Texts           []string
	Metadata        map[string]string // nil: NULL
}

// CopyTypes copies rows into table (i int, t text, n text, s int2, i4 int4,
// i8 int8, b bool, at timestamptz, a text[], j jsonb) as the projectors do.
func CopyTypes(ctx context.Context, conn *pgx.Conn, table string, rows []CopyTypesRow) error {
	w := newCopyRows(len(rows), 0)
	for i, r := range rows {
		w.row(10)
		w.int4(int32(i))
		w.text(r.Text)
		w.textOrNull(r.MaybeText)
		w.int2(r.Small)
		w.int4(r.Int)
		w.int8(r.Big)
		w.bool(r.Flag)
		w.timestamptz(r.At)
		w.textArray(r.Texts...)
		if r.Metadata == nil {
			w.null()
		} else {
			w.jsonbMap(r.Metadata)
		}
	}
	err := w.send(ctx, conn, table, []string{"i", "t", "n", "s", "i4", "i8", "b", "at", "a", "j"})
	w.release(err)
	return err
}

// KeepServed makes p keep its served balances however long nobody reads
// them (servedIdleAfter), and returns it: a test's runner may take longer
// than that to get to its check.
func (p *Movements) KeepServed() *Movements {
	p.servedIdle = 1 << 62
	return p
}
