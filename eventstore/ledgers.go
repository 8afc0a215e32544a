package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ledgerd/ledger/domain"
)

// LedgerStatus is a ledger's lifecycle state (table ledgers).
type LedgerStatus string

// Ledger statuses.
const (
	// StatusActive accepts commands.
	StatusActive LedgerStatus = "active"
	// StatusImporting is a ledger a log import writes (or was writing when it
	// stopped): only AppendImport appends to it, and its last chunk makes it
	// active.
	StatusImporting LedgerStatus = "importing"
	// StatusArchived is read-only: nothing appends to it.
	StatusArchived LedgerStatus = "archived"
)

// ListLedgersMax bounds one page of ListLedgers.
const ListLedgersMax = 1000

// createLedgerLockKey serialises ledger creations (an advisory lock key), so
// that the count of live ledgers checked before an insert stays true.
const createLedgerLockKey = 0x6c6564676572 + 4 // "ledger" + migration 0004

var (
	// ErrLedgerArchived means the ledger is archived: nothing appends to it.
	ErrLedgerArchived error = domain.NewError(domain.KindConflict, "ledger archived", "")
	// ErrLedgerImporting means a log import writes the ledger (or stopped
	// before its end): only the import, resumed, appends to it.
	ErrLedgerImporting error = domain.NewError(domain.KindConflict, "ledger is importing", "send the same log again to complete the import")
	// ErrLedgerNotImportable means an import may not write the ledger: it is
	// active with events, or archived.
	ErrLedgerNotImportable error = domain.NewError(domain.KindConflict, "ledger exists and is not an interrupted import", "import into a new ledger")
	// ErrTooManyLiveLedgers means CreateLedger found the bound of active and
	// importing ledgers reached.
	ErrTooManyLiveLedgers error = domain.NewError(domain.KindExhausted, "too many ledgers", "")
)

// Ledger is a ledger's row with its head.
type Ledger struct {
	Name            string
	Status          LedgerStatus
	Head            uint64
	CreatedAt       time.Time
	StatusChangedAt time.Time
}

// statusErr is the error an append to a ledger in status st returns, nil
// when the append may go on. want is the status the appender needs.
func statusErr(ledger string, st, want LedgerStatus) error {
	switch {
	case st == want:
		return nil
	case st == StatusArchived:
		return fmt.Errorf("%q: %w", ledger, ErrLedgerArchived)
	case st == StatusImporting:
		return fmt.Errorf("%q: %w", ledger, ErrLedgerImporting)
	}
	return fmt.Errorf("%q is %s: %w", ledger, st, ErrLedgerNotImportable)
}

const ledgerColumns = `l.ledger, l.status, COALESCE(h.position, 0), l.created_at, l.status_changed_at`

func scanLedger(row pgx.Row) (Ledger, error) {
	var (
		l    Ledger
		st   string
		head int64
	)
	if err := row.Scan(&l.Name, &st, &head, &l.CreatedAt, &l.StatusChangedAt); err != nil {
		return Ledger{}, err
	}
	l.Status, l.Head = LedgerStatus(st), uint64(head)
	return l, nil
}

