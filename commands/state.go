package commands

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// ledgerState is the writer's state and where it stands in the log.
type ledgerState struct {
	domain *domain.State
	head   uint64
	hash   eventstore.Hash
	// recordedAt is the last recorded time: recorded times never go back,
	// whatever the clock does (a step back, a takeover by another node).
	recordedAt time.Time
	// recent holds the latest transfers, so that a quick retry, or an id
	// repeated within a batch, is answered without reading the log.
	recent *recentTransfers
	// moves is one event's movements, reused (touchedAccounts).
	moves []domain.Movement
}

// recentMaxDefault is how many recent transfers a writer keeps. It must exceed
// the transfers in flight (three batches: appending, queued, being decided),
// which are not yet in the log.
const recentMaxDefault = 4 * BatchMaxDefault

// recentTransfers keeps the latest events of the transfer id space
// (transfers, holds, posts, voids, reversals) and account openings, at most
// n: a ring in position order, searched by binary search. A map with a FIFO
// of its keys cost every transfer a map insert and delete, a twentieth of
// ledgerd's CPU in batches (docs/perf.md, session 12).
type recentTransfers struct {
	ring     []recentEvent
	start, n int // the oldest entry, and how many there are
}

type recentEvent struct {
	pos uint64
	ev  domain.Event
}

func newRecentTransfers(n int) *recentTransfers {
	return &recentTransfers{ring: make([]recentEvent, max(n, 1))}
}

func (r *recentTransfers) at(i int) *recentEvent { return &r.ring[(r.start+i)%len(r.ring)] }

// forgetAfter drops the entries after head: the positions undone by an
// all-or-nothing batch, always the latest.
func (r *recentTransfers) forgetAfter(head uint64) {
	for r.n > 0 && r.at(r.n-1).pos > head {
		*r.at(r.n - 1) = recentEvent{}
		r.n--
	}
}

// takesID reports whether e is an event Decide may ask for again: one that
// takes an id in the transfer id space, or opens an account (a retried open of
// an account amended since is compared with it).
func takesID(e domain.Event) bool { return domain.Referable(e) }

// put adds the event at pos, which follows every entry's position (an
// entry at or after it is dropped first), evicting the oldest when full.
func (r *recentTransfers) put(pos uint64, t domain.Event) {
	r.forgetAfter(pos - 1)
	if r.n == len(r.ring) {
		r.start = (r.start + 1) % len(r.ring)
		r.n--
	}
	*r.at(r.n) = recentEvent{pos: pos, ev: t}
	r.n++
}

// get returns the event at pos, or nil when it is not kept.
func (r *recentTransfers) get(pos uint64) domain.Event {
	i := sort.Search(r.n, func(i int) bool { return r.at(i).pos >= pos })
	if i < r.n && r.at(i).pos == pos {
		return r.at(i).ev
	}
	return nil
}

// load starts from the latest good snapshot, or a fresh state, and folds the
// rest of the ledger's log into it, checking that the chain links (the full
// hash check is the auditor's: ledgerctl audit verify).
func (w *Writer) load(ctx context.Context) (*ledgerState, error) {
	head, headHash, err := w.opts.Store.Head(ctx, w.opts.Ledger)
	if err != nil {
		return nil, err
	}
	st, err := w.loadSnapshot(ctx, head)
	if err != nil {
		return nil, fmt.Errorf("load %s: snapshot: %w", w.opts.Ledger, err)
	}
	snapshot := st.head
	for st.head < head {
		recs, err := w.opts.Store.Read(ctx, w.opts.Ledger, st.head+1, int(min(head-st.head, eventstore.ReadMax)))
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
	if st.head-snapshot >= freeAfterLoadEvents {
		// Folding a long log grew the id index by doubling: the tables it
		// outgrew are garbage the runtime would keep mapped for minutes. At
		// 10M transfers that is a third of the resident set.
		debug.FreeOSMemory()
	}
	w.opts.Logger.Info("writer loaded", "position", st.head, "accounts", st.domain.AccountCount(), "snapshot", snapshot)
	return st, nil
}

// freeAfterLoadEvents is how many events folded at start make the writer
// hand memory back to the system afterwards.
const freeAfterLoadEvents = 1 << 20

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
	if r.RecordedAt.After(st.recordedAt) {
		st.recordedAt = r.RecordedAt
	}
	if takesID(e) {
		st.recent.put(r.Position, e)
	}
	return nil
}

