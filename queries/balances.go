// Package queries is the read side: answers from the projections, each with the
// ledger position it reflects.
package queries

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/projections"
)

// Limits of queries.
const (
	// AccountsPerRequestMax bounds GetBalances.
	AccountsPerRequestMax = 1000
	// WaitMax bounds how long a query waits for min_position.
	WaitMax = 10 * time.Second
	// pollMax bounds the interval at which a waiting query re-reads the
	// checkpoint when no in-process notifier is at hand.
	pollMax = 20 * time.Millisecond
	// notifiedPollEvery is how often a query waiting on the in-process
	// notifier also reads the checkpoint: a rebuild or a stream repair swaps
	// a checkpoint in behind the runner's back, and a runner with nothing
	// new to apply would not say so until the next event.
	notifiedPollEvery = 500 * time.Millisecond
)

var (
	// ErrTooManyAccounts means a request names more than AccountsPerRequestMax.
	ErrTooManyAccounts error = domain.NewInvalid("accounts", "too many accounts", fmt.Sprintf("at most %d", AccountsPerRequestMax))
	// ErrNotReached means the projection did not reach min_position in time.
	ErrNotReached error = domain.NewError(domain.KindTimeout, "projection has not reached the position", "")
	// ErrMinPositionBeyondHead means a min_position the ledger's log has not
	// reached: no projection can reach it before a write does, so it is
	// refused at once instead of waited for (WaitMax) in vain.
	ErrMinPositionBeyondHead error = domain.NewInvalid("min_position", "min_position beyond the ledger's head", "beyond the ledger's head")
)

// Waiter is an in-process notifier of a projection's progress, if there is one.
type Waiter interface {
	WaitFor(ctx context.Context, position uint64) error
}

// Service answers queries from the read models in pool.
type Service struct {
	pool *pgxpool.Pool
	// waiter returns the notifier of a ledger's projection, or nil.
	waiter func(ledger, projection string) Waiter
	// primary, when set, is the Service a replica's calls fall back to
	// (WithPrimary) after fallbackAfter, or at once while replicaDown;
	// fallbacks counts them.
	primary       *Service
	fallbackAfter time.Duration
	replicaDown   atomic.Bool
	fallbacks     atomic.Uint64
	// rollupAccountsMax is RollupAccountsMax, or less in tests (0: it).
	rollupAccountsMax int
	// served returns the in-process server of a ledger's balances, or nil
	// (WithServed); fromMemory counts the calls it answered.
	served     func(ledger string) BalanceServer
	fromMemory atomic.Uint64
}

// New returns a Service. waiter may be nil: waits then poll the checkpoint.
func New(pool *pgxpool.Pool, waiter func(ledger, projection string) Waiter) *Service {
	return &Service{pool: pool, waiter: waiter}
}

// BalanceServer answers balances from the memory of the process that
// projects them: the movements projection's runner (projections.Runner),
// whose projector keeps what its last committed batch left of the accounts
// it opened or moved.
type BalanceServer interface {
	// ServedBalances returns the balances of accounts, in order, and the
	// checkpoint they are at; ok is false unless it holds every one.
	ServedBalances(accounts []string) (balances []projections.ServedBalance, position uint64, ok bool)
	// OfferBalances gives it balances the read model answered at position
	// from the ledger's lines numbered ledgerNo, which it keeps if it is at
	// that position under that number.
	OfferBalances(position uint64, ledgerNo int32, balances []projections.ServedBalance)
}

// WithServed makes GetBalances answer from served(ledger), when it is not
// nil and holds every account asked for at min_position or later, before
// reading PostgreSQL. It returns s.
//
// The answer is the read model's: each balance is what the account's last
// statement line says at the position answered, which the same transaction
// committed. A node that does not project the ledger has no server and reads
// the read model.
func (s *Service) WithServed(served func(ledger string) BalanceServer) *Service {
	s.served = served
	return s
}

// FromMemory is how many GetBalances calls were answered from memory
// (WithServed), by s and by its primary.
func (s *Service) FromMemory() uint64 {
	n := s.fromMemory.Load()
	if s.primary != nil {
		n += s.primary.fromMemory.Load()
	}
	return n
}

