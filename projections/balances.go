package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Balances projects the trial balance: each asset's sums of the accounts'
// posted and pending totals, with a row of history per batch and asset; the
// assets; the closed periods (migration 0014), which state the trial balance
// at their close; the categories; and, for the trial balance's account
// counts, each account's asset and whether it is closed (trial_accounts).
// An account's own totals are its last statement line's (the movements
// projection, migration 0021): a transfer writes no row per account here.
type Balances struct{}

func (Balances) Name() string { return "balances" }

// Version 2 adds closed accounts and the trial balance (migration 0004);
// version 3 the accounts table (migration 0015); version 4 leaves the
// accounts table and the account totals to the movements projection (0021).
func (Balances) Version() int { return 4 }

// Tables lists the read-model tables Balances writes, every one keyed by ledger.
func (Balances) Tables() []string {
	return []string{"assets", "trial_accounts", "trial_balances", "trial_balance_history", "periods", "categories"}
}

// ErrUnbalanced means that, after a batch, an asset's debits and credits
// differ: the read model (or the log) is corrupt, and the batch is refused.
var ErrUnbalanced = errors.New("the books do not balance")

// assetDelta is one asset's net movement within a batch: the sums of its
// accounts' signed deltas.
type assetDelta struct {
	debitsPosted, creditsPosted, debitsPending, creditsPending domain.Units
	scale                                                      uint8
}

// batchChanges is what a batch changes, gathered before anything is written.
type batchChanges struct {
	assets   []domain.AssetDefined
	assetsAt []uint64
	opened   []domain.AccountOpened
	openedAt []uint64 // position of each opened account
	closed   []string
	closedAt []int64
	deltas   map[string]*assetDelta
	moves    []domain.Movement // one event's, reused
	periods  []closedPeriod
	cats     categoryChanges
}

// closedPeriod is a PeriodClosed event with where and when it was recorded.
type closedPeriod struct {
	domain.PeriodClosed
	position   uint64
	recordedAt time.Time
}

// Apply inserts the batch's new assets and accounts, marks its closed
// accounts, then adds each touched asset's net movement and account counts
// to the trial balance in one statement: one row update per asset per batch,
// however many transfers and accounts it moved. It then checks, on the rows
// as updated, that every touched asset balances.
//
// Errors: ErrUnbalanced naming the asset; a record that does not decode; a
// read model missing an asset or account that an event names; database errors.
func (b Balances) Apply(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record) error {
	return decodeAndApply(ctx, tx, ledger, recs, b)
}

// applyEvents is Apply of records whose events are decoded (eventsApplier).
func (Balances) applyEvents(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record, events []domain.Event) error {
	if len(recs) == 0 {
		return nil
	}
	c := batchChanges{deltas: map[string]*assetDelta{}}
	for i := range recs {
		rec, e := &recs[i], events[i]
		c.add(e, rec.Position)
		if p, ok := e.(domain.PeriodClosed); ok {
			c.periods = append(c.periods, closedPeriod{PeriodClosed: p, position: rec.Position, recordedAt: rec.RecordedAt})
		}
	}
	if err := insertPeriods(ctx, tx, ledger, c.periods); err != nil {
		return err
	}
	if err := upsertCategories(ctx, tx, ledger, &c.cats); err != nil {
		return err
	}
	if err := insertAssets(ctx, tx, ledger, c.assets, c.assetsAt); err != nil {
		return err
	}
	if err := insertTrialAccounts(ctx, tx, ledger, c.opened, c.openedAt); err != nil {
		return err
	}
	closedPerAsset, err := closeTrialAccounts(ctx, tx, ledger, c.closed, c.closedAt)
	if err != nil {
		return err
	}
	counts := c.countsPerAsset(closedPerAsset)
	if len(c.deltas) == 0 && len(counts) == 0 {
		return nil // nothing the trial balance shows (bounds, metadata)
	}
	return applyDeltas(ctx, tx, ledger, c.deltas, counts, recs[0].Position, recs[len(recs)-1].Position)
}

// add gathers one event's changes: what it moves comes from the domain
// (domain.AppendMovements), into c.moves, reused from event to event.
func (c *batchChanges) add(e domain.Event, pos uint64) {
	switch e := e.(type) {
	case domain.AssetDefined:
		c.assets, c.assetsAt = append(c.assets, e), append(c.assetsAt, pos)
	case domain.AccountOpened:
		c.opened, c.openedAt = append(c.opened, e), append(c.openedAt, pos)
	case domain.AccountClosed:
		c.closed, c.closedAt = append(c.closed, e.ID), append(c.closedAt, int64(pos))
	case domain.CategoryDefined:
		c.cats.add(e, pos)
	}
	c.moves = domain.AppendMovements(c.moves[:0], e)
	for i := range c.moves {
		m := &c.moves[i]
		dp, cp, dq, cq := m.Deltas()
		d, ok := c.deltas[m.Asset]
		if !ok {
			d = &assetDelta{scale: m.Scale}
			c.deltas[m.Asset] = d
		}
		d.debitsPosted, d.creditsPosted = d.debitsPosted.Add(dp), d.creditsPosted.Add(cp)
		d.debitsPending, d.creditsPending = d.debitsPending.Add(dq), d.creditsPending.Add(cq)
	}
}

