package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ledgerd/ledger/domain"
)

// Limits of the store's calls.
const (
	// AppendMax is the most records one Append takes: one transaction, one fsync.
	AppendMax = 65536
	// ReadMax is the most records one Read returns.
	ReadMax = 10000
)

var (
	// ErrFenced means the ledger's head is not where the appender expected:
	// another writer appended. The appender must step down and reload.
	ErrFenced = errors.New("ledger head moved: another writer appended")
	// ErrBadBatch means an Append's records are not a gapless, chained sequence
	// following the expected position: a bug in the caller.
	ErrBadBatch = errors.New("records do not follow the head")
)

// Store is the event log in Postgres.
type Store struct {
	pool *pgxpool.Pool
	// beforeCommit, when set (by tests), runs in each append after the head
	// moved and before the COMMIT: a writer frozen mid-append.
	beforeCommit func()
}

// New returns a Store on pool. Run Migrate first.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Head returns the position and hash of a ledger's last event; 0 and the zero
// hash for a ledger with no events.
//
// Errors: the database error.
func (s *Store) Head(ctx context.Context, ledger string) (uint64, Hash, error) {
	var (
		pos  int64
		hash []byte
	)
	err := s.pool.QueryRow(ctx, `SELECT position, hash FROM ledger_heads WHERE ledger = $1`, ledger).Scan(&pos, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, Hash{}, nil
	}
	if err != nil {
		return 0, Hash{}, fmt.Errorf("head of %s: %w", ledger, err)
	}
	var h Hash
	copy(h[:], hash)
	return uint64(pos), h, nil
}

// LedgerHead is a ledger's head: the position and hash of its last event.
type LedgerHead struct {
	Ledger   string
	Position uint64
	Hash     Hash
}

// Heads returns every ledger's head in one query, by name.
//
// Errors: the database's.
func (s *Store) Heads(ctx context.Context) ([]LedgerHead, error) {
	rows, err := s.pool.Query(ctx, `SELECT ledger, position, hash FROM ledger_heads ORDER BY ledger`)
	if err != nil {
		return nil, fmt.Errorf("list heads: %w", err)
	}
	heads, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (LedgerHead, error) {
		var (
			h    LedgerHead
			pos  int64
			hash []byte
		)
		err := row.Scan(&h.Ledger, &pos, &hash)
		h.Position = uint64(pos)
		copy(h.Hash[:], hash)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("list heads: %w", err)
	}
	return heads, nil
}

