package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/eventstore"
)

// Limits of a rebuild.
const (
	// ShadowSuffix makes a ledger's shadow key, under which a rebuild writes
	// its rows and checkpoint; "~" is not allowed in a ledger name, so the
	// shadow never clashes with a ledger.
	ShadowSuffix = "~rebuild"
	// swapGapMax is how far the shadow may be behind the live checkpoint for
	// the swap to apply the rest within the swap's transaction: at most one
	// runner batch, so that the swap's batch is no larger than any other
	// (the trial balance's history folds at most one batch).
	swapGapMax = BatchMaxDefault
	// swapAttemptsMax bounds the swaps tried while writes keep the shadow
	// more than swapGapMax behind.
	swapAttemptsMax = 100
	// progressEvery is how often a rebuild reports and checks for the swap.
	progressEvery = 100 * time.Millisecond
)

// ErrUnknownProjection means no projector has the name asked for.
var ErrUnknownProjection = errors.New("unknown projection")

// errNotYet means the swap found the shadow too far behind: catch up more.
var errNotYet = errors.New("shadow not close enough to swap")

// Progress is where a rebuild stands.
type Progress struct {
	Position, Head  uint64
	EventsPerSecond float64
	ETASeconds      float64
	Done            bool
	// SwappedAt is the checkpoint at which the rebuilt model went live (Done).
	SwappedAt uint64
}

// ByName returns the projector of All named name.
//
// Errors: ErrUnknownProjection.
func ByName(name string) (Projector, error) {
	for _, p := range All() {
		if p.Name() == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%q: %w", name, ErrUnknownProjection)
}

// Rebuild rebuilds one projection of one ledger from its log into shadow rows
// (ledger key ledger+ShadowSuffix), then swaps them for the live rows in one
// transaction, while the live runner keeps running and queries keep being
// served. Its shadow checkpoint persists: run again, it resumes.
type Rebuild struct {
	pool   *pgxpool.Pool
	store  *eventstore.Store
	ledger string
	proj   Projector
	logger *slog.Logger
}

// NewRebuild returns a rebuild of proj for ledger; call Run.
func NewRebuild(pool *pgxpool.Pool, store *eventstore.Store, ledger string, proj Projector, logger *slog.Logger) *Rebuild {
	if logger == nil {
		logger = slog.Default()
	}
	return &Rebuild{pool: pool, store: store, ledger: ledger, proj: proj,
		logger: logger.With("ledger", ledger, "projection", proj.Name(), "rebuild", true)}
}

func (rb *Rebuild) shadow() string { return rb.ledger + ShadowSuffix }

// Run rebuilds, calling report with the progress every progressEvery and
// once at the end (Done), and returns the position of the swap.
//
// Errors: ctx's error (the shadow stays, to resume); the database's.
func (rb *Rebuild) Run(ctx context.Context, report func(Progress)) (uint64, error) {
	if err := rb.dropStaleShadow(ctx); err != nil {
		return 0, err
	}
	// The rate counts from where the shadow stood (0 when fresh, more when a
	// rebuild resumes) at the start: counting from the first position seen
	// a tick later left out that tick's work, and a rebuild done within it
	// reported 0 events/s.
	startPos, err := rb.checkpointOf(ctx, rb.shadow())
	if err != nil {
		return 0, err
	}
	began := time.Now()
	attempts := 0
	for {
		src := NewAheadSource(NewLogSource(rb.store, rb.ledger))
		runner := NewRunner(rb.pool, rb.shadow(), rb.proj, src, rb.logger)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = runner.Run(runCtx) }()
		err := rb.follow(ctx, runner, startPos, began, report)
		stop()
		<-done
		src.Close() // no read of the log left behind during the swap
		if err != nil {
			return 0, err
		}
		at, err := rb.swap(ctx)
		if errors.Is(err, errNotYet) {
			if attempts++; attempts >= swapAttemptsMax {
				return 0, fmt.Errorf("rebuild %s: the shadow stayed more than %d behind in %d swap attempts: %w",
					rb.proj.Name(), swapGapMax, attempts, err)
			}
			continue
		}
		if err != nil {
			return 0, err
		}
		report(Progress{Position: at, Head: at, Done: true, SwappedAt: at})
		rb.logger.Info("rebuilt and swapped", "position", at, "took", time.Since(began))
		return at, nil
	}
}