// Balance is one account's balances as decimal strings in its asset's scale.
type Balance struct {
	Account, Asset, Normal                                     string
	DebitsPosted, CreditsPosted, DebitsPending, CreditsPending string
	Balance, Available                                         string
	Position                                                   uint64
}

// Balances is GetBalances' answer.
type Balances struct {
	Balances []Balance
	Position uint64
}

// GetBalances returns the balances of accounts (those that exist, in request
// order) once the movements projection, whose statement lines hold them,
// has reached minPosition.
//
// Errors: ErrTooManyAccounts; domain.ErrUnknownLedger (looked up before
// waiting for minPosition, which it would never reach, or else only when
// the answer is empty, so that a known ledger pays nothing); ErrNotReached
// when minPosition is not reached within WaitMax or ctx; database errors.
func (s *Service) GetBalances(ctx context.Context, ledger string, accounts []string, minPosition uint64) (Balances, error) {
	if len(accounts) > AccountsPerRequestMax {
		return Balances{}, fmt.Errorf("%d accounts, at most %d: %w", len(accounts), AccountsPerRequestMax, ErrTooManyAccounts)
	}
	// The replica's Service has no server: a replica marked down routes to
	// the primary's, which may answer from memory.
	s = s.route()
	out, ok, server := s.servedBalances(ledger, accounts, minPosition)
	if ok {
		return out, nil
	}
	if minPosition > 0 {
		// Read first: a checkpoint that has reached minPosition needs no
		// wait, and no round trip to look at it. An error goes the waiting
		// way, which answers from the primary when a replica fails.
		if out, read, err := s.readBalances(ctx, ledger, accounts, server); err == nil && out.Position >= minPosition {
			s.offer(ledger, out.Position, read)
			return out, nil
		}
	}
	s, err := s.waitFor(ctx, ledger, movementsProjection, minPosition)
	if err != nil {
		return Balances{}, err
	}
	// Waiting may have moved to the primary's Service (a replica behind).
	if out, ok, server = s.servedBalances(ledger, accounts, minPosition); ok {
		return out, nil
	}
	out, read, err := s.readBalances(ctx, ledger, accounts, server)
	if err != nil {
		return Balances{}, err
	}
	s.offer(ledger, out.Position, read)
	if minPosition == 0 && out.Position == 0 && len(out.Balances) == 0 {
		if err := s.mustExistLedger(ctx, ledger); err != nil {
			return Balances{}, err
		}
	}
	return out, nil
}

// servedBalances answers from the ledger's BalanceServer, when there is one
// (server) and it holds every account at minPosition or later (ok).
func (s *Service) servedBalances(ledger string, accounts []string, minPosition uint64) (out Balances, ok, server bool) {
	if s.served == nil {
		return Balances{}, false, false
	}
	bs := s.served(ledger)
	if bs == nil {
		return Balances{}, false, false
	}
	got, pos, ok := bs.ServedBalances(accounts)
	if !ok || pos < minPosition {
		return Balances{}, false, true
	}
	out = Balances{Position: pos, Balances: make([]Balance, len(got))}
	for i := range got {
		b := &got[i]
		t := movementTotals{scale: b.Scale, a: domain.Account{Normal: b.Normal, DebitsPosted: b.DebitsPosted,
			CreditsPosted: b.CreditsPosted, DebitsPending: b.DebitsPending, CreditsPending: b.CreditsPending}}
		out.Balances[i] = t.balance(b.Account, b.Asset, b.Normal.String(), b.Position)
	}
	s.fromMemory.Add(1)
	return out, true, true
}

// offer gives the ledger's BalanceServer, when there is one, the balances
// the read model answered (read-through: an account that has not moved since
// the server started holding balances is held from its first read on).
func (s *Service) offer(ledger string, position uint64, read readRows) {
	if len(read.rows) == 0 || s.served == nil {
		return // not kept (no server), or the accounts do not exist
	}
	if server := s.served(ledger); server != nil {
		server.OfferBalances(position, read.ledgerNo, read.rows)
	}
}

