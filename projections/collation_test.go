package projections_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// TestMigrateRefusesALinguisticCollation: the read models are not made in a
// database whose collation does not order ids by their bytes (their prefix
// ranges would miss accounts there), and are in one whose collation does.
func TestMigrateRefusesALinguisticCollation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.PostgresURL(t) // collation C: testenv's template
	admin, err := pgx.Connect(ctx, url)
	testenv.NoError(t, err)
	defer admin.Close(ctx)
	name := strings.ToLower(testenv.Name(t)) + "_icu"
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()+
		` TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LC_COLLATE 'C' LC_CTYPE 'C'`); err != nil {
		t.Skipf("this PostgreSQL makes no ICU database: %v", err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), `DROP DATABASE `+pgx.Identifier{name}.Sanitize()) })
	cfg, err := pgxpool.ParseConfig(url)
	testenv.NoError(t, err)
	cfg.ConnConfig.Database = name
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	testenv.NoError(t, err)
	if err := projections.Migrate(ctx, pool); !errors.Is(err, projections.ErrCollation) || !strings.Contains(err.Error(), "ICU") {
		t.Errorf("Migrate in an ICU en-US database: %v, want ErrCollation naming ICU", err)
	}
	pool.Close()

	byteOrdered, err := pgxpool.New(ctx, url)
	testenv.NoError(t, err)
	defer byteOrdered.Close()
	testenv.NoError(t, projections.Migrate(ctx, byteOrdered))
}