// Ledger returns a ledger's row and head.
//
// Errors: domain.ErrUnknownLedger; the database error.
func (s *Store) Ledger(ctx context.Context, name string) (Ledger, error) {
	l, err := scanLedger(s.pool.QueryRow(ctx, `SELECT `+ledgerColumns+`
		FROM ledgers l LEFT JOIN ledger_heads h USING (ledger) WHERE l.ledger = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Ledger{}, fmt.Errorf("%q: %w", name, domain.ErrUnknownLedger)
	}
	if err != nil {
		return Ledger{}, fmt.Errorf("ledger %s: %w", name, err)
	}
	return l, nil
}

// ListLedgers returns up to limit (at most ListLedgersMax) ledgers named
// after after, in name order.
//
// Errors: the database error.
func (s *Store) ListLedgers(ctx context.Context, after string, limit int) ([]Ledger, error) {
	limit = min(max(limit, 1), ListLedgersMax)
	rows, err := s.pool.Query(ctx, `SELECT `+ledgerColumns+`
		FROM ledgers l LEFT JOIN ledger_heads h USING (ledger) WHERE l.ledger > $1 ORDER BY l.ledger LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list ledgers: %w", err)
	}
	defer rows.Close()
	var out []Ledger
	for rows.Next() {
		l, err := scanLedger(rows)
		if err != nil {
			return nil, fmt.Errorf("list ledgers: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list ledgers: %w", err)
	}
	return out, nil
}

// CreateLedger creates an active, empty ledger, unless it exists: created
// says which, and the ledger is returned as it is. liveMax, when positive,
// bounds the active and importing ledgers: a creation beyond it is refused.
//
// Errors: ErrTooManyLiveLedgers; the database error.
func (s *Store) CreateLedger(ctx context.Context, name string, liveMax int) (l Ledger, created bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(createLedgerLockKey)); err != nil {
			return err
		}
		l, err = scanLedger(tx.QueryRow(ctx, `SELECT `+ledgerColumns+`
			FROM ledgers l LEFT JOIN ledger_heads h USING (ledger) WHERE l.ledger = $1`, name))
		if err == nil || !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if liveMax > 0 {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM ledgers WHERE status <> 'archived'`).Scan(&n); err != nil {
				return err
			}
			if n >= liveMax {
				return fmt.Errorf("%d active or importing ledgers, at most %d: %w", n, liveMax, ErrTooManyLiveLedgers)
			}
		}
		l, err = scanLedger(tx.QueryRow(ctx, `INSERT INTO ledgers AS l (ledger, status) VALUES ($1, 'active')
			RETURNING l.ledger, l.status, 0::bigint, l.created_at, l.status_changed_at`, name))
		created = err == nil
		return err
	})
	if err != nil && !errors.Is(err, ErrTooManyLiveLedgers) {
		err = fmt.Errorf("create ledger %s: %w", name, err)
	}
	return l, created, err
}

// SetLedgerStatus moves a ledger from status from to status to; a ledger
// already at to is answered as it is (changed false). It waits for the
// appends in flight (each holds the ledger's row), so that once it returns no
// append made under the old status commits.
//
// Errors: domain.ErrUnknownLedger; ErrLedgerArchived or ErrLedgerImporting when the
// ledger is in another status than from or to; the database error.
func (s *Store) SetLedgerStatus(ctx context.Context, name string, from, to LedgerStatus) (l Ledger, changed bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var st string
		err := tx.QueryRow(ctx, `SELECT status FROM ledgers WHERE ledger = $1 FOR UPDATE`, name).Scan(&st)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%q: %w", name, domain.ErrUnknownLedger)
		}
		if err != nil {
			return err
		}
		switch LedgerStatus(st) {
		case to:
		case from:
			if _, err := tx.Exec(ctx, `UPDATE ledgers SET status = $2, status_changed_at = now() WHERE ledger = $1`, name, string(to)); err != nil {
				return err
			}
			changed = true
		default:
			return statusErr(name, LedgerStatus(st), from)
		}
		l, err = scanLedger(tx.QueryRow(ctx, `SELECT `+ledgerColumns+`
			FROM ledgers l LEFT JOIN ledger_heads h USING (ledger) WHERE l.ledger = $1`, name))
		return err
	})
	if err != nil && !errors.Is(err, domain.ErrUnknownLedger) && !errors.Is(err, ErrLedgerArchived) && !errors.Is(err, ErrLedgerImporting) {
		err = fmt.Errorf("set status of ledger %s: %w", name, err)
	}
	return l, changed, err
}

// BeginImport marks a ledger as importing, before an import appends its
// first chunk: a new ledger (created so), an active one with no events, or
// one an interrupted import left importing. liveMax bounds the live ledgers
// as in CreateLedger.
//
// Errors: ErrLedgerNotImportable for an active ledger with events or an
// archived one; ErrTooManyLiveLedgers; the database error.
func (s *Store) BeginImport(ctx context.Context, name string, liveMax int) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(createLedgerLockKey)); err != nil {
			return err
		}
		var (
			st   string
			head int64
		)
		err := tx.QueryRow(ctx, `SELECT l.status, COALESCE(h.position, 0) FROM ledgers l LEFT JOIN ledger_heads h USING (ledger)
			WHERE l.ledger = $1 FOR UPDATE OF l`, name).Scan(&st, &head)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if liveMax > 0 {
				var n int
				if err := tx.QueryRow(ctx, `SELECT count(*) FROM ledgers WHERE status <> 'archived'`).Scan(&n); err != nil {
					return err
				}
				if n >= liveMax {
					return fmt.Errorf("%d active or importing ledgers, at most %d: %w", n, liveMax, ErrTooManyLiveLedgers)
				}
			}
			_, err := tx.Exec(ctx, `INSERT INTO ledgers (ledger, status) VALUES ($1, 'importing')`, name)
			return err
		case err != nil:
			return err
		case LedgerStatus(st) == StatusImporting:
			return nil
		case LedgerStatus(st) == StatusActive && head == 0:
			_, err := tx.Exec(ctx, `UPDATE ledgers SET status = 'importing', status_changed_at = now() WHERE ledger = $1`, name)
			return err
		}
		return fmt.Errorf("%q is %s with %d events: %w", name, st, head, ErrLedgerNotImportable)
	})
	if err != nil && !errors.Is(err, ErrLedgerNotImportable) && !errors.Is(err, ErrTooManyLiveLedgers) {
		err = fmt.Errorf("begin import into %s: %w", name, err)
	}
	return err
}
