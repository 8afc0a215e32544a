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

// Balances projects every account's posted and pending totals, and the trial
// balance: their sums per asset, with a row of history per batch and asset;
// the closed periods (migration 0014), which state the trial balance at
// their close; and the accounts as opened and amended (migration 0015:
// bounds, metadata, status), which only account events write.
type Balances struct{}

func (Balances) Name() string { return "balances" }

// Version 2 adds closed accounts and the trial balance (migration 0004);
// version 3 the accounts table (migration 0015).
func (Balances) Version() int { return 3 }

// Tables lists the read-model tables Balances writes, every one keyed by ledger.
func (Balances) Tables() []string {
	return []string{"assets", "balances", "trial_balances", "trial_balance_history", "periods", "categories", "accounts"}
}

// ErrUnbalanced means that, after a batch, an asset's debits and credits
// differ: the read model (or the log) is corrupt, and the batch is refused.
var ErrUnbalanced = errors.New("the books do not balance")

// balanceDelta is one account's net movement within a batch: signed deltas.
type balanceDelta struct {
	asset                                                      string
	scale                                                      uint8
	debitsPosted, creditsPosted, debitsPending, creditsPending domain.Units
	position                                                   uint64
}

// batchChanges is what a batch changes, gathered before anything is written.
type batchChanges struct {
	assets   []domain.AssetDefined
	assetsAt []uint64
	opened   []domain.AccountOpened
	openedAt []uint64 // position of each opened account
	// openedTime is each opened account's event's recorded time.
	openedTime []time.Time
	// amended is each account's last bounds and metadata in the batch.
	amended  map[string]*accountAmend
	closed   []string
	closedAt []int64
	deltas   map[string]*balanceDelta
	moves    []domain.Movement // one event's, reused
	periods  []closedPeriod
	cats     categoryChanges
}

// accountAmend is what a batch's AccountBoundsChanged and AccountMetadataSet
// events leave of one account: the last of each, with where.
type accountAmend struct {
	bounds, metadata bool
	min, max         *domain.Amount
	meta             map[string]string
	position         uint64
}

// closedPeriod is a PeriodClosed event with where and when it was recorded.
type closedPeriod struct {
	domain.PeriodClosed
	position   uint64
	recordedAt time.Time
}

func (c *batchChanges) touch(account, asset string, scale uint8, pos uint64) *balanceDelta {
	d, ok := c.deltas[account]
	if !ok {
		d = &balanceDelta{asset: asset, scale: scale}
		c.deltas[account] = d
	}
	d.position = pos
	return d
}

