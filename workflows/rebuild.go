package workflows

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
)

// Errors of a rebuild.
var (
	// ErrUnknownProjection: no projection has the name asked for.
	ErrUnknownProjection = domain.NewInvalid("projection", "unknown projection", "")
	// ErrRebuildRunning: the same rebuild runs already in this process.
	ErrRebuildRunning = domain.NewError(domain.KindExists, "rebuild runs already", "")
)

// Rebuilds runs projection rebuilds, one at a time per ledger and
// projection: two would share one shadow.
type Rebuilds struct {
	pool   *pgxpool.Pool
	store  *eventstore.Store
	logger *slog.Logger

	// running holds the rebuilds in progress, "ledger/projection".
	running inFlight
	// swapped, when set, is told each ledger whose rebuild swapped in.
	swapped func(ledger string)
}

// WithSwapped makes r call f with the ledger after each rebuild that swapped
// in, a stream repair's included: the process restarts the ledger's live
// projections, whose checkpoint the swap may have moved (back to the log's
// head, for one that was ahead) and whose in-memory state (each account's
// running totals) may come from the rows the rebuild replaced. It returns r.
func (r *Rebuilds) WithSwapped(f func(ledger string)) *Rebuilds {
	r.swapped = f
	return r
}

// NewRebuilds returns Rebuilds of the read models in pool from the log in
// store.
func NewRebuilds(pool *pgxpool.Pool, store *eventstore.Store, logger *slog.Logger) *Rebuilds {
	if logger == nil {
		logger = slog.Default()
	}
	return &Rebuilds{pool: pool, store: store, logger: logger}
}

// Run rebuilds projection of ledger and swaps it in (projections.Rebuild),
// calling report as it advances; cancelled, the rebuild keeps its shadow and
// the next Run resumes from it.
//
// Errors: ErrUnknownProjection (its text names the projections);
// domain.ErrUnknownLedger; ErrRebuildRunning; the context's; the
// rebuild's (a database error).
func (r *Rebuilds) Run(ctx context.Context, ledger, projection string, report func(projections.Progress)) error {
	proj, err := projections.ByName(projection)
	if err != nil {
		names := make([]string, 0, 4)
		for _, p := range projections.All() {
			names = append(names, p.Name())
		}
		return refuse(ErrUnknownProjection, "must be one of %s", strings.Join(names, ", "))
	}
	// A ledger that does not exist has no log to rebuild from: an empty
	// model swapped in would say it does.
	if _, err := r.store.Ledger(ctx, ledger); err != nil {
		return err
	}
	key := ledger + "/" + proj.Name()
	release, ok := r.running.claim(key)
	if !ok {
		return refuse(ErrRebuildRunning, "a rebuild of %s runs already", key)
	}
	defer release()

	if _, err := projections.NewRebuild(r.pool, r.store, ledger, proj, r.logger).Run(ctx, report); err != nil {
		return fmt.Errorf("rebuild %s of %s: %w", proj.Name(), ledger, err)
	}
	if r.swapped != nil {
		r.swapped(ledger)
	}
	// The rows the swap replaced, after it: the rebuilt model is live, and
	// a sweep cut short leaves the rest to the next one (every projector
	// process sweeps at its start and each minute).
	if n, err := projections.SweepRetired(ctx, r.pool); err != nil {
		r.logger.Warn("the rows a rebuild replaced are not all deleted yet", "ledger", ledger, "projection", proj.Name(),
			"deleted", n, "err", err)
	} else if n > 0 {
		r.logger.Info("deleted the rows a rebuild replaced", "ledger", ledger, "projection", proj.Name(), "rows", n)
	}
	return nil
}
