package queries_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/queries"
)

// TestFreezingAlertsInByteOrderWhateverTheLocale: in a database whose
// collation is linguistic (ICU en-US), FreezingAlerts hands alerts over in
// the order the writer's AlertMark compares them (position, then id in byte
// order), and ListAlerts lists them so (audit verify's order). Before
// alerts.id was COLLATE "C" (0028), two alerts of one transfer, of rules
// "B-in" (account y) and "a-out" (account x), came a-out first: the writer
// recorded a-out's mark, answered EXISTS to B-in's freeze (its id is
// byte-wise before), and y was never frozen.
func TestFreezingAlertsInByteOrderWhateverTheLocale(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.LinguisticPostgresURL(t))
	testenv.NoError(t, err)
	defer pool.Close()
	testenv.NoError(t, eventstore.Migrate(ctx, pool))
	testenv.NoError(t, projections.Migrate(ctx, pool))

	// The alerts the evaluator raises on one transfer x -> y at position 5.
	for _, a := range []struct{ id, rule, account string }{{"main:5:B-in:y", "B-in", "y"}, {"main:5:a-out:x", "a-out", "x"}} {
		_, err := pool.Exec(ctx, `INSERT INTO alerts (ledger, position, id, rule_id, rule_version, transfer_id, account,
			counterparties, asset, figures, freezes, recorded_at) VALUES ('main', 5, $1, $2, 1, 't', $3, '{}', 'USD', '{}', true, now())`,
			a.id, a.rule, a.account)
		testenv.NoError(t, err)
	}

	// ListAlerts (what audit verify compares with its replay, sorted by
	// strings.Compare within a position) must list them in byte order too.
	page, err := queries.New(pool, nil).ListAlerts(ctx, "main", queries.AlertFilter{}, "", 10, 0)
	testenv.NoError(t, err)
	if len(page.Alerts) != 2 || page.Alerts[0].ID > page.Alerts[1].ID {
		t.Errorf("ListAlerts: %d alerts, not in byte order of ids (audit verify's): %+v", len(page.Alerts), page.Alerts)
	}

	// The writer's state: accounts x and y.
	s := domain.NewState()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	step := func(c domain.Command) error {
		if err := c.Validate(); err != nil {
			return err
		}
		e, err := domain.Decide(s, c, now)
		if err != nil {
			return err
		}
		s.Evolve(s.Position()+1, e)
		return nil
	}
	testenv.NoError(t, step(&domain.DefineAsset{Code: "USD", Scale: 2}))
	for _, id := range []string{"x", "y"} {
		testenv.NoError(t, step(&domain.OpenAccount{ID: id, Asset: "USD", Normal: domain.SideCredit}))
	}

	// The freezer's round: FreezingAlerts after the mark, each a FreezeAccount.
	alerts, err := queries.New(pool, nil).FreezingAlerts(ctx, "main", s.AlertFreezeMark(), 100)
	testenv.NoError(t, err)
	if len(alerts) != 2 {
		t.Fatalf("%d freezing alerts, want 2", len(alerts))
	}
	for _, a := range alerts {
		err := step(&domain.FreezeAccount{AccountID: a.Account, Alert: &domain.AlertMark{Position: a.Position, ID: a.ID}})
		if err != nil && !errors.Is(err, domain.ErrExists) {
			t.Fatalf("freeze for %s: %v", a.ID, err)
		}
	}
	for _, id := range []string{"x", "y"} {
		if a, _ := s.Account(id); a.FrozenAt() == 0 {
			t.Errorf("account %s not frozen: alerts came as %s then %s", id, alerts[0].ID, alerts[1].ID)
		}
	}
}
