package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/devpg"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
)

func (m *Main) openPostgres(ctx context.Context) error {
	url := m.Config.PostgresURL
	if url == "" {
		// Searchable by others: as root, the cluster runs as the postgres user,
		// which must reach its own directory below this one.
		if err := os.MkdirAll(m.Config.DataDir, 0o755); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		m.Logger.Info("starting the private PostgreSQL cluster", "dir", filepath.Join(m.Config.DataDir, "postgres"))
		c, err := devpg.Start(ctx, devpg.Options{
			Dir:  filepath.Join(m.Config.DataDir, "postgres"),
			Logf: func(f string, a ...any) { m.Logger.Info(fmt.Sprintf(f, a...)) },
		})
		if err != nil {
			return fmt.Errorf("embedded PostgreSQL: %w", err)
		}
		m.pg, url = c, c.URL()
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("postgres url: %w", err)
	}
	cfg.MaxConns = int32(max(m.Config.PostgresConnsMax, 4))
	if m.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := m.pool.Ping(ctx); err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := eventstore.Migrate(ctx, m.pool); err != nil {
		return err
	}
	if err := apikeys.Migrate(ctx, m.pool); err != nil {
		return err
	}
	return projections.Migrate(ctx, m.pool)
}
