package queries

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/projections"
)

// movementsProjection is the projection statements and point-in-time
// balances are read from (its tables: movements, movement_heads,
// movement_clock; see projections/migrations/0002_movements.sql).
const movementsProjection = "movements"

var (
	// ErrAccountNotFound means the account does not exist at the position the
	// answer reflects.
	ErrAccountNotFound error = domain.NewError(domain.KindNotFound, "account not found", "")
)

// movementSnapshot is a read-only transaction that sees one committed state of every
// read model: the checkpoint it reads and the rows agree.
var movementSnapshot = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}

// mustExistLedger is head (the one look-up of a ledger) as an error.
//
// Errors: domain.ErrUnknownLedger; database errors.
func (s *Service) mustExistLedger(ctx context.Context, ledger string) error {
	_, err := s.head(ctx, ledger)
	return err
}

// checkAccountCount bounds a balances request.
func checkAccountCount(accounts []string) error {
	if len(accounts) > AccountsPerRequestMax {
		return fmt.Errorf("%d accounts, at most %d: %w", len(accounts), AccountsPerRequestMax, ErrTooManyAccounts)
	}
	return nil
}

// BalancesAsOfPosition returns the balances of accounts just after position
// pos: for each, the totals after its last movement at or before pos. An
// account opened after pos is absent; one opened at or before it with no
// movement yet has zero totals. It waits (like minPosition) until the
// movements projection has reached pos. The answer's Position is pos; each
// balance's Position is the account's last movement up to pos (or its
// opening).
//
// Errors: ErrTooManyAccounts; domain.ErrUnknownLedger; ErrNotReached when pos or
// minPosition is not reached within WaitMax or ctx; database errors.
func (s *Service) BalancesAsOfPosition(ctx context.Context, ledger string, accounts []string, pos, minPosition uint64) (Balances, error) {
	s = s.route()
	if err := checkAccountCount(accounts); err != nil {
		return Balances{}, err
	}
	// One look-up answers both: an unknown ledger (domain.ErrUnknownLedger), and a
	// position the log has not reached, refused at once rather than waited for.
	head, err := s.headAtLeast(ctx, ledger, pos)
	if err != nil {
		return Balances{}, err
	}
	if pos > head {
		return Balances{}, fmt.Errorf("as of position %d, head %d: %w", pos, head, ErrBeyondHead)
	}
	s, err = s.waitFor(ctx, ledger, movementsProjection, max(pos, minPosition))
	if err != nil {
		return Balances{}, err
	}
	var out Balances
	err = pgx.BeginTxFunc(ctx, s.pool, movementSnapshot, func(tx pgx.Tx) error {
		var err error
		out, err = balancesAtPosition(ctx, tx, ledger, accounts, pos)
		return err
	})
	if err != nil {
		return Balances{}, fmt.Errorf("balances of %s as of %d: %w", ledger, pos, err)
	}
	return out, nil
}

// BalancesAsOfTime returns the balances of accounts at time at (inclusive).
//
// On recorded time (effective false) it is BalancesAsOfPosition at the last
// position recorded at or before at, which the answer's Position gives (0:
// nothing was recorded by then). Recorded time is read as the running
// maximum of the log's recorded times, so it never goes back with position
// even if a writer's clock did: the log's order stays the truth.
//
// On effective time, each account's totals are the sums of its movements
// whose effective_at is at or before at, among those the projection has
// applied; the answer's Position is the projection's checkpoint, and every
// account existing there is present. This sums an account's movements up to
// at (an index range, no replay): its cost grows with the account's history.
//
// Errors: ErrTooManyAccounts; domain.ErrUnknownLedger; ErrNotReached when
// minPosition is not reached within WaitMax or ctx; database errors.
func (s *Service) BalancesAsOfTime(ctx context.Context, ledger string, accounts []string, at time.Time, effective bool, minPosition uint64) (Balances, error) {
	s = s.route()
	if err := checkAccountCount(accounts); err != nil {
		return Balances{}, err
	}
	if err := s.mustExistLedger(ctx, ledger); err != nil {
		return Balances{}, err
	}
	s, err := s.waitFor(ctx, ledger, movementsProjection, minPosition)
	if err != nil {
		return Balances{}, err
	}
	var out Balances
	err = pgx.BeginTxFunc(ctx, s.pool, movementSnapshot, func(tx pgx.Tx) error {
		if effective {
			var err error
			out, err = balancesAtEffectiveTime(ctx, tx, ledger, accounts, at)
			return err
		}
		pos, err := clockPosition(ctx, tx, ledger, at, true)
		if err != nil {
			return err
		}
		out, err = balancesAtPosition(ctx, tx, ledger, accounts, pos)
		return err
	})
	if err != nil {
		return Balances{}, fmt.Errorf("balances of %s as of %s: %w", ledger, at.Format(time.RFC3339Nano), err)
	}
	return out, nil
}