// prefetch resolves, before a batch is decided, every event that the batch's
// commands may ask for (a repeated id, a hold, a transfer to reverse): from
// the recent ones, else with one read of the log. Events decided within the
// batch are found in recent.
func (st *ledgerState) prefetch(ctx context.Context, w *Writer, reqs []*request) (map[uint64]domain.Event, error) {
	var (
		found map[uint64]domain.Event
		need  []uint64
	)
	for _, r := range reqs {
		for _, c := range r.cmds {
			for _, pos := range domain.PriorCandidates(st.domain, c) {
				if found == nil {
					found = make(map[uint64]domain.Event)
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
	}
	for len(need) > 0 {
		chunk := need[:min(len(need), eventstore.PositionsMax)]
		need = need[len(chunk):]
		recs, err := w.opts.Store.ReadPositions(ctx, w.opts.Ledger, chunk)
		if err != nil {
			return nil, fmt.Errorf("read prior events: %w", err)
		}
		for i := range recs {
			e, err := domain.UnmarshalEvent(recs[i].Type, recs[i].SchemaVersion, recs[i].Payload)
			if err != nil {
				return nil, fmt.Errorf("read prior event at %d: %w", recs[i].Position, err)
			}
			found[recs[i].Position] = e
		}
	}
	return found, nil
}

// decide decides every command of reqs in order, each against the state left
// by those before it, and returns the batch to append. Requests whose caller
// has gone are skipped: nothing of theirs was applied. An atomic request
// applies all its commands or none.
//
// Errors: a failure to read prior events from the log; every request of the
// batch has then been answered with ErrUnavailable and nothing was decided.
func (st *ledgerState) decide(ctx context.Context, w *Writer, reqs []*request) (*job, error) {
	now := w.now(st)
	st.recordedAt = now
	j := &job{expected: st.head, prev: st.hash, reqs: make([]*request, 0, len(reqs))}
	priors, err := st.prefetch(ctx, w, reqs)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		for _, r := range reqs {
			r.finish(err)
		}
		return nil, err
	}
	cmds := 0
	for _, r := range reqs {
		cmds += len(r.cmds)
	}
	// One arena holds every payload of the batch, sized once for it, and
	// the records are sized once too (a batch of 1,000 grew them ten times).
	j.recs = make([]eventstore.Record, 0, cmds)
	b := batchBuilder{st: st, w: w, j: j, now: now, priors: priors, arena: make([]byte, 0, 256*cmds)}
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			r.finish(err)
			continue
		}
		switch {
		case r.read != nil:
			r.read(st.domain)
		case r.opts.Atomic:
			b.decideAtomic(r)
		default:
			for i, c := range r.cmds {
				b.decideItem(r, i, c)
			}
		}
		j.reqs = append(j.reqs, r)
	}
	return j, nil
}

// batchBuilder decides commands into a job.
type batchBuilder struct {
	st     *ledgerState
	w      *Writer
	j      *job
	now    time.Time
	priors map[uint64]domain.Event
	// One arena holds every payload of the batch: one allocation, not one per
	// event. Slices into an outgrown arena stay valid.
	arena []byte
}

