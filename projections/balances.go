package projections

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Balances projects every account's posted and pending totals.
type Balances struct{}

func (Balances) Name() string { return "balances" }
func (Balances) Version() int { return 1 }

// balanceDelta is one account's net movement within a batch: signed deltas.
type balanceDelta struct {
	scale                                                      uint8
	debitsPosted, creditsPosted, debitsPending, creditsPending domain.Units
	position                                                   uint64
}

// Apply inserts the batch's new accounts, then adds each touched account's net
// movement in one statement: one row update per account per batch, however
// many transfers touched it (a hot account costs one update).
func (Balances) Apply(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record) error {
	var (
		opened []domain.AccountOpened
		at     []uint64 // position of each opened account
	)
	deltas := map[string]*balanceDelta{}
	touch := func(account string, scale uint8, pos uint64) *balanceDelta {
		d, ok := deltas[account]
		if !ok {
			d = &balanceDelta{scale: scale}
			deltas[account] = d
		}
		d.position = pos
		return d
	}
	for i := range recs {
		rec := &recs[i]
		e, err := domain.UnmarshalEvent(rec.Type, rec.SchemaVersion, rec.Payload)
		if err != nil {
			return fmt.Errorf("record %d: %w", rec.Position, err)
		}
		switch e := e.(type) {
		case domain.AssetDefined:
			if err := insertAsset(ctx, tx, ledger, e, rec.Position); err != nil {
				return err
			}
		case domain.AccountOpened:
			opened = append(opened, e)
			at = append(at, rec.Position)
		case domain.TransferCommitted:
			for _, p := range e.Postings {
				posted(touch, p, rec.Position)
			}
		case domain.TransferReversed:
			for _, p := range e.Postings {
				posted(touch, p, rec.Position)
			}
		case domain.TransferPending:
			for _, p := range e.Postings {
				pending(touch, p, p.Amount.Units, rec.Position)
			}
		case domain.PendingPosted:
			for _, hp := range e.Postings {
				p := domain.Posting{Debit: hp.Debit, Credit: hp.Credit, Asset: hp.Asset, Amount: hp.Amount}
				pending(touch, p, hp.Held.Units.Neg(), rec.Position)
				posted(touch, p, rec.Position)
			}
		case domain.PendingVoided:
			for _, p := range e.Postings {
				pending(touch, p, p.Amount.Units.Neg(), rec.Position)
			}
		case domain.PendingExpired:
			for _, p := range e.Postings {
				pending(touch, p, p.Amount.Units.Neg(), rec.Position)
			}
		}
	}
	if err := insertAccounts(ctx, tx, ledger, opened, at); err != nil {
		return err
	}
	return applyDeltas(ctx, tx, ledger, deltas)
}

// posted adds a posting's amount to its accounts' posted totals.
func posted(touch func(string, uint8, uint64) *balanceDelta, p domain.Posting, pos uint64) {
	d := touch(p.Debit, p.Amount.Scale, pos)
	d.debitsPosted = d.debitsPosted.Add(p.Amount.Units)
	c := touch(p.Credit, p.Amount.Scale, pos)
	c.creditsPosted = c.creditsPosted.Add(p.Amount.Units)
}

// pending adds a signed amount to a posting's accounts' pending totals.
func pending(touch func(string, uint8, uint64) *balanceDelta, p domain.Posting, amount domain.Units, pos uint64) {
	d := touch(p.Debit, p.Amount.Scale, pos)
	d.debitsPending = d.debitsPending.Add(amount)
	c := touch(p.Credit, p.Amount.Scale, pos)
	c.creditsPending = c.creditsPending.Add(amount)
}

func insertAsset(ctx context.Context, tx pgx.Tx, ledger string, e domain.AssetDefined, pos uint64) error {
	if _, err := tx.Exec(ctx, `INSERT INTO assets (ledger, code, scale, position) VALUES ($1, $2, $3, $4)`,
		ledger, e.Code, int16(e.Scale), int64(pos)); err != nil {
		return fmt.Errorf("insert asset %s: %w", e.Code, err)
	}
	return nil
}

// insertAccounts inserts accounts with zero balances written at their asset's
// scale, so that an untouched account reads "0.00", not "0".
func insertAccounts(ctx context.Context, tx pgx.Tx, ledger string, opened []domain.AccountOpened, at []uint64) error {
	if len(opened) == 0 {
		return nil
	}
	ids := make([]string, len(opened))
	assets := make([]string, len(opened))
	sides := make([]string, len(opened))
	positions := make([]int64, len(opened))
	for i, e := range opened {
		ids[i], assets[i], sides[i], positions[i] = e.ID, e.Asset, e.Normal.String(), int64(at[i])
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

func applyDeltas(ctx context.Context, tx pgx.Tx, ledger string, deltas map[string]*balanceDelta) error {
	if len(deltas) == 0 {
		return nil
	}
	// Sorted, so that concurrent writers of one ledger's rows (a rebuild beside
	// the live projector) lock them in one order.
	accounts := slices.Sorted(func(yield func(string) bool) {
		for k := range deltas {
			if !yield(k) {
				return
			}
		}
	})
	n := len(accounts)
	dp, cp, dq, cq := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	positions := make([]int64, n)
	for i, a := range accounts {
		d := deltas[a]
		dp[i], cp[i] = d.debitsPosted.Format(d.scale), d.creditsPosted.Format(d.scale)
		dq[i], cq[i] = d.debitsPending.Format(d.scale), d.creditsPending.Format(d.scale)
		positions[i] = int64(d.position)
	}
	tag, err := tx.Exec(ctx, `UPDATE balances b SET
			debits_posted = b.debits_posted + d.dp,
			credits_posted = b.credits_posted + d.cp,
			debits_pending = b.debits_pending + d.dq,
			credits_pending = b.credits_pending + d.cq,
			position = d.position
		FROM unnest($2::text[], $3::text[]::numeric[], $4::text[]::numeric[], $5::text[]::numeric[],
			$6::text[]::numeric[], $7::bigint[]) AS d(account, dp, cp, dq, cq, position)
		WHERE b.ledger = $1 AND b.account = d.account`, ledger, accounts, dp, cp, dq, cq, positions)
	if err != nil {
		return fmt.Errorf("update %d balances: %w", n, err)
	}
	if int(tag.RowsAffected()) != n {
		// Every account a transfer names was opened by an earlier event: a
		// missing row means this read model is corrupt.
		return fmt.Errorf("updated %d of %d balances: the read model is missing accounts", tag.RowsAffected(), n)
	}
	return nil
}