// clockPosition returns the last position whose (running) recorded time is
// at or before at (inclusive) or strictly before it; 0 when there is none.
//
// A point of the clock (recorded_at, max_at, position) says the running
// maximum at position is max_at, within the grain that starts at
// recorded_at (projections.ClockGrain); points written before max_at have
// recorded_at exact. The answer lies from the last point whose maximum is
// within at (lo) to the first point past at, or the last point, the
// projection's checkpoint (hi): the position before the first event between
// them recorded past at, which the log says, or hi when there is none.
// Between lo and the next point lie at most one grain's events.
func clockPosition(ctx context.Context, q pgx.Tx, ledger string, at time.Time, inclusive bool) (uint64, error) {
	within, past := "<=", ">"
	if !inclusive {
		within, past = "<", ">="
	}
	// A point's maximum is within a grain after its recorded_at: the
	// points whose maximum is within at have recorded_at at or before it,
	// and those past it recorded_at after at less a grain.
	var lo, hi int64
	var first *int64
	err := q.QueryRow(ctx, `WITH lo AS (
			SELECT coalesce((SELECT position FROM movement_clock
				WHERE ledger = $1 AND recorded_at <= $2 AND coalesce(max_at, recorded_at) `+within+` $2
				ORDER BY recorded_at DESC LIMIT 1), 0) AS position
		), hi AS (
			SELECT coalesce(
				(SELECT position FROM movement_clock
					WHERE ledger = $1 AND recorded_at > $3 AND coalesce(max_at, recorded_at) `+past+` $2
					ORDER BY recorded_at LIMIT 1),
				(SELECT position FROM movement_clock WHERE ledger = $1 ORDER BY recorded_at DESC LIMIT 1),
				0) AS position
		)
		SELECT lo.position, hi.position, (
			SELECT e.position FROM events e
			WHERE e.ledger = $1 AND e.position > lo.position AND e.position <= hi.position AND e.recorded_at `+past+` $2
			ORDER BY e.position LIMIT 1)
		FROM lo, hi`, ledger, at, at.Add(-projections.ClockGrain)).Scan(&lo, &hi, &first)
	if err != nil {
		return 0, fmt.Errorf("clock of %s: %w", ledger, err)
	}
	if first == nil {
		return uint64(max(lo, hi)), nil
	}
	return uint64(*first - 1), nil
}

// lastLine is a LATERAL join, as l, of the last statement line of the
// account whose movement_heads row is h (its totals and position; none
// before its first movement): one backward step on the lines' primary key,
// (ledger_no, account_no) being h's (projections 0023). bound, when not "",
// is a position parameter the line is at or before. An account's balance is
// its last line's totals.
func lastLine(bound string) string {
	at := ""
	if bound != "" {
		at = " AND m.position <= " + bound
	}
	return `LEFT JOIN LATERAL (
			SELECT m.debits_posted, m.credits_posted, m.debits_pending, m.credits_pending, m.position
			FROM movements m WHERE m.ledger_no = h.ledger_no AND m.account_no = h.opened_position` + at + `
			ORDER BY m.position DESC, m.seq DESC LIMIT 1) l ON true`
}

func balancesAtPosition(ctx context.Context, tx pgx.Tx, ledger string, accounts []string, pos uint64) (Balances, error) {
	rows, err := tx.Query(ctx, `SELECT q.account, h.asset, h.scale, h.normal_balance,
			l.debits_posted::text, l.credits_posted::text, l.debits_pending::text, l.credits_pending::text,
			COALESCE(l.position, h.opened_position)
		FROM unnest($2::text[]) WITH ORDINALITY AS q(account, n)
		JOIN LATERAL (SELECT * FROM movement_heads h WHERE h.ledger = $1 AND h.account = q.account AND h.opened_position <= $3
			OFFSET 0) h ON true
		`+lastLine("$3")+`
		ORDER BY q.n`, ledger, accounts, int64(pos))
	if err != nil {
		return Balances{}, err
	}
	out := Balances{Position: pos}
	out.Balances, err = collectMovementBalances(rows)
	return out, err
}

