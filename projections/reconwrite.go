package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// write stores what the batch changed: per touched book its account row, new
// items, changed items and matches; then the journal. A stored book then
// forgets its items that are no longer open.
func (f *reconFold) write(ctx context.Context) error {
	added := 0
	for _, account := range slices.Sorted(maps.Keys(f.touched)) {
		b := f.touched[account]
		added += len(b.Added)
		if err := f.writeBook(ctx, b); err != nil {
			return fmt.Errorf("reconciliation of %s: %w", account, err)
		}
		b.settle()
	}
	if added >= reconAnalyzeAfter {
		// A bank account's items are most of their tables. Until statistics
		// say so, the planner takes (ledger, account) for a selective prefix
		// and may look an item up through any index that starts with it,
		// scanning the whole account: statistics after a large batch keep
		// the next batches' look-ups on the primary key.
		if _, err := f.tx.Exec(ctx, `ANALYZE recon_lines, recon_movements, recon_matches`); err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
	}
	return f.writeJournal(ctx)
}

// reconAnalyzeAfter is the number of new items in a batch after which the
// projector refreshes its tables' statistics.
const reconAnalyzeAfter = 4096

func (f *reconFold) writeBook(ctx context.Context, b *reconBook) error {
	if !b.stored || b.rulesChanged {
		var rules []byte
		if b.rules != nil {
			var err error
			if rules, err = json.Marshal(b.rules); err != nil {
				return err
			}
		}
		if _, err := f.tx.Exec(ctx, `INSERT INTO recon_accounts (ledger, account, asset, scale, normal_balance, rules, enabled_position)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (ledger, account) DO UPDATE SET rules = excluded.rules`,
			f.ledger, b.account, b.asset, int16(b.scale), b.normal.String(), rules, int64(b.enabledAt)); err != nil {
			return fmt.Errorf("account row: %w", err)
		}
	}
	var newLines, newMovements [][]any
	var changed [2][]*reconItem
	added := make(map[*reconItem]bool, len(b.Added))
	for _, it := range b.Added {
		added[it] = true
		if it.Side == sideLine {
			newLines = append(newLines, []any{f.ledger, b.account, it.Source, it.ExternalID, int64(it.Position),
				numericOf(it.Amount, b.scale), dateOf(it.Day), it.Reference, it.Description, nullable(it.MatchID), it.ManualOnly})
		} else {
			newMovements = append(newMovements, []any{f.ledger, b.account, it.TransferID, int32(it.PostingIndex), int64(it.Position),
				numericOf(it.Amount, b.scale), dateOf(it.Day), it.Reference, nullable(it.MatchID), it.ManualOnly})
		}
	}
	for _, it := range b.Items {
		if it.Changed && !added[it] {
			changed[it.Side] = append(changed[it.Side], it)
		}
	}
	if err := f.copy(ctx, "recon_lines", []string{"ledger", "account", "source", "external_id", "position", "amount",
		"value_date", "reference", "description", "match_id", "manual_only"}, newLines); err != nil {
		return err
	}
	if err := f.copy(ctx, "recon_movements", []string{"ledger", "account", "transfer_id", "posting_index", "position", "amount",
		"effective_date", "reference", "match_id", "manual_only"}, newMovements); err != nil {
		return err
	}
	if err := f.updateItems(ctx, b, changed); err != nil {
		return err
	}
	return f.writeMatches(ctx, b)
}

func (f *reconFold) copy(ctx context.Context, table string, columns []string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	n, err := f.tx.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("copy %d rows into %s: %w", len(rows), table, err)
	}
	if int(n) != len(rows) {
		return fmt.Errorf("copied %d of %d rows into %s", n, len(rows), table)
	}
	return nil
}