// assetCounts is how a batch changes an asset's account counts.
type assetCounts struct{ opened, closed int64 }

// countsPerAsset returns the account counts per asset the batch changes, with
// an entry (maybe zero) for every asset it defines, opens or closes accounts in.
func (c *batchChanges) countsPerAsset(closed map[string]int64) map[string]assetCounts {
	counts := make(map[string]assetCounts, len(c.assets)+len(closed))
	for _, a := range c.assets {
		counts[a.Code] = assetCounts{}
	}
	for _, o := range c.opened {
		n := counts[o.Asset]
		n.opened++
		counts[o.Asset] = n
	}
	for asset, k := range closed {
		n := counts[asset]
		n.closed += k
		counts[asset] = n
	}
	return counts
}

// insertPeriods inserts closed periods: a handful in a ledger's life, one
// statement each.
func insertPeriods(ctx context.Context, tx pgx.Tx, ledger string, periods []closedPeriod) error {
	for _, p := range periods {
		lines, err := json.Marshal(p.TrialBalance)
		if err != nil {
			return fmt.Errorf("period closed at %d: %w", p.position, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO periods (ledger, position, period_start, period_end, accounts,
			closing_digest, trial_balance, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			ledger, int64(p.position), p.Start, p.End, int64(p.Accounts), p.ClosingDigest, lines, p.recordedAt); err != nil {
			return fmt.Errorf("insert period closed at %d: %w", p.position, err)
		}
	}
	return nil
}

// insertAssets inserts assets and their zero trial balance lines.
func insertAssets(ctx context.Context, tx pgx.Tx, ledger string, assets []domain.AssetDefined, at []uint64) error {
	if len(assets) == 0 {
		return nil
	}
	codes, scales, positions := make([]string, len(assets)), make([]int16, len(assets)), make([]int64, len(assets))
	for i, a := range assets {
		codes[i], scales[i], positions[i] = a.Code, int16(a.Scale), int64(at[i])
	}
	_, err := tx.Exec(ctx, `WITH a AS (
			INSERT INTO assets (ledger, code, scale, position)
			SELECT $1, * FROM unnest($2::text[], $3::smallint[], $4::bigint[])
			RETURNING code, scale, position)
		INSERT INTO trial_balances (ledger, asset, debits_posted, credits_posted, debits_pending, credits_pending,
			accounts, accounts_closed, position)
		SELECT $1, a.code, z.v, z.v, z.v, z.v, 0, 0, a.position
		FROM a CROSS JOIN LATERAL (SELECT round(0::numeric, a.scale) AS v) z`, ledger, codes, scales, positions)
	if err != nil {
		return fmt.Errorf("insert assets %v: %w", codes, err)
	}
	return nil
}

// insertTrialAccounts inserts the accounts opened, each with its asset, for
// the trial balance's account counts.
func insertTrialAccounts(ctx context.Context, tx pgx.Tx, ledger string, opened []domain.AccountOpened, at []uint64) error {
	if len(opened) == 0 {
		return nil
	}
	ids, assets, sides := make([]string, len(opened)), make([]string, len(opened)), make([]string, len(opened))
	positions := make([]int64, len(opened))
	for i, e := range opened {
		ids[i], assets[i], sides[i], positions[i] = e.ID, e.Asset, e.Normal.String(), int64(at[i])
	}
	tag, err := tx.Exec(ctx, `INSERT INTO trial_accounts (ledger, account, asset, scale, normal_balance, position)
		SELECT $1, a.id, a.asset, s.scale, a.side, a.position
		FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) AS a(id, asset, side, position)
		JOIN assets s ON s.ledger = $1 AND s.code = a.asset`, ledger, ids, assets, sides, positions)
	if err != nil {
		return fmt.Errorf("insert %d accounts: %w", len(opened), err)
	}
	if int(tag.RowsAffected()) != len(opened) {
		return fmt.Errorf("inserted %d of %d accounts: the read model is missing their assets", tag.RowsAffected(), len(opened))
	}
	return nil
}

// closeTrialAccounts marks accounts closed and returns how many closed per asset.
func closeTrialAccounts(ctx context.Context, tx pgx.Tx, ledger string, ids []string, at []int64) (map[string]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `UPDATE trial_accounts b SET closed = true, position = c.position
		FROM unnest($2::text[], $3::bigint[]) AS c(account, position)
		WHERE b.ledger = $1 AND b.account = c.account AND NOT b.closed
		RETURNING b.asset`, ledger, ids, at)
	if err != nil {
		return nil, fmt.Errorf("close %d accounts: %w", len(ids), err)
	}
	perAsset := map[string]int64{}
	var (
		asset string
		n     int
	)
	if _, err := pgx.ForEachRow(rows, []any{&asset}, func() error { perAsset[asset]++; n++; return nil }); err != nil {
		return nil, fmt.Errorf("close %d accounts: %w", len(ids), err)
	}
	if n != len(ids) {
		// The log closes an account once, after opening it.
		return nil, fmt.Errorf("closed %d of %d accounts: the read model is missing open accounts", n, len(ids))
	}
	return perAsset, nil
}

// applyDeltas adds the assets' net movements and account counts to the
// trial balance and writes the touched assets' history at the batch's end,
// in one statement. It returns ErrUnbalanced unless every touched asset's
// line, as updated, has debits = credits, posted and pending.
func applyDeltas(ctx context.Context, tx pgx.Tx, ledger string, deltas map[string]*assetDelta,
	counts map[string]assetCounts, from, to uint64) error {
	codes := slices.Sorted(maps.Keys(counts))
	for a := range deltas {
		if _, ok := counts[a]; !ok {
			codes = append(codes, a)
		}
	}
	slices.Sort(codes)
	n := len(codes)
	dp, cp, dq, cq := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	opened, closed := make([]int64, n), make([]int64, n)
	for i, a := range codes {
		dp[i], cp[i], dq[i], cq[i] = "0", "0", "0", "0"
		if d := deltas[a]; d != nil {
			dp[i], cp[i] = d.debitsPosted.Format(d.scale), d.creditsPosted.Format(d.scale)
			dq[i], cq[i] = d.debitsPending.Format(d.scale), d.creditsPending.Format(d.scale)
		}
		opened[i], closed[i] = counts[a].opened, counts[a].closed
	}
	// Data-modifying CTEs run once each, on one snapshot; RETURNING gives the
	// rows as this statement leaves them, which is what the check reads.
	rows, err := tx.Query(ctx, `WITH c AS (
			SELECT * FROM unnest($2::text[], $3::text[]::numeric[], $4::text[]::numeric[], $5::text[]::numeric[],
				$6::text[]::numeric[], $7::bigint[], $8::bigint[]) AS c(asset, dp, cp, dq, cq, opened, closed)
		), line AS (
			UPDATE trial_balances t SET
				debits_posted = t.debits_posted + c.dp,
				credits_posted = t.credits_posted + c.cp,
				debits_pending = t.debits_pending + c.dq,
				credits_pending = t.credits_pending + c.cq,
				accounts = t.accounts + c.opened - c.closed,
				accounts_closed = t.accounts_closed + c.closed,
				position = $10
			FROM c WHERE t.ledger = $1 AND t.asset = c.asset
			RETURNING t.*
		), history AS (
			INSERT INTO trial_balance_history (ledger, asset, position, batch_from, debits_posted, credits_posted,
				debits_pending, credits_pending, accounts, accounts_closed)
			SELECT ledger, asset, position, $9, debits_posted, credits_posted, debits_pending, credits_pending,
				accounts, accounts_closed
			FROM line
		)
		SELECT c.asset, l.asset IS NOT NULL,
			coalesce(l.debits_posted = l.credits_posted AND l.debits_pending = l.credits_pending, true),
			l.debits_posted::text, l.credits_posted::text, l.debits_pending::text, l.credits_pending::text
		FROM c LEFT JOIN line l ON l.asset = c.asset
		ORDER BY 1`,
		ledger, codes, dp, cp, dq, cq, opened, closed, int64(from), int64(to))
	if err != nil {
		return fmt.Errorf("update the trial balance of %d assets: %w", n, err)
	}
	return checkLines(rows, to)
}

// checkLines reads applyDeltas' answer: one row per asset the batch changes.
func checkLines(rows pgx.Rows, at uint64) error {
	var (
		asset          string
		found          bool
		balanced       bool
		dp, cp, dq, cq *string
		errs           []error
	)
	_, err := pgx.ForEachRow(rows, []any{&asset, &found, &balanced, &dp, &cp, &dq, &cq}, func() error {
		switch {
		case !found:
			errs = append(errs, fmt.Errorf("asset %s has no trial balance line: the read model is missing it", asset))
		case !balanced:
			errs = append(errs, fmt.Errorf("asset %s at %d: debits posted %s, credits posted %s, debits pending %s, credits pending %s: %w",
				asset, at, *dp, *cp, *dq, *cq, ErrUnbalanced))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update the trial balance: %w", err)
	}
	return errors.Join(errs...)
}
