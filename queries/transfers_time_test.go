package queries

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// TestListTransfersByTimeWithoutTimeIndexes: the time filters find exactly
// the transfers a scan of every row finds, now that they go through
// positions (projections 0022): transfers recorded in bursts and gaps,
// effective at their recorded time, near it (within EffectiveNear) or far
// from it either way, a clock (movement_clock) that ends before the
// transfers do (the statement lines behind), ranges that start or end
// between points, and pages of every size.
func TestListTransfersByTimeWithoutTimeIndexes(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	ledger := testenv.Name(t)
	rng := rand.New(rand.NewPCG(12, 5))
	const n = 400
	type row struct {
		id                  string
		recorded, effective time.Time
	}
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	var rows []row
	at := t0
	for p := 1; p <= n; p++ {
		if rng.IntN(4) > 0 { // bursts within a grain, and gaps of up to 3 minutes
			at = at.Add(time.Duration(rng.IntN(180_000_000)) * time.Microsecond)
		}
		eff := at
		switch rng.IntN(6) {
		case 1:
			eff = at.Add(time.Duration(rng.IntN(int(2*projections.EffectiveNear))) - projections.EffectiveNear)
		case 2:
			eff = at.Add(-projections.EffectiveNear - time.Duration(1+rng.IntN(int(3*time.Hour))))
		case 3:
			eff = at.Add(projections.EffectiveNear + time.Microsecond)
		}
		rows = append(rows, row{fmt.Sprintf("t-%d", p), at, eff.Truncate(time.Microsecond)})
	}
	exec(t, pool, `INSERT INTO ledger_heads (ledger, position, hash) VALUES ($1, $2, decode(repeat('00', 32), 'hex'))`, ledger, n)
	exec(t, pool, `INSERT INTO projection_checkpoints (ledger, projection, version, position) VALUES ($1, 'transfers', 1, $2)`,
		ledger, n)
	exec(t, pool, `INSERT INTO transfer_ledgers (ledger) VALUES ($1)`, ledger)
	for p, r := range rows {
		exec(t, pool, `INSERT INTO transfers (ledger_no, id, kind, status, position, postings, effective_at, recorded_at,
				updated_position)
			SELECT ledger_no, $2, 'transfer', 'posted', $3, '[]', $4, $5, $3 FROM transfer_ledgers WHERE ledger = $1`,
			ledger, r.id, p+1, r.effective, r.recorded)
	}
	// The clock as the movements projector keeps it, for the first 300
	// positions only.
	exec(t, pool, `INSERT INTO movement_clock (ledger, recorded_at, max_at, position)
		SELECT $1, date_trunc('milliseconds', recorded_at), max(recorded_at), max(position) FROM transfer_rows
		WHERE ledger = $1 AND position <= 300 GROUP BY 2`, ledger)

	times := make([]time.Time, 0, 2*n)
	for _, r := range rows {
		times = append(times, r.recorded, r.effective, r.recorded.Add(time.Microsecond), r.effective.Add(-time.Microsecond))
	}
	pick := func() time.Time {
		if rng.IntN(5) == 0 {
			return time.Time{} // open
		}
		return times[rng.IntN(len(times))]
	}
	for i := range 60 {
		from, to := pick(), pick()
		if !from.IsZero() && !to.IsZero() && from.After(to) {
			from, to = to, from
		}
		var f TransferFilter
		in := func(r row) bool { return true }
		switch i % 4 {
		case 0:
			f = TransferFilter{From: from, To: to}
			in = func(r row) bool { return within(r.recorded, from, to, true) }
		case 1:
			f = TransferFilter{From: from, To: to, Effective: true}
			in = func(r row) bool { return within(r.effective, from, to, true) }
		case 2:
			f = TransferFilter{RecordedFrom: from, RecordedTo: to}
			in = func(r row) bool { return within(r.recorded, from, to, false) }
		case 3:
			f = TransferFilter{EffectiveFrom: from, EffectiveTo: to, RecordedFrom: pick()}
			in = func(r row) bool {
				return within(r.effective, from, to, false) && within(r.recorded, f.RecordedFrom, time.Time{}, false)
			}
		}
		var want []string
		for _, r := range rows {
			if in(r) {
				want = append(want, r.id)
			}
		}
		limit := 1 + rng.IntN(40)
		var got []string
		for cursor := ""; ; {
			page, err := q.ListTransfers(t.Context(), ledger, f, cursor, limit, 0)
			testenv.NoError(t, err)
			for _, tr := range page.Transfers {
				got = append(got, tr.ID)
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("filter %+v by pages of %d: %d transfers %v\nwant %d %v", f, limit, len(got), got, len(want), want)
		}
	}
}

// within says whether t lies in [from, to] (to inclusive) or [from, to),
// zero bounds open.
func within(t, from, to time.Time, inclusive bool) bool {
	if !from.IsZero() && t.Before(from) {
		return false
	}
	if to.IsZero() {
		return true
	}
	return t.Before(to) || inclusive && t.Equal(to)
}
