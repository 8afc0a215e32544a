package queries

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/projections"
)

// Limits of trial balance queries.
const (
	// TrialBalanceLinesMax bounds a trial balance: the assets of a ledger.
	TrialBalanceLinesMax = domain.AssetsMaxDefault
	// FoldMax bounds the events an as-of answer folds from the log: one
	// batch of the balances projector.
	FoldMax = projections.BatchMaxDefault
)

var (
	// ErrBeyondHead means an as-of position the ledger has not reached.
	ErrBeyondHead error = domain.NewInvalid("as_of_position", "beyond the ledger's head", "beyond the ledger's head")
	// ErrTooManyAssets means a ledger has more than TrialBalanceLinesMax assets.
	ErrTooManyAssets error = domain.NewError(domain.KindExhausted, "too many assets", "")
	// ErrHistoryUnavailable means the trial balance history does not reach
	// back to an as-of position: its ledger was projected before the history
	// existed (migration 0004), and the answer would fold more than FoldMax
	// events from the log.
	ErrHistoryUnavailable error = domain.NewError(domain.KindConflict, "trial balance history unavailable", "")
)

// TrialBalanceLine is one asset's sums over its accounts, as decimal strings in
// the asset's scale, with its accounts open and closed.
type TrialBalanceLine struct {
	Asset                                                      string
	DebitsPosted, CreditsPosted, DebitsPending, CreditsPending string
	Accounts, AccountsClosed                                   uint64
}

// TrialBalance is GetTrialBalance's answer: a line per asset, by code.
type TrialBalance struct {
	Lines    []TrialBalanceLine
	Position uint64
}

// GetTrialBalance returns the ledger's trial balance: now (asOf 0), once the
// balances projection has reached minPosition, at the position it reached; or
// just after position asOf, once it has reached asOf, at asOf.
//
// Errors: domain.ErrUnknownLedger; ErrBeyondHead for asOf past the ledger's head;
// ErrNotReached; ErrHistoryUnavailable; ErrTooManyAssets; database errors.
func (s *Service) GetTrialBalance(ctx context.Context, ledger string, asOf, minPosition uint64) (TrialBalance, error) {
	s = s.route()
	head, err := s.headAtLeast(ctx, ledger, asOf)
	if err != nil {
		return TrialBalance{}, err
	}
	if asOf > head {
		return TrialBalance{}, fmt.Errorf("as of position %d, head %d: %w", asOf, head, ErrBeyondHead)
	}
	s, err = s.waitFor(ctx, ledger, "balances", max(minPosition, asOf))
	if err != nil {
		return TrialBalance{}, err
	}
	if asOf == 0 {
		return s.trialBalanceNow(ctx, ledger)
	}
	return s.trialBalanceAsOf(ctx, ledger, asOf)
}

func (s *Service) trialBalanceNow(ctx context.Context, ledger string) (TrialBalance, error) {
	// One statement, one snapshot: the lines and the checkpoint agree.
	rows, err := s.pool.Query(ctx, `SELECT c.position, t.asset, t.debits_posted::text, t.credits_posted::text,
			t.debits_pending::text, t.credits_pending::text, t.accounts, t.accounts_closed
		FROM (SELECT position FROM projection_checkpoints WHERE ledger = $1 AND projection = 'balances') c
		LEFT JOIN trial_balances t ON t.ledger = $1
		ORDER BY t.asset
		LIMIT $2`, ledger, TrialBalanceLinesMax+1)
	if err != nil {
		return TrialBalance{}, fmt.Errorf("trial balance of %s: %w", ledger, err)
	}
	var (
		out        TrialBalance
		checkpoint int64
		asset      *string
		l          TrialBalanceLine
		dp, cp     *string
		dq, cq     *string
		open, shut *int64
	)
	_, err = pgx.ForEachRow(rows, []any{&checkpoint, &asset, &dp, &cp, &dq, &cq, &open, &shut}, func() error {
		out.Position = uint64(checkpoint)
		if asset == nil {
			return nil // no asset yet
		}
		l = TrialBalanceLine{Asset: *asset, DebitsPosted: *dp, CreditsPosted: *cp, DebitsPending: *dq,
			CreditsPending: *cq, Accounts: uint64(*open), AccountsClosed: uint64(*shut)}
		out.Lines = append(out.Lines, l)
		return nil
	})
	if err != nil {
		return TrialBalance{}, fmt.Errorf("trial balance of %s: %w", ledger, err)
	}
	if len(out.Lines) > TrialBalanceLinesMax {
		return TrialBalance{}, fmt.Errorf("trial balance of %s: %d+ assets, at most %d: %w",
			ledger, len(out.Lines), TrialBalanceLinesMax, ErrTooManyAssets)
	}
	return out, nil
}

