package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
)

// movementBatch is what a folded batch writes: lines, heads, accounts,
// assets, clock. It holds nothing of the cache, which the next batch's
// fold may be changing while it is written.
type movementBatch struct {
	p      *Movements
	ledger string
	// cache is the cache as kept after the batch: discard drops it.
	cache    *movementCache
	ledgerNo int32
	// lines is the lines' COPY, in key order; nil when the batch has none.
	lines    *copyRows
	heads    movementHeadRows
	accounts accountChanges
	assets   []domain.AssetDefined
	ticks    []movementTick
	// served is the balances the batch leaves, served once it commits;
	// nil while nobody reads them.
	served *servedRows
}

// movementHeadRows are the movement_heads rows of the accounts a batch
// opens, column by column: what never changes of an account. Its totals
// are its last line's.
type movementHeadRows struct {
	accounts, assets, normals []string
	scales                    []int16
	opened                    []int64
}

// batch returns what the fold writes, the lines encoded, and with served
// the balances it leaves.
func (f *movementFold) batch(served bool) *movementBatch {
	b := &movementBatch{cache: f.movementCache, ledgerNo: f.ledgerNo, accounts: f.accounts, assets: f.assets, ticks: f.ticks}
	var order []int32
	if len(f.lines) > 0 {
		order = keyOrder(f.lines)
		b.lines = newCopyRows(len(f.lines), movementLineBytes)
		copyLines(b.lines, f.ledgerNo, f.lines, order)
	}
	if served {
		b.served = f.servedRows(order)
	}
	for _, a := range f.opened {
		h := f.heads.Get(a)
		r := &b.heads
		r.accounts, r.assets, r.normals = append(r.accounts, a), append(r.assets, f.heads.Asset(h)), append(r.normals, h.normal.String())
		r.scales, r.opened = append(r.scales, int16(h.scale)), append(r.opened, int64(h.opened))
	}
	return b
}

// discard lets go of the lines' buffer and drops the cache kept past the
// batch (staged).
func (b *movementBatch) discard() {
	if b.lines != nil {
		b.lines.release(nil)
		b.lines = nil
	}
	b.p.drop(b.ledger, b.cache)
	b.p.dropPending(b.ledger, b.served)
}

// write stores the batch (staged): lines, heads, accounts, assets, clock.
func (b *movementBatch) write(ctx context.Context, tx pgx.Tx, ledger string) error {
	if b.lines != nil {
		err := b.lines.send(ctx, tx.Conn(), "movements", movementColumns)
		b.lines.release(err)
		b.lines = nil
		if err != nil {
			return err
		}
	}
	if err := b.writeHeads(ctx, tx, ledger); err != nil {
		return err
	}
	if err := b.accounts.write(ctx, tx, ledger); err != nil {
		return err
	}
	if len(b.assets) > 0 {
		codes, scales := make([]string, len(b.assets)), make([]int16, len(b.assets))
		for i, a := range b.assets {
			codes[i], scales[i] = a.Code, int16(a.Scale)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO movement_assets (ledger, code, scale)
			SELECT $1, a.code, a.scale FROM unnest($2::text[], $3::smallint[]) AS a(code, scale)`, ledger, codes, scales); err != nil {
			return fmt.Errorf("insert %d movement assets: %w", len(b.assets), err)
		}
	}
	// Every batch moves the clock (its first record ticks), and the same
	// statement reads the key's number again: a rebuild's swap that
	// committed while this batch waited for its checkpoint gave the ledger
	// the shadow's number, and lines written under the cached one would be
	// lost with the old lines. The batch then rolls back and the runner
	// reloads, as when another runner moved the checkpoint.
	ats, maxes, positions := make([]time.Time, len(b.ticks)), make([]time.Time, len(b.ticks)), make([]int64, len(b.ticks))
	for i, t := range b.ticks {
		ats[i], maxes[i], positions[i] = t.at, t.max, int64(t.position)
	}
	var ledgerNo *int32
	if err := tx.QueryRow(ctx, `WITH tick AS (INSERT INTO movement_clock (ledger, recorded_at, max_at, position)
			SELECT $1, c.at, c.max_at, c.position FROM unnest($2::timestamptz[], $3::timestamptz[], $4::bigint[]) AS c(at, max_at, position)
			ON CONFLICT (ledger, recorded_at) DO UPDATE SET position = GREATEST(movement_clock.position, excluded.position),
				max_at = GREATEST(movement_clock.max_at, excluded.max_at))
		SELECT (SELECT ledger_no FROM movement_ledgers WHERE ledger = $1)`,
		ledger, ats, maxes, positions).Scan(&ledgerNo); err != nil {
		return fmt.Errorf("move the movement clock: %w", err)
	}
	if ledgerNo == nil || *ledgerNo != b.ledgerNo {
		return fmt.Errorf("the statement lines of %s were renumbered under the batch (a rebuild's swap): %w", ledger, ErrCheckpointMoved)
	}
	b.p.setPending(ledger, b.served)
	return nil
}

// writeHeads inserts the heads of the accounts the batch opened.
func (b *movementBatch) writeHeads(ctx context.Context, tx pgx.Tx, ledger string) error {
	r := &b.heads
	if len(r.accounts) == 0 {
		return nil
	}
	tag, err := tx.Exec(ctx, `INSERT INTO movement_heads (ledger, ledger_no, account, asset, scale, normal_balance, opened_position)
		SELECT $1, $7, h.account, h.asset, h.scale, h.normal, h.opened
		FROM unnest($2::text[], $3::text[], $4::smallint[], $5::text[], $6::bigint[]) AS h(account, asset, scale, normal, opened)`,
		ledger, r.accounts, r.assets, r.scales, r.normals, r.opened, b.ledgerNo)
	if err != nil {
		return fmt.Errorf("write %d movement heads: %w", len(r.accounts), err)
	}
	if int(tag.RowsAffected()) != len(r.accounts) {
		return fmt.Errorf("wrote %d of %d movement heads", tag.RowsAffected(), len(r.accounts))
	}
	return nil
}