// follow reports progress until the shadow is within swapGapMax of the live
// checkpoint.
func (rb *Rebuild) follow(ctx context.Context, runner *Runner, startPos uint64, began time.Time, report func(Progress)) error {
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		pos := runner.Position()
		head, _, err := rb.store.Head(ctx, rb.ledger)
		if err != nil {
			return err
		}
		// Until the runner has read its checkpoint it stands at 0: the
		// shadow is where it stood when the rebuild began, not behind.
		p := Progress{Position: max(pos, startPos), Head: head}
		if secs := time.Since(began).Seconds(); secs > 0 && pos > startPos {
			p.EventsPerSecond = float64(pos-startPos) / secs
			if head > pos {
				p.ETASeconds = float64(head-pos) / p.EventsPerSecond
			}
		}
		report(p)
		live, err := rb.livePosition(ctx)
		if err != nil {
			return err
		}
		// A live projection ahead of the log applied events that are not
		// the log's (a stream ahead of a restored database): the shadow
		// goes as far as the log, and the swap moves the checkpoint back.
		live = min(live, head)
		if pos > 0 && pos+swapGapMax >= live || head == 0 {
			return nil
		}
		// A shadow runner that refused an event of the log (it does not
		// continue the chain) will not get past it: waiting would be for
		// ever.
		if fault, err := rb.shadowFault(ctx); err != nil || fault != "" {
			if err != nil {
				return err
			}
			return fmt.Errorf("rebuild %s: the shadow stopped at %d: %s: %w", rb.proj.Name(), pos, fault, ErrChainBroken)
		}
	}
}

// shadowFault returns the fault its runner recorded on the shadow's
// checkpoint, "" when none.
//
// Errors: the database's.
func (rb *Rebuild) shadowFault(ctx context.Context) (string, error) {
	var fault *string
	err := rb.pool.QueryRow(ctx, `SELECT fault FROM projection_checkpoints WHERE ledger = $1 AND projection = $2`,
		rb.shadow(), rb.proj.Name()).Scan(&fault)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("shadow of %s: %w", rb.proj.Name(), err)
	case fault == nil:
		return "", nil
	}
	return *fault, nil
}

func (rb *Rebuild) livePosition(ctx context.Context) (uint64, error) {
	return rb.checkpointOf(ctx, rb.ledger)
}