// Apply inserts the batch's new assets and accounts, marks its closed accounts,
// then adds each touched account's net movement and each touched asset's to
// the trial balance in one statement: one row update per account and asset per
// batch, however many transfers touched it (a hot account costs one update).
// It then checks, on the rows as updated, that every touched asset balances.
//
// Errors: ErrUnbalanced naming the asset; a record that does not decode; a
// read model missing an asset or account that an event names; database errors.
func (Balances) Apply(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record) error {
	if len(recs) == 0 {
		return nil
	}
	c := batchChanges{deltas: map[string]*balanceDelta{}, amended: map[string]*accountAmend{}}
	for i := range recs {
		rec := &recs[i]
		e, err := domain.UnmarshalEvent(rec.Type, rec.SchemaVersion, rec.Payload)
		if err != nil {
			return fmt.Errorf("record %d: %w", rec.Position, err)
		}
		c.add(e, rec.Position, rec.RecordedAt)
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
	if err := insertAccounts(ctx, tx, ledger, c.opened, c.openedAt, c.openedTime); err != nil {
		return err
	}
	if err := amendAccounts(ctx, tx, ledger, c.amended); err != nil {
		return err
	}
	closedPerAsset, err := closeAccounts(ctx, tx, ledger, c.closed, c.closedAt)
	if err != nil {
		return err
	}
	counts := c.countsPerAsset(closedPerAsset)
	if len(c.deltas) == 0 && len(counts) == 0 {
		return nil // nothing a balance or the trial balance shows (bounds, metadata)
	}
	return applyDeltas(ctx, tx, ledger, c.deltas, counts, recs[0].Position, recs[len(recs)-1].Position)
}

// add gathers one event's changes: what it moves comes from the domain
// (domain.AppendMovements), into c.moves, reused from event to event.
func (c *batchChanges) add(e domain.Event, pos uint64, recordedAt time.Time) {
	switch e := e.(type) {
	case domain.AssetDefined:
		c.assets, c.assetsAt = append(c.assets, e), append(c.assetsAt, pos)
	case domain.AccountOpened:
		c.opened, c.openedAt = append(c.opened, e), append(c.openedAt, pos)
		c.openedTime = append(c.openedTime, recordedAt)
	case domain.AccountBoundsChanged:
		a := c.amend(e.ID, pos)
		a.bounds, a.min, a.max = true, e.MinBalance, e.MaxBalance
	case domain.AccountMetadataSet:
		a := c.amend(e.ID, pos)
		a.metadata, a.meta = true, e.Metadata
	case domain.AccountClosed:
		c.closed, c.closedAt = append(c.closed, e.ID), append(c.closedAt, int64(pos))
	case domain.CategoryDefined:
		c.cats.add(e, pos)
	}
	c.moves = domain.AppendMovements(c.moves[:0], e)
	for i := range c.moves {
		m := &c.moves[i]
		dp, cp, dq, cq := m.Deltas()
		d := c.touch(m.Account, m.Asset, m.Scale, pos)
		d.debitsPosted, d.creditsPosted = d.debitsPosted.Add(dp), d.creditsPosted.Add(cp)
		d.debitsPending, d.creditsPending = d.debitsPending.Add(dq), d.creditsPending.Add(cq)
	}
}

func (c *batchChanges) amend(account string, pos uint64) *accountAmend {
	a, ok := c.amended[account]
	if !ok {
		a = &accountAmend{}
		c.amended[account] = a
	}
	a.position = pos
	return a
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

// insertAccounts inserts accounts with zero balances written at their asset's
// scale, so that an untouched account reads "0.00", not "0", and their rows
// of the accounts table (bounds, metadata, when opened).
func insertAccounts(ctx context.Context, tx pgx.Tx, ledger string, opened []domain.AccountOpened, at []uint64,
	times []time.Time) error {
	if len(opened) == 0 {
		return nil
	}
	ids := make([]string, len(opened))
	assets := make([]string, len(opened))
	sides := make([]string, len(opened))
	positions := make([]int64, len(opened))
	mins, maxs, metas := make([]*string, len(opened)), make([]*string, len(opened)), make([]string, len(opened))
	for i, e := range opened {
		ids[i], assets[i], sides[i], positions[i] = e.ID, e.Asset, e.Normal.String(), int64(at[i])
		mins[i], maxs[i] = amountText(e.MinBalance), amountText(e.MaxBalance)
		m, err := metadataJSON(e.Metadata)
		if err != nil {
			return fmt.Errorf("account %s opened at %d: %w", e.ID, at[i], err)
		}
		metas[i] = m
	}
	if _, err := tx.Exec(ctx, `INSERT INTO accounts (ledger, account, asset, normal_balance, min_balance, max_balance,
			metadata, opened_position, opened_at, position)
		SELECT $1, a.id, a.asset, a.side, a.min, a.max, a.meta, a.position, a.at, a.position
		FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]::numeric[], $6::text[]::numeric[], $7::text[]::jsonb[],
			$8::bigint[], $9::timestamptz[]) AS a(id, asset, side, min, max, meta, position, at)`,
		ledger, ids, assets, sides, mins, maxs, metas, positions, times); err != nil {
		return fmt.Errorf("insert %d accounts: %w", len(opened), err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO balances (ledger, account, asset, scale, normal_balance,
			debits_posted, credits_posted, debits_pending, credits_pending, position)
		SELECT $1, a.id, a.asset, s.scale, a.side, z.v, z.v, z.v, z.v, a.position
		FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) AS a(id, asset, side, position)
		JOIN assets s ON s.ledger = $1 AND s.code = a.asset
		CROSS JOIN LATERAL (SELECT round(0::numeric, s.scale) AS v) z`, ledger, ids, assets, sides, positions)
	if err != nil {
		return fmt.Errorf("insert %d accounts: %w", len(opened), err)
	}
	if int(tag.RowsAffected()) != len(opened) {
		return fmt.Errorf("inserted %d of %d accounts", tag.RowsAffected(), len(opened))
	}
	return nil
}

// amountText is a bound as its decimal text, nil when unset.
func amountText(a *domain.Amount) *string {
	if a == nil {
		return nil
	}
	s := a.String()
	return &s
}

// metadataJSON is metadata as a JSON object, "{}" when empty.
func metadataJSON(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("metadata: %w", err)
	}
	return string(b), nil
}

// amendAccounts writes the batch's last bounds and metadata of each amended
// account: one statement for the batch.
func amendAccounts(ctx context.Context, tx pgx.Tx, ledger string, amended map[string]*accountAmend) error {
	if len(amended) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(amended)) // one lock order, as applyDeltas
	n := len(ids)
	setBounds, setMeta := make([]bool, n), make([]bool, n)
	mins, maxs, metas := make([]*string, n), make([]*string, n), make([]string, n)
	positions := make([]int64, n)
	for i, id := range ids {
		a := amended[id]
		setBounds[i], setMeta[i], positions[i] = a.bounds, a.metadata, int64(a.position)
		mins[i], maxs[i] = amountText(a.min), amountText(a.max)
		m, err := metadataJSON(a.meta)
		if err != nil {
			return fmt.Errorf("account %s at %d: %w", id, a.position, err)
		}
		metas[i] = m
	}
	tag, err := tx.Exec(ctx, `UPDATE accounts t SET
			min_balance = CASE WHEN a.set_bounds THEN a.min ELSE t.min_balance END,
			max_balance = CASE WHEN a.set_bounds THEN a.max ELSE t.max_balance END,
			metadata = CASE WHEN a.set_meta THEN a.meta ELSE t.metadata END,
			position = a.position
		FROM unnest($2::text[], $3::bool[], $4::text[]::numeric[], $5::text[]::numeric[], $6::bool[], $7::text[]::jsonb[],
			$8::bigint[])
			AS a(id, set_bounds, min, max, set_meta, meta, position)
		WHERE t.ledger = $1 AND t.account = a.id`, ledger, ids, setBounds, mins, maxs, setMeta, metas, positions)
	if err != nil {
		return fmt.Errorf("amend %d accounts: %w", n, err)
	}
	if int(tag.RowsAffected()) != n {
		return fmt.Errorf("amended %d of %d accounts: the read model is missing accounts", tag.RowsAffected(), n)
	}
	return nil
}

// closeAccounts marks accounts closed and returns how many closed per asset.
func closeAccounts(ctx context.Context, tx pgx.Tx, ledger string, ids []string, at []int64) (map[string]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if _, err := tx.Exec(ctx, `UPDATE accounts t SET closed = true, position = c.position
		FROM unnest($2::text[], $3::bigint[]) AS c(account, position)
		WHERE t.ledger = $1 AND t.account = c.account`, ledger, ids, at); err != nil {
		return nil, fmt.Errorf("close %d accounts: %w", len(ids), err)
	}
	rows, err := tx.Query(ctx, `UPDATE balances b SET closed = true, position = c.position
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

// applyDeltas adds the accounts' deltas to their balances, their sums per
// asset and the account counts to the trial balance, and writes the touched
// assets' history at the batch's end, all in one statement. It returns
// ErrUnbalanced unless every touched asset's line, as updated, has debits =
// credits, posted and pending.
//
// The balances are updated by INSERT … ON CONFLICT DO UPDATE, not UPDATE …
// FROM: each row is then found by its key whatever the planner believes.
// UPDATE … FROM joins the deltas to the table, and on a new ledger (its
// statistics said one row) the planner scanned all of the ledger's balances
// for every batch, or compared every delta with every row. An insert that
// finds no row to update is a missing account: it is inserted with a
// negative position, counted, and the batch fails (its transaction rolls
// back). The sums per asset are the deltas', so each asset's count of rows
// updated must be its count of deltas: a row whose asset is not the posting's
// fails the batch with ErrUnbalanced.
func applyDeltas(ctx context.Context, tx pgx.Tx, ledger string, deltas map[string]*balanceDelta,
	counts map[string]assetCounts, from, to uint64) error {
	// Sorted, so that concurrent writers of one ledger's rows (a rebuild beside
	// the live projector) lock them in one order.
	accounts := slices.Sorted(maps.Keys(deltas))
	n := len(accounts)
	assetOf, scales := make([]string, n), make([]int16, n)
	dp, cp, dq, cq := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	positions := make([]int64, n)
	for i, a := range accounts {
		d := deltas[a]
		assetOf[i], scales[i] = d.asset, int16(d.scale)
		dp[i], cp[i] = d.debitsPosted.Format(d.scale), d.creditsPosted.Format(d.scale)
		dq[i], cq[i] = d.debitsPending.Format(d.scale), d.creditsPending.Format(d.scale)
		positions[i] = int64(d.position)
	}
	assets := slices.Sorted(maps.Keys(counts))
	opened, closed := make([]int64, len(assets)), make([]int64, len(assets))
	for i, a := range assets {
		opened[i], closed[i] = counts[a].opened, counts[a].closed
	}
	// Data-modifying CTEs run once each, on one snapshot; RETURNING gives the
	// rows as this statement leaves them, which is what the check reads.
	rows, err := tx.Query(ctx, `WITH d AS (
			SELECT * FROM unnest($2::text[], $3::text[], $4::smallint[], $5::text[]::numeric[], $6::text[]::numeric[],
				$7::text[]::numeric[], $8::text[]::numeric[], $9::bigint[])
				AS d(account, asset, scale, dp, cp, dq, cq, position)
		), moved AS (
			INSERT INTO balances AS b (ledger, account, asset, scale, normal_balance,
				debits_posted, credits_posted, debits_pending, credits_pending, position)
			SELECT $1, d.account, d.asset, d.scale, 'debit', d.dp, d.cp, d.dq, d.cq, -d.position FROM d
			ON CONFLICT (ledger, account) DO UPDATE SET
				debits_posted = b.debits_posted + excluded.debits_posted,
				credits_posted = b.credits_posted + excluded.credits_posted,
				debits_pending = b.debits_pending + excluded.debits_pending,
				credits_pending = b.credits_pending + excluded.credits_pending,
				position = greatest(b.position, -excluded.position)
			RETURNING b.asset, b.position >= 0 AS updated
		), held AS (
			SELECT asset, count(*) AS rows FROM moved WHERE updated GROUP BY asset
		), changes AS (
			SELECT asset, sum(dp) AS dp, sum(cp) AS cp, sum(dq) AS dq, sum(cq) AS cq,
				sum(opened) AS opened, sum(closed) AS closed, sum(deltas) AS deltas
			FROM (
				SELECT asset, dp, cp, dq, cq, 0 AS opened, 0 AS closed, 1 AS deltas FROM d
				UNION ALL
				SELECT asset, 0, 0, 0, 0, opened, closed, 0
				FROM unnest($10::text[], $11::bigint[], $12::bigint[]) AS c(asset, opened, closed)
			) x GROUP BY asset
		), line AS (
			UPDATE trial_balances t SET
				debits_posted = t.debits_posted + c.dp,
				credits_posted = t.credits_posted + c.cp,
				debits_pending = t.debits_pending + c.dq,
				credits_pending = t.credits_pending + c.cq,
				accounts = t.accounts + c.opened - c.closed,
				accounts_closed = t.accounts_closed + c.closed,
				position = $14
			FROM changes c WHERE t.ledger = $1 AND t.asset = c.asset
			RETURNING t.*
		), history AS (
			INSERT INTO trial_balance_history (ledger, asset, position, batch_from, debits_posted, credits_posted,
				debits_pending, credits_pending, accounts, accounts_closed)
			SELECT ledger, asset, position, $13, debits_posted, credits_posted, debits_pending, credits_pending,
				accounts, accounts_closed
			FROM line
		)
		SELECT coalesce(c.asset, h.asset), coalesce(c.deltas, 0), coalesce(h.rows, 0), c.asset IS NULL OR l.asset IS NOT NULL,
			coalesce(l.debits_posted = l.credits_posted AND l.debits_pending = l.credits_pending, true),
			l.debits_posted::text, l.credits_posted::text, l.debits_pending::text, l.credits_pending::text
		FROM changes c FULL JOIN held h ON h.asset = c.asset LEFT JOIN line l ON l.asset = c.asset
		ORDER BY 1`,
		ledger, accounts, assetOf, scales, dp, cp, dq, cq, positions, assets, opened, closed, int64(from), int64(to))
	if err != nil {
		return fmt.Errorf("update %d balances and the trial balance: %w", n, err)
	}
	return checkLines(rows, n, to)
}

// checkLines reads applyDeltas' answer: one row per asset the batch moves or
// whose rows it updated.
func checkLines(rows pgx.Rows, accounts int, at uint64) error {
	var (
		asset          string
		deltas, held   int64
		found          bool
		balanced       bool
		dp, cp, dq, cq *string
		updated        int64
		errs, moved    []error
	)
	_, err := pgx.ForEachRow(rows, []any{&asset, &deltas, &held, &found, &balanced, &dp, &cp, &dq, &cq}, func() error {
		updated += held
		switch {
		case !found:
			errs = append(errs, fmt.Errorf("asset %s has no trial balance line: the read model is missing it", asset))
		case !balanced:
			errs = append(errs, fmt.Errorf("asset %s at %d: debits posted %s, credits posted %s, debits pending %s, credits pending %s: %w",
				asset, at, *dp, *cp, *dq, *cq, ErrUnbalanced))
		}
		if held != deltas {
			moved = append(moved, fmt.Errorf("asset %s at %d: the batch moves %d accounts in it, %d of the rows it updated hold it: %w",
				asset, at, deltas, held, ErrUnbalanced))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update balances and the trial balance: %w", err)
	}
	if int(updated) != accounts {
		// Every account a transfer names was opened by an earlier event: a
		// missing row means this read model is corrupt.
		errs = append(errs, fmt.Errorf("updated %d of %d balances: the read model is missing accounts", updated, accounts))
	} else {
		// Every row was there, yet not in the asset its posting moves.
		errs = append(errs, moved...)
	}
	return errors.Join(errs...)
}