// readRows are balances the read model answered, in minor units, and the
// number of the ledger's lines they were read under (0: none read).
type readRows struct {
	ledgerNo int32
	rows     []projections.ServedBalance
}

// readBalances reads the balances of accounts (those that exist, in
// request order) and the checkpoint they reflect; and, with keep (the
// ledger has a BalanceServer), read: the same in minor units, to offer it.
func (s *Service) readBalances(ctx context.Context, ledger string, accounts []string, keep bool) (out Balances,
	read readRows, err error) {
	// One statement, one snapshot: the rows and the checkpoint agree. An
	// account's totals are its last statement line's (a backward step on the
	// lines' primary key), zero before its first; its asset and side are its
	// head's. Each account is a lookup by its key (LATERAL … OFFSET 0, never
	// flattened into a join): on a new ledger, whose statistics said one
	// row, a join scanned all of the ledger's rows.
	rows, err := s.pool.Query(ctx, `SELECT q.account, h.asset, h.scale, h.normal_balance,
			l.debits_posted::text, l.credits_posted::text, l.debits_pending::text, l.credits_pending::text,
			COALESCE(l.position, h.opened_position), c.position, h.ledger_no
		FROM (SELECT position FROM projection_checkpoints WHERE ledger = $1 AND projection = 'movements') c
		LEFT JOIN unnest($2::text[]) WITH ORDINALITY AS q(account, n) ON true
		LEFT JOIN LATERAL (SELECT * FROM movement_heads h WHERE h.ledger = $1 AND h.account = q.account OFFSET 0) h ON true
		`+lastLine("")+`
		ORDER BY q.n`, ledger, accounts)
	if err != nil {
		return Balances{}, readRows{}, fmt.Errorf("balances of %s: %w", ledger, err)
	}
	if keep {
		read.rows = make([]projections.ServedBalance, 0, len(accounts))
	}
	var (
		account, asset, normal pgtype.Text // nullable values, which pgx scans without reflect
		scale                  pgtype.Int2
		totals                 movementTexts
		pos, checkpoint        pgtype.Int8
		ledgerNo               pgtype.Int4
	)
	_, err = pgx.ForEachRow(rows, []any{&account, &asset, &scale, &normal, &totals[0], &totals[1], &totals[2], &totals[3],
		&pos, &checkpoint, &ledgerNo}, func() error {
		if checkpoint.Valid {
			out.Position = uint64(checkpoint.Int64)
		}
		if !asset.Valid {
			return nil // no such account
		}
		t, err := parseMovementTotals(&totals, uint8(scale.Int16), normal.String)
		if err != nil {
			return fmt.Errorf("account %s: %w", account.String, err)
		}
		out.Balances = append(out.Balances, t.balance(account.String, asset.String, normal.String, uint64(pos.Int64)))
		if keep {
			read.ledgerNo = ledgerNo.Int32
			read.rows = append(read.rows, projections.ServedBalance{Account: account.String, Asset: asset.String,
				Scale: t.scale, Normal: t.a.Normal, DebitsPosted: t.a.DebitsPosted, CreditsPosted: t.a.CreditsPosted,
				DebitsPending: t.a.DebitsPending, CreditsPending: t.a.CreditsPending, Position: uint64(pos.Int64)})
		}
		return nil
	})
	if err != nil {
		return Balances{}, readRows{}, fmt.Errorf("balances of %s: %w", ledger, err)
	}
	return out, read, nil
}