// decideItem decides r's i-th command, and applies and seals its event. It
// reports whether the command was applied (or had been: EXISTS).
func (b *batchBuilder) decideItem(r *request, i int, c domain.Command) bool {
	st := b.st
	res := &r.results[r.index[i]]
	e, err := st.decideOne(c, b.now, b.priors)
	if err != nil {
		res.Err = err
		var exists *domain.ExistsError
		if errors.As(err, &exists) {
			res.Position = exists.Position
			return true
		}
		return false
	}
	var touched []string
	if r.opts.ReturnBalances {
		touched = st.touchedAccounts(e)
	}
	start := len(b.arena)
	b.arena = domain.AppendEvent(b.arena, e)
	if size := len(b.arena) - start; size > b.w.opts.eventPayloadMax {
		// Every event Decide makes fits (audit's
		// TestImportBoundsHoldLargestEvents): one that does not is a bound
		// gone wrong upstream. Written, it would stall every reader of the
		// log (the relay, an import), so the command is refused instead,
		// and nothing of it applied: the state evolves only below.
		b.arena = b.arena[:start]
		res.Err = fmt.Errorf("its %s event would be %d bytes, over the log's bound of %d: %w",
			e.EventType(), size, b.w.opts.eventPayloadMax, domain.ErrInvalidField)
		b.w.opts.Logger.Error("command refused: its event is over the log's bound",
			"command_id", c.CommandID(), "type", e.EventType(), "bytes", size)
		return false
	}
	rec := eventstore.Record{
		Ledger: b.w.opts.Ledger, Position: st.head + 1, Type: e.EventType(), SchemaVersion: domain.SchemaVersion,
		RecordedAt: b.now, CommandID: c.CommandID(), Payload: b.arena[start:len(b.arena):len(b.arena)],
	}
	rec.Seal(st.hash)
	st.domain.Evolve(rec.Position, e)
	st.head, st.hash = rec.Position, rec.Hash
	if takesID(e) {
		st.recent.put(rec.Position, e)
	}
	res.Position = rec.Position
	if r.opts.ReturnBalances {
		res.Balances = balancesOf(st.domain, touched, rec.Position)
	}
	b.j.recs = append(b.j.recs, rec)
	return true
}

// decideAtomic decides r's commands all or nothing: at the first refusal,
// everything r applied is undone, that command says why and the others say
// ErrLinkedItemFailed.
func (b *batchBuilder) decideAtomic(r *request) {
	st := b.st
	head, hash, recs := st.head, st.hash, len(b.j.recs)
	st.domain.Begin()
	for i, c := range r.cmds {
		if b.decideItem(r, i, c) {
			continue
		}
		st.domain.Rollback()
		st.recent.forgetAfter(head)
		st.head, st.hash, b.j.recs = head, hash, b.j.recs[:recs]
		for k := range r.results {
			if k != r.index[i] && (r.results[k].Err == nil || errors.Is(r.results[k].Err, domain.ErrExists)) {
				r.results[k] = Result{Err: ErrLinkedItemFailed}
			}
		}
		return
	}
	st.domain.Commit()
}

// decideOne decides c, answering the domain's requests for prior events from
// what prefetch resolved or what this batch decided.
func (st *ledgerState) decideOne(c domain.Command, now time.Time, priors map[uint64]domain.Event) (domain.Event, error) {
	if ps, ok := c.(domain.PriorSetter); ok {
		ps.ResetPriors() // those of an earlier submission may be stale
	}
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
			panic(fmt.Sprintf("commands: event at %d neither prefetched nor recent", need.Position))
		}
		c.(domain.PriorSetter).SetPrior(need.Position, prior)
	}
}

// touchedAccounts lists the accounts an event (not yet applied) moves: the
// accounts of its movements (domain.AppendMovements), or the one it opens.
func (st *ledgerState) touchedAccounts(e domain.Event) []string {
	if o, ok := e.(domain.AccountOpened); ok {
		return []string{o.ID}
	}
	st.moves = domain.AppendMovements(st.moves[:0], e)
	out := make([]string, 0, len(st.moves))
	for i := range st.moves {
		out = appendNew(out, st.moves[i].Account)
	}
	return out
}

func appendNew(ids []string, id string) []string {
	for _, x := range ids {
		if x == id {
			return ids
		}
	}
	return append(ids, id)
}

// balancesOf copies the balances of accounts just moved at pos.
func balancesOf(s *domain.State, ids []string, pos uint64) []Balance {
	out := make([]Balance, 0, len(ids))
	for _, id := range ids {
		if a, ok := s.Account(id); ok {
			out = append(out, Balance{Position: pos, Account: a.ID, Asset: a.Asset, Scale: a.Scale, Normal: a.Normal,
				DebitsPosted: a.DebitsPosted, CreditsPosted: a.CreditsPosted, DebitsPending: a.DebitsPending, CreditsPending: a.CreditsPending})
		}
	}
	return out
}
