package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// ledgerState is the writer's state and where it stands in the log.
type ledgerState struct {
	domain *domain.State
	head   uint64
	hash   eventstore.Hash
}

// load folds the ledger's whole log into a fresh state, checking that the chain
// links (the full hash check is the auditor's: ledgerctl audit verify).
func (w *Writer) load(ctx context.Context) (*ledgerState, error) {
	head, headHash, err := w.opts.Store.Head(ctx, w.opts.Ledger)
	if err != nil {
		return nil, err
	}
	st := &ledgerState{domain: domain.NewState()}
	for st.head < head {
		recs, err := w.opts.Store.Read(ctx, w.opts.Ledger, st.head+1, eventstore.ReadMax)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			return nil, fmt.Errorf("load %s: log ends at %d, head says %d", w.opts.Ledger, st.head, head)
		}
		for i := range recs {
			if err := st.apply(&recs[i]); err != nil {
				return nil, fmt.Errorf("load %s: %w", w.opts.Ledger, err)
			}
		}
	}
	if st.hash != headHash {
		return nil, fmt.Errorf("load %s: chain ends in %x, head says %x", w.opts.Ledger, st.hash[:8], headHash[:8])
	}
	w.opts.Logger.Info("writer loaded", "position", st.head, "accounts", st.domain.AccountCount())
	return st, nil
}

func (st *ledgerState) apply(r *eventstore.Record) error {
	if r.Position != st.head+1 || r.PrevHash != st.hash {
		return fmt.Errorf("record %d does not follow %d: the log is broken", r.Position, st.head)
	}
	e, err := domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload)
	if err != nil {
		return fmt.Errorf("record %d: %w", r.Position, err)
	}
	st.domain.Evolve(r.Position, e)
	st.head, st.hash = r.Position, r.Hash
	return nil
}

// decide decides every command of reqs in order, each against the state left
// by those before it, and returns the batch to append. Requests whose caller
// has gone are skipped: nothing of theirs was applied.
func (st *ledgerState) decide(w *Writer, reqs []*request) *job {
	now := w.opts.Clock().UTC().Truncate(time.Microsecond)
	j := &job{expected: st.head, prev: st.hash}
	// One arena holds every payload of the batch: one allocation, not one per
	// event. Slices into an outgrown arena stay valid.
	var arena []byte
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			r.finish(err)
			continue
		}
		if r.read != nil {
			r.read(st.domain)
			j.reqs = append(j.reqs, r)
			continue
		}
		for i, c := range r.cmds {
			res := &r.results[r.index[i]]
			e, err := domain.Decide(st.domain, c, now)
			if err != nil {
				res.Err = err
				if x, ok := err.(*domain.ExistsError); ok {
					res.Position = x.Position
				}
				continue
			}
			if arena == nil {
				arena = make([]byte, 0, 256*len(r.cmds))
			}
			start := len(arena)
			arena = domain.AppendEvent(arena, e)
			payload := arena[start:len(arena):len(arena)]
			rec := eventstore.Record{
				Ledger: w.opts.Ledger, Position: st.head + 1, Type: e.EventType(),
				SchemaVersion: domain.SchemaVersion, RecordedAt: now, CommandID: c.CommandID(), Payload: payload,
			}
			rec.Seal(st.hash)
			st.domain.Evolve(rec.Position, e)
			st.head, st.hash = rec.Position, rec.Hash
			res.Position = rec.Position
			j.recs = append(j.recs, rec)
		}
		j.reqs = append(j.reqs, r)
	}
	return j
}