func balancesAtEffectiveTime(ctx context.Context, tx pgx.Tx, ledger string, accounts []string, at time.Time) (Balances, error) {
	checkpoint, err := movementsCheckpoint(ctx, tx, ledger)
	if err != nil {
		return Balances{}, err
	}
	rows, err := tx.Query(ctx, `SELECT q.account, h.asset, h.scale, h.normal_balance,
			s.dp::text, s.cp::text, s.dq::text, s.cq::text, COALESCE(s.position, h.opened_position)
		FROM unnest($2::text[]) WITH ORDINALITY AS q(account, n)
		JOIN LATERAL (SELECT * FROM movement_heads h WHERE h.ledger = $1 AND h.account = q.account OFFSET 0) h ON true
		LEFT JOIN LATERAL (
			SELECT sum(m.amount) FILTER (WHERE m.side = 'debit' AND NOT m.pending) AS dp,
				sum(m.amount) FILTER (WHERE m.side = 'credit' AND NOT m.pending) AS cp,
				sum(m.amount) FILTER (WHERE m.side = 'debit' AND m.pending) AS dq,
				sum(m.amount) FILTER (WHERE m.side = 'credit' AND m.pending) AS cq,
				max(m.position) AS position
			FROM movements m
			WHERE m.ledger_no = h.ledger_no AND m.account_no = h.opened_position AND m.effective_at <= $3) s ON true
		ORDER BY q.n`, ledger, accounts, at)
	if err != nil {
		return Balances{}, err
	}
	out := Balances{Position: checkpoint}
	out.Balances, err = collectMovementBalances(rows)
	return out, err
}

// movementsCheckpoint is the movements projection's position; 0 before any.
func movementsCheckpoint(ctx context.Context, tx pgx.Tx, ledger string) (uint64, error) {
	var pos int64
	err := tx.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE ledger = $1 AND projection = $2`,
		ledger, movementsProjection).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("checkpoint of %s: %w", movementsProjection, err)
	}
	return uint64(pos), nil
}

// collectMovementBalances reads rows of (account, asset, scale, normal, four nullable
// totals, position) into balances; a null total is zero.
func collectMovementBalances(rows pgx.Rows) ([]Balance, error) {
	var (
		out                    []Balance
		account, asset, normal string
		scale                  int16
		totals                 movementTexts
		pos                    int64
	)
	_, err := pgx.ForEachRow(rows, []any{&account, &asset, &scale, &normal, &totals[0], &totals[1], &totals[2], &totals[3], &pos},
		func() error {
			t, err := parseMovementTotals(&totals, uint8(scale), normal)
			if err != nil {
				return fmt.Errorf("account %s: %w", account, err)
			}
			out = append(out, t.balance(account, asset, normal, uint64(pos)))
			return nil
		})
	return out, err
}

// movementTotals is an account's four totals in minor units.
type movementTotals struct {
	scale uint8
	a     domain.Account // Normal and the four fields only
}

// movementTexts are four totals as NUMERIC texts, NULL being zero. Not
// *string: pgx scans a pointer target through reflect, an allocation a
// column a row; pgtype.Text scans in place.
type movementTexts [4]pgtype.Text

// parseMovementTotals reads NUMERIC texts (NULL: zero) at scale.
func parseMovementTotals(texts *movementTexts, scale uint8, normal string) (movementTotals, error) {
	t := movementTotals{scale: scale}
	if err := t.a.Normal.UnmarshalText([]byte(normal)); err != nil {
		return movementTotals{}, err
	}
	for i, dst := range []*domain.Units{&t.a.DebitsPosted, &t.a.CreditsPosted, &t.a.DebitsPending, &t.a.CreditsPending} {
		if !texts[i].Valid {
			continue
		}
		u, err := movementUnits(texts[i].String, scale)
		if err != nil {
			return movementTotals{}, err
		}
		*dst = u
	}
	return t, nil
}

// add adds another set of totals (deltas) of the same scale.
func (t *movementTotals) add(d movementTotals) {
	t.a.DebitsPosted = t.a.DebitsPosted.Add(d.a.DebitsPosted)
	t.a.CreditsPosted = t.a.CreditsPosted.Add(d.a.CreditsPosted)
	t.a.DebitsPending = t.a.DebitsPending.Add(d.a.DebitsPending)
	t.a.CreditsPending = t.a.CreditsPending.Add(d.a.CreditsPending)
}

func (t *movementTotals) balanceText() string   { return t.a.Balance().Format(t.scale) }
func (t *movementTotals) availableText() string { return t.a.Available().Format(t.scale) }

func (t *movementTotals) balance(account, asset, normal string, pos uint64) Balance {
	return Balance{Account: account, Asset: asset, Normal: normal,
		DebitsPosted: t.a.DebitsPosted.Format(t.scale), CreditsPosted: t.a.CreditsPosted.Format(t.scale),
		DebitsPending: t.a.DebitsPending.Format(t.scale), CreditsPending: t.a.CreditsPending.Format(t.scale),
		Balance: t.balanceText(), Available: t.availableText(), Position: pos}
}

// movementUnits parses a NUMERIC's text in minor units of scale.
func movementUnits(s string, scale uint8) (domain.Units, error) {
	d, err := domain.ParseDecimal(s)
	if err != nil {
		return domain.Units{}, err
	}
	return d.Units(scale)
}