// waitFor returns once the projection's checkpoint is at least pos, with
// the Service to read from: s, or, when s reads a streaming replica
// (WithPrimary) that is marked down or has not reached pos within its
// fallback bound, the primary's. The primary is never behind the replica, so
// what a call waited for on one holds on the other, and a call that waits
// twice may move to the primary but never back.
//
// Errors: as waitOn, after WaitMax in all.
func (s *Service) waitFor(ctx context.Context, ledger, projection string, pos uint64) (*Service, error) {
	switch {
	case s.primary == nil: // the primary's, or route() already moved to it
		return s, s.waitOn(ctx, ledger, projection, pos, WaitMax)
	case s.replicaDown.Load(): // marked down since route()
		s.fallbacks.Add(1)
		return s.primary, s.primary.waitOn(ctx, ledger, projection, pos, WaitMax)
	case pos == 0:
		return s, nil
	}
	began := time.Now()
	err := s.waitOn(ctx, ledger, projection, pos, s.fallbackAfter)
	if err == nil || ctx.Err() != nil {
		return s, err
	}
	// Not reached in time, a head behind pos (the replica's lags the
	// primary's), or the replica's database failing: the primary answers.
	s.fallbacks.Add(1)
	return s.primary, s.primary.waitOn(ctx, ledger, projection, pos, max(WaitMax-time.Since(began), 0))
}

// WithPrimary makes s, whose pool is a PostgreSQL streaming replica's, a
// replica's Service: a call waiting for a min_position the replica has not
// reached within after (or while the replica is marked down) reads from
// primary instead, a Service on the primary's pool. s must have no waiter:
// the in-process notifier tells the primary's progress, not the replica's.
func (s *Service) WithPrimary(primary *Service, after time.Duration) *Service {
	s.primary, s.fallbackAfter = primary, after
	return s
}

// route is the Service a call starts from: the primary's while s is a
// replica marked down (counted as a fallback), else s.
func (s *Service) route() *Service {
	if s.primary != nil && s.replicaDown.Load() {
		s.fallbacks.Add(1)
		return s.primary
	}
	return s
}

// SetReplicaDown marks the replica down (every call reads from the
// primary) or up again.
func (s *Service) SetReplicaDown(down bool) { s.replicaDown.Store(down) }

// Fallbacks is how many calls read from the primary instead of the replica.
func (s *Service) Fallbacks() uint64 { return s.fallbacks.Load() }

// waitOn returns once the projection's checkpoint in s's database is at
// least pos, waiting at most bound.
//
// Errors: domain.ErrUnknownLedger and ErrMinPositionBeyondHead when pos is
// past the head of the ledger's log (read in the same database as the
// checkpoints, so a position a command acknowledged is never past it), both
// but on a replica; ErrNotReached after bound or ctx; database errors.
func (s *Service) waitOn(ctx context.Context, ledger, projection string, pos uint64, bound time.Duration) error {
	if pos == 0 {
		return nil
	}
	// A replica's head may lag the position a command was acknowledged at:
	// there the checkpoint is waited for all the same, and the primary, if
	// the replica does not get there in time, says whether pos is past the
	// head.
	if s.primary == nil {
		head, err := s.head(ctx, ledger)
		if err != nil {
			return err
		}
		if pos > head {
			return fmt.Errorf("min_position %d, head %d: %w", pos, head, ErrMinPositionBeyondHead)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var w Waiter
	if s.waiter != nil {
		w = s.waiter(ledger, projection)
	}
	delay := time.Millisecond
	for {
		if w != nil {
			wctx, cancel := context.WithTimeout(ctx, notifiedPollEvery)
			err := w.WaitFor(wctx, pos)
			cancel()
			if err == nil {
				return nil
			}
		}
		var at int64
		err := s.pool.QueryRow(ctx, `SELECT COALESCE(max(position), 0) FROM projection_checkpoints
			WHERE ledger = $1 AND projection = $2`, ledger, projection).Scan(&at)
		switch {
		case err == nil && uint64(at) >= pos:
			return nil
		case err != nil && ctx.Err() == nil:
			// A database fault is said at once, not disguised as a timeout.
			return fmt.Errorf("%s of %s at %d: %w", projection, ledger, pos, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s of %s at %d: %w", projection, ledger, pos, ErrNotReached)
		}
		if w != nil {
			continue // the notifier's wait was the pause
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return fmt.Errorf("%s of %s at %d: %w", projection, ledger, pos, ErrNotReached)
		}
		delay = min(2*delay, pollMax)
	}
}
