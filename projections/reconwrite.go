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
	for _, account := range slices.Sorted(maps.Keys(f.touched)) {
		b := f.touched[account]
		if err := f.writeBook(ctx, b); err != nil {
			return fmt.Errorf("reconciliation of %s: %w", account, err)
		}
		b.settle()
	}
	return f.writeJournal(ctx)
}

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
	for _, it := range b.added {
		if it.side == sideLine {
			newLines = append(newLines, []any{f.ledger, b.account, it.source, it.externalID, int64(it.position),
				numericOf(it.amount, b.scale), dateOf(it.day), it.reference, it.description, nullable(it.matchID), it.manualOnly})
		} else {
			newMovements = append(newMovements, []any{f.ledger, b.account, it.transferID, int32(it.postingIndex), int64(it.position),
				numericOf(it.amount, b.scale), dateOf(it.day), it.reference, nullable(it.matchID), it.manualOnly})
		}
	}
	for _, it := range b.items {
		if it.stored && it.changed {
			changed[it.side] = append(changed[it.side], it)
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

// updateItems stores the match and manual flag of items already stored.
func (f *reconFold) updateItems(ctx context.Context, b *reconBook, changed [2][]*reconItem) error {
	for side, items := range changed {
		if len(items) == 0 {
			continue
		}
		keysA, keysB := make([]string, len(items)), make([]string, len(items))
		keysI := make([]int32, len(items))
		matches, manual := make([]*string, len(items)), make([]bool, len(items))
		for i, it := range items {
			keysA[i], keysB[i], keysI[i] = it.source, it.externalID, int32(it.postingIndex)
			if side == sideMovement {
				keysA[i] = it.transferID
			}
			if it.matchID != "" {
				id := it.matchID
				matches[i] = &id
			}
			manual[i] = it.manualOnly
		}
		var q string
		var args []any
		if side == sideLine {
			q = `UPDATE recon_lines l SET match_id = u.match_id, manual_only = u.manual_only
				FROM unnest($3::text[], $4::text[], $5::text[], $6::bool[]) AS u(source, external_id, match_id, manual_only)
				WHERE l.ledger = $1 AND l.account = $2 AND l.source = u.source AND l.external_id = u.external_id`
			args = []any{f.ledger, b.account, keysA, keysB, matches, manual}
		} else {
			q = `UPDATE recon_movements m SET match_id = u.match_id, manual_only = u.manual_only
				FROM unnest($3::text[], $4::int[], $5::text[], $6::bool[]) AS u(transfer_id, posting_index, match_id, manual_only)
				WHERE m.ledger = $1 AND m.account = $2 AND m.transfer_id = u.transfer_id AND m.posting_index = u.posting_index`
			args = []any{f.ledger, b.account, keysA, keysI, matches, manual}
		}
		tag, err := f.tx.Exec(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("update %d items: %w", len(items), err)
		}
		if int(tag.RowsAffected()) != len(items) {
			return fmt.Errorf("updated %d of %d items: the read model is missing some", tag.RowsAffected(), len(items))
		}
	}
	return nil
}

// writeMatches deletes the stored matches dissolved and stores the new ones
// still standing.
func (f *reconFold) writeMatches(ctx context.Context, b *reconBook) error {
	var gone []string
	var rows [][]any
	for _, id := range slices.Sorted(maps.Keys(b.matches)) {
		m := b.matches[id]
		switch {
		case m.dissolved && m.stored:
			gone = append(gone, id)
		case !m.dissolved && !m.stored:
			var lines, movements int32
			day := int32(1 << 30)
			for _, it := range m.items {
				if it.side == sideLine {
					lines++
					day = min(day, it.day)
				} else {
					movements++
				}
			}
			rows = append(rows, []any{f.ledger, b.account, id, m.rule, m.reason, int64(m.position), dateOf(day),
				numericOf(m.difference(), b.scale), lines, movements})
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

// settle marks everything stored and forgets what is no longer open: the
// cache holds open items only, and reloads the rest when a manual match or
// an unmatch names it.
func (b *reconBook) settle() {
	b.stored, b.rulesChanged, b.added = true, false, nil
	live := 0
	for k, it := range b.items {
		it.stored, it.changed = true, false
		if !it.open() {
			delete(b.items, k)
			continue
		}
		live++
	}
	clear(b.matches)
	// Lazily removed entries pile up in the indexes: rebuild them when the
	// dead outnumber the live.
	entries := 0
	for _, list := range b.open[sideLine].byDay {
		entries += len(list)
	}
	for _, list := range b.open[sideMovement].byDay {
		entries += len(list)
	}
	if entries > 2*live+1024 {
		b.open = [2]*openSet{newOpenSet(), newOpenSet()}
		items := slices.Collect(maps.Values(b.items))
		slices.SortFunc(items, func(x, y *reconItem) int {
			if c := cmpU64(x.position, y.position); c != 0 {
				return c
			}
			return x.postingIndex - y.postingIndex
		})
		for _, it := range items {
			b.open[it.side].add(it)
		}
	}
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
