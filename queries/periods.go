package queries

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
)

// Limits of period queries.
const (
	// PeriodsLimitMax bounds a page of closed periods.
	PeriodsLimitMax     = 1000
	PeriodsLimitDefault = 100
)

// ErrPeriodsLimit means a page size over PeriodsLimitMax.
var ErrPeriodsLimit error = domain.NewInvalid("limit", "limit over 1000", "at most 1000 periods")

// ClosedPeriod is a closed accounting period as its PeriodClosed event
// recorded it, with the positions it spans: FromPosition (just after the
// previous close) to Position (the close itself). Start is nil for a
// ledger's first period.
type ClosedPeriod struct {
	Position, FromPosition uint64
	Start                  *time.Time
	End, RecordedAt        time.Time
	TrialBalance           []domain.PeriodAssetTotal
	Accounts               uint64
	ClosingDigest          string
}

// Periods is ListPeriods' answer: a page of periods, oldest first, at the
// balances projection's position; More when a page follows.
type Periods struct {
	Periods  []ClosedPeriod
	Position uint64
	More     bool
}

// ListPeriods returns up to limit (0: PeriodsLimitDefault) periods closed
// after position after, once the balances projection (which keeps them) has
// reached minPosition.
//
// Errors: ErrPeriodsLimit; domain.ErrUnknownLedger; ErrMinPositionBeyondHead;
// ErrNotReached; database errors.
func (s *Service) ListPeriods(ctx context.Context, ledger string, after uint64, limit int, minPosition uint64) (Periods, error) {
	s = s.route()
	switch {
	case limit < 0 || limit > PeriodsLimitMax:
		return Periods{}, fmt.Errorf("limit %d: %w", limit, ErrPeriodsLimit)
	case limit == 0:
		limit = PeriodsLimitDefault
	}
	s, err := s.waitFor(ctx, ledger, "balances", minPosition)
	if err != nil {
		return Periods{}, err
	}
	var out Periods
	// One transaction, one snapshot: the page and the checkpoint agree.
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var at int64
		err := tx.QueryRow(ctx, `SELECT COALESCE(max(position), 0) FROM projection_checkpoints
			WHERE ledger = $1 AND projection = 'balances'`, ledger).Scan(&at)
		if err != nil {
			return err
		}
		out.Position = uint64(at)
		// The previous close of the first period on the page is before
		// after: found by the window over the whole ledger's (few) periods.
		rows, err := tx.Query(ctx, `SELECT position, from_position, period_start, period_end, recorded_at,
				trial_balance, accounts, closing_digest
			FROM (SELECT *, COALESCE(lag(position) OVER (ORDER BY position), 0) + 1 AS from_position
				FROM periods WHERE ledger = $1) p
			WHERE position > $2 ORDER BY position LIMIT $3`, ledger, int64(after), limit+1)
		if err != nil {
			return err
		}
		var (
			p          ClosedPeriod
			pos, from  int64
			accounts   int64
			totalsJSON []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&pos, &from, &p.Start, &p.End, &p.RecordedAt, &totalsJSON, &accounts,
			&p.ClosingDigest}, func() error {
			p.Position, p.FromPosition, p.Accounts = uint64(pos), uint64(from), uint64(accounts)
			p.TrialBalance = nil
			if err := json.Unmarshal(totalsJSON, &p.TrialBalance); err != nil {
				return fmt.Errorf("trial balance of the period closed at %d: %w", pos, err)
			}
			q := p
			if q.Start != nil {
				start := q.Start.UTC()
				q.Start = &start
			}
			q.End, q.RecordedAt = q.End.UTC(), q.RecordedAt.UTC()
			out.Periods = append(out.Periods, q)
			p.Start = nil
			return nil
		})
		return err
	})
	if err != nil {
		return Periods{}, fmt.Errorf("periods of %s: %w", ledger, err)
	}
	if len(out.Periods) > limit {
		out.Periods, out.More = out.Periods[:limit], true
	}
	if out.Position == 0 && len(out.Periods) == 0 {
		if err := s.mustExistLedger(ctx, ledger); err != nil {
			return Periods{}, err
		}
	}
	return out, nil
}