// trialBalanceAsOf answers for position p, which the balances projection has
// reached. The history holds each asset's line at the end of every batch that
// touched it, and each row knows its batch's first position. Each asset's
// last line at or before p is its line at the end of the last batch before
// p's own batch that touched it (no batch ends inside p's), and so its line
// at p unless p's batch moved it before p. The first batch end at or after p
// is that of p's batch if that batch touched any asset (a batch end between
// p and its own would lie inside it): if p is not that end, the batch's
// events from its first position up to p are folded from the log and added,
// at most one batch (FoldMax events). Otherwise nothing moved between the
// last line and p.
func (s *Service) trialBalanceAsOf(ctx context.Context, ledger string, p uint64) (TrialBalance, error) {
	var end, from int64
	err := s.pool.QueryRow(ctx, `SELECT position, batch_from FROM trial_balance_history
		WHERE ledger = $1 AND position >= $2 ORDER BY position LIMIT 1`, ledger, int64(p)).Scan(&end, &from)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return TrialBalance{}, fmt.Errorf("trial balance of %s at %d: %w", ledger, p, err)
	}
	var f fold
	if err == nil && uint64(from) <= p && uint64(end) != p {
		if n := p - uint64(from) + 1; n > FoldMax {
			return TrialBalance{}, fmt.Errorf("trial balance of %s at %d: %d events to fold from %d, at most %d: %w",
				ledger, p, n, from, FoldMax, ErrHistoryUnavailable)
		}
		if f, err = s.foldLog(ctx, ledger, uint64(from), p); err != nil {
			return TrialBalance{}, err
		}
	}
	return s.linesAt(ctx, ledger, p, f)
}

// fold is the net change of a stretch of the log, per asset.
type fold struct {
	sums   map[string]*assetSums
	closed []string          // accounts closed: their asset is in the balances
	moves  []domain.Movement // one event's, reused
}

// assetSums is one asset's movements: big.Int, since a sum over many accounts
// may pass 128 bits.
type assetSums struct {
	scale                                                      uint8
	debitsPosted, creditsPosted, debitsPending, creditsPending big.Int
	opened                                                     int64
}

// foldLog folds the events at positions from..to.
func (s *Service) foldLog(ctx context.Context, ledger string, from, to uint64) (fold, error) {
	types := append([]string{domain.TypeAccountOpened, domain.TypeAccountClosed}, domain.BalanceEventTypes()...)
	rows, err := s.pool.Query(ctx, `SELECT position, type, schema_version, payload FROM events
		WHERE ledger = $1 AND position BETWEEN $2 AND $3 AND type = ANY($4)
		ORDER BY position`, ledger, int64(from), int64(to), types)
	if err != nil {
		return fold{}, fmt.Errorf("fold %s %d..%d: %w", ledger, from, to, err)
	}
	f := fold{sums: map[string]*assetSums{}}
	var (
		pos     int64
		typ     string
		version int16
		payload []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&pos, &typ, &version, &payload}, func() error {
		e, err := domain.UnmarshalEvent(typ, int(version), payload)
		if err != nil {
			return fmt.Errorf("record %d: %w", pos, err)
		}
		f.add(e)
		return nil
	})
	if err != nil {
		return fold{}, fmt.Errorf("fold %s %d..%d: %w", ledger, from, to, err)
	}
	return f, nil
}

// add folds one event, as the balances projector applies it: what it
// moves comes from the domain (domain.AppendMovements).
func (f *fold) add(e domain.Event) {
	switch e := e.(type) {
	case domain.AccountOpened:
		f.asset(e.Asset, 0).opened++
	case domain.AccountClosed:
		f.closed = append(f.closed, e.ID)
	}
	f.moves = domain.AppendMovements(f.moves[:0], e)
	for i := range f.moves {
		f.move(&f.moves[i])
	}
}

func (f *fold) asset(code string, scale uint8) *assetSums {
	a, ok := f.sums[code]
	if !ok {
		a = &assetSums{scale: scale}
		f.sums[code] = a
	}
	a.scale = max(a.scale, scale) // an AccountOpened carries no scale
	return a
}

