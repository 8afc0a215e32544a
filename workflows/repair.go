package workflows

import (
	"context"
	"fmt"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/projections"
)

// ErrRepairRunning: a repair of the same ledger's stream runs already in
// this process.
var ErrRepairRunning = domain.NewError(domain.KindExists, "stream repair runs already", "")

// Streams recreates a ledger's stream from nothing (natsbus.Streams): the
// relay fills it again from the log.
type Streams interface {
	Recreate(ctx context.Context, ledger string) error
}

// RepairProgress is where a repair stands: the stream recreated
// (Projection empty), then each projection's rebuild.
type RepairProgress struct {
	Projection string
	projections.Progress
}

// StreamRepair recreates a ledger's stream from the log and rebuilds the
// ledger's projections from the log: what an operator runs when the relay
// found the stream ahead of the log or different from it, or a projection
// refused an event from it.
type StreamRepair struct {
	streams  Streams
	rebuilds *Rebuilds
	faults   *projections.Faults

	running inFlight // the ledgers being repaired
}

// NewStreamRepair returns a StreamRepair that recreates streams through
// streams and rebuilds through rebuilds (whose read models hold the faults).
func NewStreamRepair(streams Streams, rebuilds *Rebuilds) *StreamRepair {
	return &StreamRepair{streams: streams, rebuilds: rebuilds, faults: projections.NewFaults(rebuilds.pool, rebuilds.logger)}
}

// Repair deletes ledger's stream and creates it empty (the relay publishes
// the log into it again), clears the read side's faults of ledger, then
// rebuilds each projection of ledger from the log and swaps it in: rows
// applied from a stream that was not the log's do not stay, and a
// projection ahead of the log goes back to its head. report is called as it
// advances. Run again after an interruption, it starts over (a rebuild
// resumes from its shadow).
//
// Errors: domain.ErrUnknownLedger; ErrRepairRunning; ErrRebuildRunning; the
// context's; the stream's or the database's.
func (s *StreamRepair) Repair(ctx context.Context, ledger string, report func(RepairProgress)) error {
	if _, err := s.rebuilds.store.Ledger(ctx, ledger); err != nil {
		return err
	}
	release, ok := s.running.claim(ledger)
	if !ok {
		return refuse(ErrRepairRunning, "a repair of the stream of %s runs already", ledger)
	}
	defer release()

	s.rebuilds.logger.Warn("repairing the stream: recreating it from the log, then rebuilding the projections", "ledger", ledger)
	if err := s.streams.Recreate(ctx, ledger); err != nil {
		return fmt.Errorf("repair the stream of %s: %w", ledger, err)
	}
	if err := s.faults.Clear(ctx, ledger); err != nil {
		return fmt.Errorf("repair the stream of %s: %w", ledger, err)
	}
	head, _, err := s.rebuilds.store.Head(ctx, ledger)
	if err != nil {
		return fmt.Errorf("repair the stream of %s: %w", ledger, err)
	}
	report(RepairProgress{Progress: projections.Progress{Position: 0, Head: head}})
	for _, proj := range projections.All() {
		name := proj.Name()
		if err := s.rebuilds.Run(ctx, ledger, name, func(p projections.Progress) {
			report(RepairProgress{Projection: name, Progress: p})
		}); err != nil {
			return err
		}
	}
	s.rebuilds.logger.Info("stream repaired and projections rebuilt from the log", "ledger", ledger)
	return nil
}