// Ledgers lists the ledgers that have a head, in name order.
//
// Errors: the database error.
func (s *Store) Ledgers(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT ledger FROM ledger_heads ORDER BY ledger`)
	if err != nil {
		return nil, fmt.Errorf("list ledgers: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list ledgers: %w", err)
	}
	return names, nil
}

// Limits of an append transaction, set on the transaction itself (SET LOCAL)
// so that a writer that freezes in the middle of one (SIGSTOP, a VM pause, a
// partition) cannot hold the ledger's head row, and with it every other
// writer of the ledger, for longer than these. They are generous because a
// healthy batch of AppendMax records under -race on a loaded 2-core machine
// takes a few seconds, and a timeout fails that batch (the writer reloads and
// retries its requests: nothing is lost, but nothing should fail that is
// healthy).
const (
	// AppendLockTimeout bounds the wait for the head row's lock: a writer
	// queued behind a frozen one fails its batch and reloads instead of
	// blocking for as long as the freeze lasts.
	AppendLockTimeout = 3 * time.Second
	// AppendIdleTimeout bounds a pause between the statements of an append
	// (idle_in_transaction_session_timeout): PostgreSQL ends the session of a
	// writer frozen there, which rolls the append back and frees the row (and,
	// on a lease's own session, the lease).
	AppendIdleTimeout = 5 * time.Second
	// AppendStatementTimeoutMax bounds one statement of an append, the
	// insert of its events above all. The caller's deadline, when sooner, is used
	// instead: the server then enforces it even if the caller cannot.
	AppendStatementTimeoutMax = 30 * time.Second
)

// Append writes recs, which must be sealed and follow position expected of
// ledger gaplessly, in one transaction on a connection of the pool: the head
// moves from expected to the last record's position, or nothing is written.
// The ledger must be active (a first append creates it so); the append holds
// its status row (FOR SHARE) until it commits, so a status change (archive)
// waits for it. Listeners on channel NotifyChannel hear the ledger's name
// after the commit. A writer that holds a lease appends with Held.Append
// instead, which fences the append with the lease.
//
// Errors: ErrFenced when the head is not at expected; ErrBadBatch for records
// that do not follow it; ErrLedgerArchived or ErrLedgerImporting when the
// ledger is not active; the database error otherwise (a lock, idle or
// statement timeout among them, see AppendLockTimeout). After a database error
// on COMMIT the outcome is unknown: read the head to learn it.
func (s *Store) Append(ctx context.Context, ledger string, expected uint64, prevHash Hash, recs []Record) error {
	return s.append(ctx, ledger, expected, prevHash, recs, StatusActive, false)
}

// AppendImport is Append for a log import: the ledger must be importing
// (BeginImport), and, when last is set, the same transaction makes it active.
//
// Errors: as Append, with ErrLedgerNotImportable when the ledger is active.
func (s *Store) AppendImport(ctx context.Context, ledger string, expected uint64, prevHash Hash, recs []Record, last bool) error {
	return s.append(ctx, ledger, expected, prevHash, recs, StatusImporting, last)
}

func (s *Store) append(ctx context.Context, ledger string, expected uint64, prevHash Hash, recs []Record,
	want LedgerStatus, finish bool) error {
	if err := checkBatch(ledger, expected, prevHash, recs); err != nil {
		return err
	}
	return s.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		// A connection left in a transaction by a failure is not reused:
		// the pool destroys it on release.
		return appendOn(ctx, c.Conn(), ledger, expected, recs, want, finish, s.beforeCommit)
	})
}

// appendOn runs an append on conn, in one transaction of two round trips:
// a pipelined batch that opens the transaction, sets its limits, checks the
// ledger's status, appends recs and moves the head over them
// (append_events, migration 0007) and queues the notice; then the COMMIT
// (with, for an import's last chunk, the ledger's activation before it).
// beforeCommit, if not nil, runs between the two.
//
// The batch's statements run in order, each under the limits its second
// one set (SET LOCAL takes effect at once, for the next statement of the
// batch, so the status row's lock waits under them too). A statement that
// fails makes PostgreSQL skip the rest of the batch, and an unexpected
// status returns before the COMMIT: either way the transaction rolls back.
// append_events runs even when the status is wrong (the batch is sent
// whole); its effects roll back with the rest.
func appendOn(ctx context.Context, conn *pgx.Conn, ledger string, expected uint64, recs []Record,
	want LedgerStatus, finish bool, beforeCommit func()) (err error) {
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SELECT set_config('lock_timeout', $1, true), set_config('idle_in_transaction_session_timeout', $2, true),
		set_config('statement_timeout', $3, true)`,
		millis(AppendLockTimeout), millis(AppendIdleTimeout), millis(statementTimeout(ctx)))
	createLedger := expected == 0 && want == StatusActive
	if createLedger {
		// A writer's first append creates the ledger's row, active; an
		// import's row is made by BeginImport.
		b.Queue(`INSERT INTO ledgers (ledger, status) VALUES ($1, 'active') ON CONFLICT (ledger) DO NOTHING`, ledger)
	}
	b.Queue(lockStatusSQL(want), ledger)
	// The writer's role may neither insert into events nor write
	// ledger_heads: append_events does both, and only at the head.
	useBinaryArrays(conn)
	cols := appendColumns(recs)
	b.Queue(`SELECT append_events($1, $2, $3, $4, $5, $6, $7, $8, $9)`, ledger, int64(expected),
		firstArray{cols.types, cols.size()}, cols.versions, cols.recorded, cols.commands, cols.payloads, cols.prev, cols.hashes)
	// A notice is delivered at commit only, so it may be queued first.
	b.Queue(`SELECT pg_notify($1, $2)`, NotifyChannel, ledger)
	defer func() {
		if err != nil {
			rollback(ctx, conn)
		}
	}()
	br := conn.SendBatch(ctx, b)
	moved, err := readAppendBatch(br, ledger, expected, want, createLedger)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("append to %s at %d: %w", ledger, expected, cerr)
	}
	if err != nil {
		return err
	}
	if !moved {
		return fmt.Errorf("append to %s at %d: %w", ledger, expected, ErrFenced)
	}
	if beforeCommit != nil {
		beforeCommit()
	}
	if finish {
		if _, err := conn.Exec(ctx, `UPDATE ledgers SET status = 'active', status_changed_at = now() WHERE ledger = $1`, ledger); err != nil {
			return fmt.Errorf("append to %s at %d: end the import: %w", ledger, expected, err)
		}
	}
	tag, err := conn.Exec(ctx, `COMMIT`)
	if err != nil {
		return fmt.Errorf("append to %s at %d: commit: %w", ledger, expected, err)
	}
	if tag.String() != "COMMIT" {
		// A transaction that failed answers COMMIT with ROLLBACK.
		return fmt.Errorf("append to %s at %d: commit: %w", ledger, expected, pgx.ErrTxCommitRollback)
	}
	return nil
}

