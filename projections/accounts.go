package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
)

// accountChanges is what a batch changes of the accounts table (migration
// 0015; the movements projector's since 0021): accounts opened, amended,
// closed, frozen and unfrozen (0025). Transfers never touch it.
type accountChanges struct {
	opened   []domain.AccountOpened
	openedAt []uint64 // position of each opened account
	// openedTime is each opened account's event's recorded time.
	openedTime []time.Time
	// amended is each account's last bounds and metadata in the batch.
	amended  map[string]*accountAmend
	closed   []string
	closedAt []int64
	// freezes is each account's freeze as the batch leaves it.
	freezes map[string]*accountFreeze
}

// accountFreeze is what a batch's AccountFrozen and AccountUnfrozen events
// leave of one account's freeze.
type accountFreeze struct {
	// frozen: frozen at the batch's end, since position at (the batch's
	// first freeze after its last unfreeze).
	frozen bool
	at     int64
	// thawed: the batch unfroze the account, so a freeze before the batch
	// is not the one in force.
	thawed bool
	// last is the position of the batch's last freeze or unfreeze.
	last int64
}

// accountAmend is what a batch's AccountBoundsChanged and AccountMetadataSet
// events leave of one account: the last of each, with where.
type accountAmend struct {
	bounds, metadata bool
	min, max         *domain.Amount
	meta             map[string]string
	position         uint64
}

// add gathers e if it is an account event.
func (c *accountChanges) add(e domain.Event, pos uint64, recordedAt time.Time) {
	switch e := e.(type) {
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
	case domain.AccountFrozen:
		// A freeze of a frozen account (an alert's action records one)
		// leaves the freeze in force where it was.
		f := c.freeze(e.ID)
		if !f.frozen {
			f.frozen, f.at = true, int64(pos)
		}
		f.last = int64(pos)
	case domain.AccountUnfrozen:
		f := c.freeze(e.ID)
		f.frozen, f.at, f.thawed, f.last = false, 0, true, int64(pos)
	}
}

func (c *accountChanges) freeze(account string) *accountFreeze {
	if c.freezes == nil {
		c.freezes = map[string]*accountFreeze{}
	}
	f, ok := c.freezes[account]
	if !ok {
		f = &accountFreeze{}
		c.freezes[account] = f
	}
	return f
}

func (c *accountChanges) amend(account string, pos uint64) *accountAmend {
	if c.amended == nil {
		c.amended = map[string]*accountAmend{}
	}
	a, ok := c.amended[account]
	if !ok {
		a = &accountAmend{}
		c.amended[account] = a
	}
	a.position = pos
	return a
}

// write applies the batch's account changes: openings, then amendments,
// then closings, the log's order for any one account.
func (c *accountChanges) write(ctx context.Context, tx pgx.Tx, ledger string) error {
	if err := insertAccounts(ctx, tx, ledger, c.opened, c.openedAt, c.openedTime); err != nil {
		return err
	}
	if err := amendAccounts(ctx, tx, ledger, c.amended); err != nil {
		return err
	}
	if err := freezeAccounts(ctx, tx, ledger, c.freezes); err != nil {
		return err
	}
	return closeAccounts(ctx, tx, ledger, c.closed, c.closedAt)
}

// freezeAccounts writes each frozen or unfrozen account's freeze as the
// batch leaves it: the batch's freeze where the batch unfroze the account
// or it was not frozen before, else the one in force before it.
func freezeAccounts(ctx context.Context, tx pgx.Tx, ledger string, freezes map[string]*accountFreeze) error {
	if len(freezes) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(freezes)) // one lock order, as amendAccounts'
	at, thawed, last := make([]*int64, len(ids)), make([]bool, len(ids)), make([]int64, len(ids))
	for i, id := range ids {
		f := freezes[id]
		if f.frozen {
			at[i] = &f.at
		}
		thawed[i], last[i] = f.thawed, f.last
	}
	tag, err := tx.Exec(ctx, `UPDATE accounts a
		SET frozen_position = CASE WHEN f.at IS NULL THEN NULL WHEN f.thawed THEN f.at
				ELSE coalesce(a.frozen_position, f.at) END,
			position = greatest(a.position, f.last)
		FROM unnest($2::text[], $3::bigint[], $4::boolean[], $5::bigint[]) AS f(id, at, thawed, last)
		WHERE a.ledger = $1 AND a.account = f.id`, ledger, ids, at, thawed, last)
	if err != nil {
		return fmt.Errorf("freeze %d accounts: %w", len(ids), err)
	}
	if int(tag.RowsAffected()) != len(ids) {
		// The log freezes and unfreezes only accounts it opened.
		return fmt.Errorf("froze or unfroze %d of %d accounts: the read model is missing accounts", tag.RowsAffected(), len(ids))
	}
	return nil
}

// insertAccounts inserts the accounts opened: bounds, metadata, when opened.
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
	ids := slices.Sorted(maps.Keys(amended)) // one lock order for concurrent writers of the rows
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

// closeAccounts marks accounts closed.
func closeAccounts(ctx context.Context, tx pgx.Tx, ledger string, ids []string, at []int64) error {
	if len(ids) == 0 {
		return nil
	}
	tag, err := tx.Exec(ctx, `UPDATE accounts t SET closed = true, position = greatest(t.position, c.position)
		FROM unnest($2::text[], $3::bigint[]) AS c(account, position)
		WHERE t.ledger = $1 AND t.account = c.account AND NOT t.closed`, ledger, ids, at)
	if err != nil {
		return fmt.Errorf("close %d accounts: %w", len(ids), err)
	}
	if int(tag.RowsAffected()) != len(ids) {
		// The log closes an account once, after opening it.
		return fmt.Errorf("closed %d of %d accounts: the read model is missing open accounts", tag.RowsAffected(), len(ids))
	}
	return nil
}
