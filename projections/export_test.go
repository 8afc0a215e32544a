package projections

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// NumericValue is u minor units at scale as the movements projector writes
// a NUMERIC; UseUnitsCodec makes conn encode it without math/big.
func NumericValue(u domain.Units, scale uint8) any { return unitsNumeric{u, scale} }

// UseUnitsCodec is useUnitsCodec, for tests.
func UseUnitsCodec(conn *pgx.Conn) { useUnitsCodec(conn) }

// WithLagMax sets how far behind the group's lead a member may be (lagMax).
func (g *Group) WithLagMax(n uint64) *Group {
	g.lagMax = n
	return g
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
