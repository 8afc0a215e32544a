package commands

import (
	"context"
	"errors"
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
	// recent holds the latest transfers, so that a quick retry, or an id
	// repeated within a batch, is answered without reading the log.
	recent *recentTransfers
}

// recentMaxDefault is how many recent transfers a writer keeps. It must exceed
// the transfers in flight (two batches), which are not yet in the log.
const recentMaxDefault = 4 * BatchMaxDefault

// recentTransfers is a bounded FIFO of transfers by position.
type recentTransfers struct {
	byPos map[uint64]*domain.TransferCommitted
	ring  []uint64
	next  int
}

func newRecentTransfers(n int) *recentTransfers {
	return &recentTransfers{byPos: make(map[uint64]*domain.TransferCommitted, n), ring: make([]uint64, 0, n)}
}

func (r *recentTransfers) put(pos uint64, t *domain.TransferCommitted) {
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, pos)
	} else {
		delete(r.byPos, r.ring[r.next])
		r.ring[r.next] = pos
		r.next = (r.next + 1) % len(r.ring)
	}
	r.byPos[pos] = t
}

func (r *recentTransfers) get(pos uint64) *domain.TransferCommitted { return r.byPos[pos] }

// load folds the ledger's whole log into a fresh state, checking that the chain
// links (the full hash check is the auditor's: ledgerctl audit verify).
func (w *Writer) load(ctx context.Context) (*ledgerState, error) {
	head, headHash, err := w.opts.Store.Head(ctx, w.opts.Ledger)
	if err != nil {
		return nil, err
	}
	st := &ledgerState{domain: domain.NewState(), recent: newRecentTransfers(w.opts.recentMax)}
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
	if t, ok := e.(domain.TransferCommitted); ok {
		st.recent.put(r.Position, &t)
	}
	return nil
}

// prefetch resolves, before a batch is decided, every committed transfer that
// the batch's transfer ids may repeat: from the recent ones, else with one read
// of the log. Ids that repeat one decided within the batch are found in recent.
func (st *ledgerState) prefetch(ctx context.Context, w *Writer, reqs []*request) (map[uint64]*domain.TransferCommitted, error) {
	var (
		found map[uint64]*domain.TransferCommitted
		need  []uint64
	)
	for _, r := range reqs {
		for _, c := range r.cmds {
			ct, ok := c.(*domain.CreateTransfer)
			if !ok {
				continue
			}
			pos, hit := st.domain.TransferCandidate(ct.ID)
			if !hit {
				continue
			}
			if found == nil {
				found = make(map[uint64]*domain.TransferCommitted)
			}
			if _, done := found[pos]; done {
				continue
			}
			found[pos] = st.recent.get(pos) // kept here: recent may evict it mid-batch
			if found[pos] == nil {
				need = append(need, pos)
			}
		}
	}
	for len(need) > 0 {
		chunk := need[:min(len(need), eventstore.PositionsMax)]
		need = need[len(chunk):]
		recs, err := w.opts.Store.ReadPositions(ctx, w.opts.Ledger, chunk)
		if err != nil {
			return nil, fmt.Errorf("read prior transfers: %w", err)
		}
		for i := range recs {
			e, err := domain.UnmarshalEvent(recs[i].Type, recs[i].SchemaVersion, recs[i].Payload)
			if err != nil {
				return nil, fmt.Errorf("read prior transfer at %d: %w", recs[i].Position, err)
			}
			t, ok := e.(domain.TransferCommitted)
			if !ok {
				return nil, fmt.Errorf("position %d holds a %s, not a transfer: the index is corrupt", recs[i].Position, recs[i].Type)
			}
			found[recs[i].Position] = &t
		}
	}
	return found, nil
}

// decide decides every command of reqs in order, each against the state left
// by those before it, and returns the batch to append. Requests whose caller
// has gone are skipped: nothing of theirs was applied.
//
// Errors: a failure to read prior transfers from the log; every request of the
// batch has then been answered with ErrUnavailable and nothing was decided.
func (st *ledgerState) decide(ctx context.Context, w *Writer, reqs []*request) (*job, error) {
	now := w.opts.Clock().UTC().Truncate(time.Microsecond)
	j := &job{expected: st.head, prev: st.hash}
	priors, err := st.prefetch(ctx, w, reqs)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		for _, r := range reqs {
			r.finish(err)
		}
		return nil, err
	}
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
			e, err := st.decideOne(c, now, priors)
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
			if t, ok := e.(domain.TransferCommitted); ok {
				st.recent.put(rec.Position, &t)
			}
			res.Position = rec.Position
			j.recs = append(j.recs, rec)
		}
		j.reqs = append(j.reqs, r)
	}
	return j, nil
}

// decideOne decides c, answering the domain's requests for prior transfers
// from what prefetch resolved or what this batch decided.
func (st *ledgerState) decideOne(c domain.Command, now time.Time, priors map[uint64]*domain.TransferCommitted) (domain.Event, error) {
	for {
		e, err := domain.Decide(st.domain, c, now)
		var need *domain.NeedPriorError
		if !errors.As(err, &need) {
			return e, err
		}
		prior := priors[need.Position]
		if prior == nil {
			prior = st.recent.get(need.Position)
		}
		if prior == nil {
			panic(fmt.Sprintf("commands: transfer at %d neither prefetched nor recent", need.Position))
		}
		c.(*domain.CreateTransfer).SetPrior(need.Position, prior)
	}
}