// rollbackTimeout bounds the ROLLBACK of a failed append.
const rollbackTimeout = 5 * time.Second

// rollback ends the transaction a failed append left open on conn, if any,
// even when ctx has ended; a connection that cannot is closed, which ends
// the transaction too (and, for a lease's session, the lease: its holder
// learns so from Held.Lost).
func rollback(ctx context.Context, conn *pgx.Conn) {
	if conn.IsClosed() || conn.PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, `ROLLBACK`); err != nil {
		_ = conn.Close(ctx)
	}
}

// readAppendBatch reads the results of appendIn's batch, in its order, and
// says whether the head moved. The status is checked before the head's
// move is looked at: an archived ledger is reported as such, not as fenced.
func readAppendBatch(br pgx.BatchResults, ledger string, expected uint64, want LedgerStatus, createLedger bool) (bool, error) {
	if _, err := br.Exec(); err != nil {
		return false, fmt.Errorf("append to %s at %d: begin: %w", ledger, expected, err)
	}
	if _, err := br.Exec(); err != nil {
		return false, fmt.Errorf("append to %s at %d: set limits: %w", ledger, expected, err)
	}
	if createLedger {
		if _, err := br.Exec(); err != nil {
			return false, fmt.Errorf("append to %s: create ledger: %w", ledger, err)
		}
	}
	var st string
	err := br.QueryRow().Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("append to %s at %d: %w", ledger, expected, domain.ErrUnknownLedger)
	}
	if err != nil {
		return false, fmt.Errorf("append to %s at %d: status: %w", ledger, expected, err)
	}
	if err := statusErr(ledger, LedgerStatus(st), want); err != nil {
		return false, err
	}
	var moved bool
	if err := br.QueryRow().Scan(&moved); err != nil {
		return false, fmt.Errorf("append to %s at %d: move head: %w", ledger, expected, err)
	}
	if _, err := br.Exec(); err != nil {
		return false, fmt.Errorf("append to %s at %d: notify: %w", ledger, expected, err)
	}
	return moved, nil
}

// statementTimeout is AppendStatementTimeoutMax, or the time left before
// ctx's deadline when that is sooner (at least a millisecond: 0 would mean
// no timeout at all).
func statementTimeout(ctx context.Context) time.Duration {
	d := AppendStatementTimeoutMax
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return max(d, time.Millisecond)
}