// updateItems stores the match and manual flag of items already stored: one
// primary-key update each, pipelined. (A join with unnest looks cheaper, but
// without fresh statistics the planner loops over the account's rows for
// every item: quadratic.)
func (f *reconFold) updateItems(ctx context.Context, b *reconBook, changed [2][]*reconItem) error {
	n := len(changed[sideLine]) + len(changed[sideMovement])
	if n == 0 {
		return nil
	}
	var batch pgx.Batch
	for _, it := range changed[sideLine] {
		batch.Queue(`UPDATE recon_lines SET match_id = $5, manual_only = $6
			WHERE ledger = $1 AND account = $2 AND source = $3 AND external_id = $4`,
			f.ledger, b.account, it.Source, it.ExternalID, nullable(it.MatchID), it.ManualOnly)
	}
	for _, it := range changed[sideMovement] {
		batch.Queue(`UPDATE recon_movements SET match_id = $5, manual_only = $6
			WHERE ledger = $1 AND account = $2 AND transfer_id = $3 AND posting_index = $4`,
			f.ledger, b.account, it.TransferID, int32(it.PostingIndex), nullable(it.MatchID), it.ManualOnly)
	}
	results := f.tx.SendBatch(ctx, &batch)
	for i := 0; i < n; i++ {
		tag, err := results.Exec()
		if err != nil {
			results.Close()
			return fmt.Errorf("update %d items: %w", n, err)
		}
		if tag.RowsAffected() != 1 {
			results.Close()
			return fmt.Errorf("update of item %d of %d found no row: the read model is missing it", i, n)
		}
	}
	return results.Close()
}

// writeMatches deletes the stored matches dissolved and stores the new ones
// still standing.
func (f *reconFold) writeMatches(ctx context.Context, b *reconBook) error {
	var gone []string
	var rows [][]any
	for _, id := range slices.Sorted(maps.Keys(b.Matches)) {
		m := b.Matches[id]
		switch {
		case m.Dissolved && b.storedMatches[m]:
			gone = append(gone, id)
		case !m.Dissolved && !b.storedMatches[m]:
			var lines, movements int32
			day := int32(1 << 30)
			for _, it := range m.Items {
				if it.Side == sideLine {
					lines++
					day = min(day, it.Day)
				} else {
					movements++
				}
			}
			rows = append(rows, []any{f.ledger, b.account, id, m.Rule, m.Reason, int64(m.Position), dateOf(day),
				numericOf(m.Difference(), b.scale), lines, movements})
		}
	}
	if len(gone) > 0 {
		if _, err := f.tx.Exec(ctx, `DELETE FROM recon_matches WHERE ledger = $1 AND account = $2 AND match_id = ANY($3)`,
			f.ledger, b.account, gone); err != nil {
			return fmt.Errorf("delete %d matches: %w", len(gone), err)
		}
	}
	return f.copy(ctx, "recon_matches", []string{"ledger", "account", "match_id", "rule", "reason", "position", "day",
		"difference", "lines", "movements"}, rows)
}

func (f *reconFold) writeJournal(ctx context.Context) error {
	if len(f.journal) == 0 {
		return nil
	}
	n := len(f.journal)
	assets, days := make([]string, 0, n), make([]time.Time, 0, n)
	counts, amounts := make([]int64, 0, n), make([]string, 0, n)
	for k, s := range f.journal {
		assets = append(assets, k.asset)
		days = append(days, dateOf(k.day))
		counts = append(counts, s.postings)
		amounts = append(amounts, s.amount.Format(s.scale))
	}
	if _, err := f.tx.Exec(ctx, `INSERT INTO recon_journal (ledger, asset, day, postings, amount)
		SELECT $1, j.asset, j.day, j.postings, j.amount::numeric
		FROM unnest($2::text[], $3::date[], $4::bigint[], $5::text[]) AS j(asset, day, postings, amount)
		ON CONFLICT (ledger, asset, day) DO UPDATE SET postings = recon_journal.postings + excluded.postings,
			amount = recon_journal.amount + excluded.amount`, f.ledger, assets, days, counts, amounts); err != nil {
		return fmt.Errorf("daily journal: %w", err)
	}
	return nil
}