// checkpointOf is the projection's checkpoint under key (the ledger or its
// shadow), 0 when it has none.
func (rb *Rebuild) checkpointOf(ctx context.Context, key string) (uint64, error) {
	var pos int64
	err := rb.pool.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE ledger = $1 AND projection = $2`,
		key, rb.proj.Name()).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("checkpoint of %s under %s: %w", rb.proj.Name(), key, err)
	}
	return uint64(pos), nil
}

// dropStaleShadow drops a shadow left by another version of the projector.
func (rb *Rebuild) dropStaleShadow(ctx context.Context) error {
	return pgx.BeginFunc(ctx, rb.pool, func(tx pgx.Tx) error {
		var version int
		err := tx.QueryRow(ctx, `SELECT version FROM projection_checkpoints WHERE ledger = $1 AND projection = $2 FOR UPDATE`,
			rb.shadow(), rb.proj.Name()).Scan(&version)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err == nil && version == rb.proj.Version() {
			// A fault an earlier run's shadow runner recorded is its own:
			// this run's records it again if the log still holds it (follow
			// ends on it), not on the word of the last.
			_, err = tx.Exec(ctx, `UPDATE projection_checkpoints SET fault = NULL, fault_at = NULL WHERE ledger = $1 AND projection = $2`,
				rb.shadow(), rb.proj.Name())
			return err
		}
		if err != nil {
			return fmt.Errorf("shadow of %s: %w", rb.proj.Name(), err)
		}
		if err := dropRows(ctx, tx, rb.proj, rb.shadow()); err != nil {
			return fmt.Errorf("drop shadow: %w", err)
		}
		for _, t := range rb.proj.Tables() {
			if _, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{t}.Sanitize()+` WHERE ledger = $1`, rb.shadow()); err != nil {
				return fmt.Errorf("drop shadow %s: %w", t, err)
			}
		}
		_, err = tx.Exec(ctx, `DELETE FROM projection_checkpoints WHERE ledger = $1 AND projection = $2`, rb.shadow(), rb.proj.Name())
		return err
	})
}

// rowDropper is a projector with rows its Tables do not key by ledger.
type rowDropper interface {
	// dropRows takes the ledger key's rows of those tables from it (their
	// number retired, SweepRetired deletes them); the rows of Tables are
	// deleted after it.
	dropRows(ctx context.Context, tx pgx.Tx, key string) error
}

// dropRows takes from key the rows that proj's Tables do not key by ledger.
func dropRows(ctx context.Context, tx pgx.Tx, proj Projector, key string) error {
	if d, ok := proj.(rowDropper); ok {
		return d.dropRows(ctx, tx, key)
	}
	return nil
}

// swap replaces the live rows with the shadow's in one transaction. It locks
// the live checkpoint (the live runner's next batch waits on it), brings the
// shadow to the live checkpoint by applying the records between within the
// transaction, moves the rows and deletes the shadow checkpoint. The live
// checkpoint keeps its position when the shadow was behind or level, so the
// live runner's conditional update still matches; when the shadow was ahead,
// or the live checkpoint ahead of the log's head (it applied events that are
// not the log's), the live checkpoint moves to the shadow's and the live
// runner reloads (ErrCheckpointMoved).
//
// Errors: errNotYet (more than swapGapMax behind); the database's.
func (rb *Rebuild) swap(ctx context.Context) (uint64, error) {
	var at uint64
	err := pgx.BeginFunc(ctx, rb.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (ledger, projection, version, position)
			VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING`, rb.ledger, rb.proj.Name(), rb.proj.Version()); err != nil {
			return fmt.Errorf("swap %s: %w", rb.proj.Name(), err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (ledger, projection, version, position)
			VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING`, rb.shadow(), rb.proj.Name(), rb.proj.Version()); err != nil {
			return fmt.Errorf("swap %s: %w", rb.proj.Name(), err)
		}
		var live, shadow int64
		var eventAt *time.Time
		var hash []byte
		if err := tx.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE ledger = $1 AND projection = $2 FOR UPDATE`,
			rb.ledger, rb.proj.Name()).Scan(&live); err != nil {
			return fmt.Errorf("swap %s: lock live checkpoint: %w", rb.proj.Name(), err)
		}
		if err := tx.QueryRow(ctx, `SELECT position, event_at, hash FROM projection_checkpoints WHERE ledger = $1 AND projection = $2 FOR UPDATE`,
			rb.shadow(), rb.proj.Name()).Scan(&shadow, &eventAt, &hash); err != nil {
			return fmt.Errorf("swap %s: lock shadow checkpoint: %w", rb.proj.Name(), err)
		}
		head, _, err := rb.store.Head(ctx, rb.ledger)
		if err != nil {
			return fmt.Errorf("swap %s: %w", rb.proj.Name(), err)
		}
		if live > int64(head) {
			rb.logger.Warn("the live projection is ahead of the log: it applied events that are not the log's; swapping back to the log",
				"live", live, "head", head)
			live = int64(head)
		}
		if live-shadow > swapGapMax {
			return errNotYet
		}
		for shadow < live {
			recs, err := rb.store.Read(ctx, rb.ledger, uint64(shadow)+1, int(live-shadow))
			if err != nil {
				return fmt.Errorf("swap %s: %w", rb.proj.Name(), err)
			}
			if len(recs) == 0 || recs[0].Position != uint64(shadow)+1 {
				return fmt.Errorf("swap %s: the log has no record %d", rb.proj.Name(), shadow+1)
			}
			// The stretch is read past the shadow runner's checks: it must
			// continue the chain the shadow checked up to here.
			var prev eventstore.Hash
			known := shadow == 0 // the first event's prev_hash is all zeros
			if len(hash) == eventstore.HashSize {
				prev, known = eventstore.Hash(hash), true
			}
			if err := verifyChain(rb.proj.Name(), rb.ledger, recs, prev, known); err != nil {
				return fmt.Errorf("swap: %w", err)
			}
			if err := rb.proj.Apply(ctx, tx, rb.shadow(), recs); err != nil {
				return fmt.Errorf("swap %s at %d: %w", rb.proj.Name(), shadow, err)
			}
			last := recs[len(recs)-1]
			// The checkpoint's hash moves with its position: left at the
			// shadow's, the live runner found the next record not
			// continuing it (a broken chain) after every swap that
			// applied a gap.
			shadow, eventAt, hash = int64(last.Position), &last.RecordedAt, last.Hash[:]
		}
		// The live rows go and the shadow's take the ledger's name. Rows
		// keyed by a number of the key (the statement lines, the
		// transfers) stay where they are: the shadow's number goes with
		// the name, and the live one is retired, its rows swept after.
		if err := dropRows(ctx, tx, rb.proj, rb.ledger); err != nil {
			return fmt.Errorf("swap: %w", err)
		}
		for _, t := range rb.proj.Tables() {
			name := pgx.Identifier{t}.Sanitize()
			if _, err := tx.Exec(ctx, `DELETE FROM `+name+` WHERE ledger = $1`, rb.ledger); err != nil {
				return fmt.Errorf("swap %s: %w", t, err)
			}
			if _, err := tx.Exec(ctx, `UPDATE `+name+` SET ledger = $1 WHERE ledger = $2`, rb.ledger, rb.shadow()); err != nil {
				return fmt.Errorf("swap %s: %w", t, err)
			}
		}
		// The rows are the log's now: a fault the live runner recorded is
		// recorded again if its source still offers what it refused.
		if _, err := tx.Exec(ctx, `UPDATE projection_checkpoints SET version = $3, position = $4, event_at = $5, hash = $6,
			fault = NULL, fault_at = NULL, updated_at = now() WHERE ledger = $1 AND projection = $2`,
			rb.ledger, rb.proj.Name(), rb.proj.Version(), shadow, eventAt, hash); err != nil {
			return fmt.Errorf("swap %s: %w", rb.proj.Name(), err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM projection_checkpoints WHERE ledger = $1 AND projection = $2`,
			rb.shadow(), rb.proj.Name()); err != nil {
			return fmt.Errorf("swap %s: %w", rb.proj.Name(), err)
		}
		at = uint64(shadow)
		return nil
	})
	return at, err
}