// millis formats d for a PostgreSQL time setting.
func millis(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

// lockStatusSQL reads the ledger's status and holds its row for the
// append's transaction. The writer shares the row (appends of one ledger
// are serialised by its head row anyway); an import takes it for update,
// since its last chunk changes it.
func lockStatusSQL(want LedgerStatus) string {
	if want != StatusActive {
		return `SELECT status FROM ledgers WHERE ledger = $1 FOR UPDATE`
	}
	return `SELECT status FROM ledgers WHERE ledger = $1 FOR SHARE`
}

// NotifyChannel is the LISTEN/NOTIFY channel on which appends announce their
// ledger, so that relays in other processes wake up.
const NotifyChannel = "ledger_appended"

func checkBatch(ledger string, expected uint64, prev Hash, recs []Record) error {
	if len(recs) == 0 || len(recs) > AppendMax {
		return fmt.Errorf("append %d records (1..%d): %w", len(recs), AppendMax, ErrBadBatch)
	}
	for i := range recs {
		r := &recs[i]
		if r.Ledger != ledger || r.Position != expected+uint64(i)+1 || r.PrevHash != prev {
			return fmt.Errorf("record %d (%s@%d) after %s@%d: %w", i, r.Ledger, r.Position, ledger, expected+uint64(i), ErrBadBatch)
		}
		prev = r.Hash
	}
	return nil
}

// readSQL reads a page of a ledger's records from a position on.
const readSQL = `SELECT position, type, schema_version, recorded_at, command_id, payload, prev_hash, hash
	FROM events WHERE ledger = $1 AND position >= $2 ORDER BY position LIMIT $3`

// Read returns up to limit (at most ReadMax) records of ledger from position
// from on, in position order.
//
// Errors: the database error.
func (s *Store) Read(ctx context.Context, ledger string, from uint64, limit int) ([]Record, error) {
	limit = min(max(limit, 1), ReadMax)
	rows, err := s.pool.Query(ctx, readSQL, ledger, int64(from), limit)
	if err != nil {
		return nil, fmt.Errorf("read %s from %d: %w", ledger, from, err)
	}
	// A small start: most reads (the relay's, a projector's at the head)
	// find a few records, and a Record is about 200 bytes; 1,024 of them
	// preallocated made the relay's empty reads a third of ledgerd's
	// allocations under single transfers.
	return collectRecords(rows, ledger, min(limit, 16), limit)
}

// collectRecords scans at most limit rows into records, with room for room
// of them at first. Beyond, the room grows four times at a time, up to
// limit: append's growth (a quarter at a time for large slices) copied a
// page of 10,000 records about four times over, and reading it took twice
// as long (BenchmarkRead; room made for the whole page first read no
// faster than this).
func collectRecords(rows pgx.Rows, ledger string, room, limit int) ([]Record, error) {
	recs, _, err := readRecords(rows, ledger, room, limit)
	return recs, err
}

// readRecords is collectRecords, and whether it read the rows' raw values.
func readRecords(rows pgx.Rows, ledger string, room, limit int) (_ []Record, raw bool, _ error) {
	defer rows.Close()
	recs := make([]Record, 0, room)
	// The targets live across the rows: each one passed to Scan escapes, an
	// allocation a row when declared in the loop. The hashes are read in
	// place (DriverBytes: pgx's buffer, valid until the next row) and copied
	// into the record's arrays; a []byte target allocates a copy a row.
	var (
		r          Record
		pos        int64
		version    int16
		at         time.Time
		prev, hash pgtype.DriverBytes
	)
	dest := []any{&pos, &r.Type, &version, &at, &r.CommandID, &r.Payload, &prev, &hash}
	var rr *rawReader
	if readableRaw(rows.FieldDescriptions()) {
		rr = &rawReader{ledger: ledger}
	}
	for rows.Next() {
		if rr != nil {
			if err := rr.read(rows.RawValues(), &r); err != nil {
				return nil, true, fmt.Errorf("read %s: %w", ledger, err)
			}
		} else {
			r = Record{Ledger: ledger}
			if err := rows.Scan(dest...); err != nil {
				return nil, false, fmt.Errorf("read %s: %w", ledger, err)
			}
			r.Position, r.SchemaVersion, r.RecordedAt = uint64(pos), int(version), at.UTC()
			copy(r.PrevHash[:], prev)
			copy(r.Hash[:], hash)
		}
		if len(recs) == cap(recs) {
			grown := make([]Record, len(recs), max(min(4*cap(recs), limit), cap(recs)+1))
			copy(grown, recs)
			recs = grown
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, rr != nil, fmt.Errorf("read %s: %w", ledger, err)
	}
	return recs, rr != nil, nil
}

// PositionsMax bounds one ReadPositions.
const PositionsMax = ReadMax

// ReadPositions returns the records of ledger at the given positions, in
// position order; positions the log does not hold are absent.
//
// Errors: ErrBadBatch for more than PositionsMax positions; the database error.
func (s *Store) ReadPositions(ctx context.Context, ledger string, positions []uint64) ([]Record, error) {
	if len(positions) > PositionsMax {
		return nil, fmt.Errorf("read %d positions (at most %d): %w", len(positions), PositionsMax, ErrBadBatch)
	}
	ps := make([]int64, len(positions))
	for i, p := range positions {
		ps[i] = int64(p)
	}
	rows, err := s.pool.Query(ctx, `SELECT position, type, schema_version, recorded_at, command_id, payload, prev_hash, hash
		FROM events WHERE ledger = $1 AND position = ANY($2) ORDER BY position`, ledger, ps)
	if err != nil {
		return nil, fmt.Errorf("read %s at %d positions: %w", ledger, len(positions), err)
	}
	return collectRecords(rows, ledger, len(positions), len(positions))
}