// move adds a movement's signed amount to its asset's sum of the total it
// moves.
func (f *fold) move(m *domain.Movement) {
	a := f.asset(m.Asset, m.Scale)
	var sum *big.Int
	switch {
	case m.Side == domain.SideDebit && !m.Pending:
		sum = &a.debitsPosted
	case !m.Pending:
		sum = &a.creditsPosted
	case m.Side == domain.SideDebit:
		sum = &a.debitsPending
	default:
		sum = &a.creditsPending
	}
	sum.Add(sum, bigOf(m.Amount))
}

func bigOf(u domain.Units) *big.Int {
	v, _ := new(big.Int).SetString(u.String(), 10) // Units.String is a plain integer
	return v
}

// linesAt reads each asset defined at or before p: its last history line at or
// before p, plus f.
func (s *Service) linesAt(ctx context.Context, ledger string, p uint64, f fold) (TrialBalance, error) {
	assets := slices.Sorted(maps.Keys(f.sums))
	n := len(assets)
	dp, cp, dq, cq, opened := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]int64, n)
	for i, code := range assets {
		a := f.sums[code]
		dp[i], cp[i] = domain.FormatMinor(&a.debitsPosted, a.scale), domain.FormatMinor(&a.creditsPosted, a.scale)
		dq[i], cq[i] = domain.FormatMinor(&a.debitsPending, a.scale), domain.FormatMinor(&a.creditsPending, a.scale)
		opened[i] = a.opened
	}
	closed := f.closed
	if closed == nil {
		closed = []string{}
	}
	rows, err := s.pool.Query(ctx, `WITH f AS (
			SELECT * FROM unnest($3::text[], $4::text[]::numeric[], $5::text[]::numeric[], $6::text[]::numeric[],
				$7::text[]::numeric[], $8::bigint[]) AS f(asset, dp, cp, dq, cq, opened)
		), k AS (
			SELECT asset, count(*) AS closed FROM trial_accounts WHERE ledger = $1 AND account = ANY($9::text[])
			GROUP BY asset
		)
		SELECT a.code,
			round(coalesce(h.debits_posted, 0) + coalesce(f.dp, 0), a.scale)::text,
			round(coalesce(h.credits_posted, 0) + coalesce(f.cp, 0), a.scale)::text,
			round(coalesce(h.debits_pending, 0) + coalesce(f.dq, 0), a.scale)::text,
			round(coalesce(h.credits_pending, 0) + coalesce(f.cq, 0), a.scale)::text,
			coalesce(h.accounts, 0) + coalesce(f.opened, 0) - coalesce(k.closed, 0),
			coalesce(h.accounts_closed, 0) + coalesce(k.closed, 0)
		FROM assets a
		LEFT JOIN LATERAL (
			SELECT * FROM trial_balance_history h
			WHERE h.ledger = a.ledger AND h.asset = a.code AND h.position <= $2
			ORDER BY h.position DESC LIMIT 1
		) h ON true
		LEFT JOIN f ON f.asset = a.code
		LEFT JOIN k ON k.asset = a.code
		WHERE a.ledger = $1 AND a.position <= $2
		ORDER BY a.code
		LIMIT $10`, ledger, int64(p), assets, dp, cp, dq, cq, opened, closed, TrialBalanceLinesMax+1)
	if err != nil {
		return TrialBalance{}, fmt.Errorf("trial balance of %s at %d: %w", ledger, p, err)
	}
	out := TrialBalance{Position: p}
	var (
		l          TrialBalanceLine
		open, shut int64
	)
	_, err = pgx.ForEachRow(rows, []any{&l.Asset, &l.DebitsPosted, &l.CreditsPosted, &l.DebitsPending, &l.CreditsPending,
		&open, &shut}, func() error {
		l.Accounts, l.AccountsClosed = uint64(open), uint64(shut)
		out.Lines = append(out.Lines, l)
		return nil
	})
	if err != nil {
		return TrialBalance{}, fmt.Errorf("trial balance of %s at %d: %w", ledger, p, err)
	}
	if len(out.Lines) > TrialBalanceLinesMax {
		return TrialBalance{}, fmt.Errorf("trial balance of %s at %d: %d+ assets, at most %d: %w",
			ledger, p, len(out.Lines), TrialBalanceLinesMax, ErrTooManyAssets)
	}
	return out, nil
}
