package domain_test

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ledgerd/ledger/domain"
)

// The holds workload mixes every command: assets, accounts with and without
// bounds, bounds and metadata changes, closes, posted and pending transfers
// with timeouts, full and partial posts, voids, expiries on a moving clock,
// full and partial reversals, retries with the same or other fields, and
// atomic groups that commit or roll back. Every step is checked against the
// ledger's invariants, and the log is replayed at checkpoints.
const (
	holdsPropertyCommands    = 10_000
	holdsPropertyAccountsMax = 48
	holdsPropertyCheckpoint  = 3_000
	holdsPropertyGroupMax    = 5
)

// holdsAssets are the assets the workload defines; PLN never is.
var holdsAssets = []assetSpec{{"USD", 2}, {"JPY", 0}, {"BTC", 8}, {"PLN", 2}}

var holdsAssetCodes = []string{"USD", "JPY", "BTC", "PLN"}

// takenID is an id of the transfer id space, as accepted.
type takenID struct {
	pos uint64
	typ string         // the event type that took it
	cmd domain.Command // a fresh copy of the command, for retries
}

// holdsModel is what the workload knows, independently of State. Inside a
// group, its slices only grow and its map changes are journaled (saveKey), so
// that a copy of the struct and the journal restore it at Rollback.
type holdsModel struct {
	log         []domain.Event // applied, at positions 1..n
	assets      map[string]uint8
	accounts    []string            // opened, in order
	byAsset     map[string][]string // opened, per asset
	taken       map[string]takenID
	takenOrder  []string
	holds       []string          // every hold placed, in order
	resolutions map[string]int    // per hold: events that resolved it
	resolvedBy  map[string]string // per hold: the event type that did
	reversible  map[string][]domain.Posting
	revOrder    []string
	reversed    map[string][]domain.Units // per reversible id: reversed so far, per posting (replaced, never changed in place)
	open        int                       // holds placed and not resolved
}

// saveKey records, inside a group, how to restore m[k] at Rollback.
func saveKey[K comparable, V any](w *holdsWorkload, m map[K]V, k K) {
	if !w.inGroup {
		return
	}
	old, had := m[k]
	w.undo = append(w.undo, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
}

type holdsWorkload struct {
	t        *testing.T
	r        *rand.Rand
	s        *domain.State
	clock    time.Time
	m        *holdsModel
	ids      []string // every account id tried
	outcomes map[string]int
	next     int  // for fresh ids
	inGroup  bool // inside Begin..Commit/Rollback
	undo     []func()
	step     int
	commands int // decided so far
	// fold, when set, is a fold-only state (domain.NewFoldState) given
	// every event and batch boundary w.s is.
	fold *domain.State
}

// expectation checks a command's outcome against what the workload knows;
// nil when anything is acceptable.
type expectation func(e domain.Event, err error)

func TestPropertyHoldsWorkload(t *testing.T) {
	seed := propertySeed(t)
	t.Logf("seed %#x (set LEDGER_PROPERTY_SEED to reproduce or vary)", seed)
	w := &holdsWorkload{
		t:     t,
		r:     rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)),
		s:     domain.NewState(),
		clock: now,
		m: &holdsModel{
			assets: map[string]uint8{}, byAsset: map[string][]string{}, taken: map[string]takenID{},
			resolutions: map[string]int{}, resolvedBy: map[string]string{},
			reversible: map[string][]domain.Posting{}, reversed: map[string][]domain.Units{},
		},
		outcomes: map[string]int{},
	}
	start := time.Now()
	for w.step = 0; w.commands < holdsPropertyCommands; w.step++ {
		w.randomStep()
		if t.Failed() {
			t.Fatalf("failed at step %d (seed %#x)", w.step, seed)
		}
		if w.step%holdsPropertyCheckpoint == holdsPropertyCheckpoint-1 {
			w.checkReplay()
		}
	}
	w.checkReplay()
	t.Logf("%d commands in %d steps, %d events, clock +%v, in %v", w.commands, w.step, len(w.m.log), w.clock.Sub(now),
		time.Since(start).Round(time.Millisecond))
	t.Logf("outcomes: %v", w.outcomes)
	for _, o := range []string{
		"asset CREATED", "asset EXISTS", "account CREATED", "bounds CREATED", "bounds ACCOUNT_CLOSED",
		"metadata CREATED", "close CREATED", "close EXISTS", "close ACCOUNT_HAS_PENDING",
		"transfer CREATED", "transfer BELOW_MIN_BALANCE", "transfer ABOVE_MAX_BALANCE", "transfer ACCOUNT_CLOSED",
		"transfer INVALID_FIELD", "transfer ASSET_NOT_FOUND",
		"hold CREATED", "hold BELOW_MIN_BALANCE", "hold ABOVE_MAX_BALANCE",
		"post CREATED", "post partial CREATED", "post PENDING_NOT_FOUND", "post PENDING_ALREADY_RESOLVED",
		"post PENDING_EXPIRED", "post partial AMOUNT_EXCEEDS_PENDING",
		"void CREATED", "void PENDING_ALREADY_RESOLVED", "void PENDING_EXPIRED", "void PENDING_NOT_FOUND",
		"expire CREATED", "expire NOT_DUE",
		"reverse CREATED", "reverse partial CREATED", "reverse ALREADY_REVERSED", "reverse partial ALREADY_REVERSED", "reverse partial AMOUNT_EXCEEDS_REMAINING",
		"reverse NOT_REVERSIBLE", "reverse TRANSFER_NOT_FOUND", "reverse BELOW_MIN_BALANCE",
		"retry EXISTS", "retry EXISTS_WITH_DIFFERENT_FIELDS",
		"group COMMITTED", "group ROLLED_BACK",
	} {
		if w.outcomes[o] == 0 {
			t.Errorf("workload never produced %s", o)
		}
	}
}

// outcomeOf names an error the way the result codes do, the new ones included.
func outcomeOf(err error) string {
	for _, o := range []struct {
		err  error
		name string
	}{
		{domain.ErrPendingNotFound, "PENDING_NOT_FOUND"},
		{domain.ErrPendingAlreadyResolved, "PENDING_ALREADY_RESOLVED"},
		{domain.ErrPendingExpired, "PENDING_EXPIRED"},
		{domain.ErrAmountExceedsPending, "AMOUNT_EXCEEDS_PENDING"},
		{domain.ErrTransferNotFound, "TRANSFER_NOT_FOUND"},
		{domain.ErrNotReversible, "NOT_REVERSIBLE"},
		{domain.ErrAlreadyReversed, "ALREADY_REVERSED"},
		{domain.ErrAmountExceedsRemaining, "AMOUNT_EXCEEDS_REMAINING"},
		{domain.ErrAccountHasPending, "ACCOUNT_HAS_PENDING"},
		{domain.ErrTooManyHolds, "TOO_MANY_HOLDS"},
		{domain.ErrNotDue, "NOT_DUE"},
	} {
		if errors.Is(err, o.err) {
			return o.name
		}
	}
	return outcome(err)
}

// expiries advances the clock and, most of the time, expires the holds due,
// as the writer does; otherwise the writer lags, and holds stay open past
// their time (PENDING_EXPIRED all the same).
func (w *holdsWorkload) expiries() {
	w.clock = w.clock.Add(time.Duration(1+w.r.IntN(120)) * time.Second)
	if w.r.IntN(3) == 0 {
		return
	}
	due := w.s.DueHolds(w.clock, 8)
	for _, id := range due {
		w.run("expire", expireHold(id), w.wantOutcome("expiry of due "+id, "CREATED"))
	}
}

// group runs 2..GroupMax commands all or nothing; half the time the last one
// is bound to fail.
func (w *holdsWorkload) group() {
	n := 2 + w.r.IntN(holdsPropertyGroupMax-1)
	var cmds []domain.Command
	var kinds []string
	for range n {
		var (
			kind string
			c    domain.Command
		)
		switch w.r.IntN(4) {
		case 0:
			kind, c, _ = w.genCommand()
		case 1:
			kind, c, _ = w.genTransfer(true)
		case 2:
			kind, c, _ = w.genPost()
		default:
			kind, c, _ = w.genTransfer(false)
		}
		kinds, cmds = append(kinds, kind), append(cmds, c)
	}
	if w.r.IntN(3) == 0 {
		kinds = append(kinds, "transfer")
		cmds = append(cmds, transfer(w.fresh("t"), posting("ghost:1", "ghost:2", "USD", "1")))
	}
	before := viewOf(w.s, w.ids, w.m.holds, holdsAssetCodes)
	saved := *w.m
	w.s.Begin()
	if w.fold != nil {
		w.fold.Begin()
	}
	w.inGroup, w.undo = true, w.undo[:0]
	defer func() { w.inGroup = false }()
	for i, c := range cmds {
		if _, err := w.run("group "+kinds[i], c, nil); err != nil && !errors.Is(err, domain.ErrExists) {
			w.s.Rollback()
			if w.fold != nil {
				w.fold.Rollback()
			}
			for i := len(w.undo) - 1; i >= 0; i-- {
				w.undo[i]()
			}
			*w.m = saved
			w.outcomes["group ROLLED_BACK"]++
			if after := viewOf(w.s, w.ids, w.m.holds, holdsAssetCodes); !reflect.DeepEqual(before, after) {
				diff := cmp.Diff(before, after, unitsEqual)
				w.t.Errorf("step %d: Rollback did not restore the state (-before +after):\n%s", w.step, diff)
			}
			w.checkInvariants(nil)
			return
		}
	}
	w.s.Commit()
	if w.fold != nil {
		w.fold.Commit()
	}
	w.outcomes["group COMMITTED"]++
}

// printRow is an account's fields, comparable.
type printRow struct {
	dp, cp, dq, cq, min, max domain.Units
	hasMin, hasMax, closed   bool
	closedAt                 uint64
	metadata                 int
}

// fingerprint appends the state's counts and every account's fields to b.
func (w *holdsWorkload) fingerprint(b []printRow) []printRow {
	b = append(b, printRow{closedAt: w.s.Position(), metadata: w.s.HoldCount(),
		dp: domain.UnitsFromInt64(int64(w.s.TransferCount())), cp: domain.UnitsFromInt64(int64(w.s.AccountCount()))})
	for _, id := range w.m.accounts {
		a, _ := w.s.Account(id)
		r := printRow{dp: a.DebitsPosted, cp: a.CreditsPosted, dq: a.DebitsPending, cq: a.CreditsPending,
			closed: a.Closed, closedAt: a.ClosedAt(), metadata: len(a.Metadata())}
		if a.Min() != nil {
			r.min, r.hasMin = *a.Min(), true
		}
		if a.Max() != nil {
			r.max, r.hasMax = *a.Max(), true
		}
		b = append(b, r)
	}
	return b
}

// accountRow is an account's observable numbers before a step.
type accountRow struct {
	available, ceiling domain.Units
}

func (w *holdsWorkload) rows() map[string]accountRow {
	out := make(map[string]accountRow, len(w.m.accounts))
	for _, id := range w.m.accounts {
		a, _ := w.s.Account(id)
		out[id] = accountRow{a.Available(), a.Ceiling()}
	}
	return out
}

// run decides c at the clock, checks it, and applies its event.
func (w *holdsWorkload) run(kind string, c domain.Command, expect expectation) (domain.Event, error) {
	// Decide never mutates: a cheap fingerprint at every step, the whole
	// view now and then.
	full := w.step%8 == 0
	holds := w.m.holds[max(0, len(w.m.holds)-50):]
	view := viewOf
	if w.inGroup {
		view = viewNoExpiry // NextExpiry must not run between Begin and Rollback
	}
	var before stateView
	if full {
		before = view(w.s, w.ids, holds, holdsAssetCodes)
	}
	print0 := w.fingerprint(nil)
	rows := w.rows()
	e, err := decideAt(w.s, c, w.clock)
	w.commands++
	w.outcomes[kind+" "+outcomeOf(err)]++
	if !slices.Equal(print0, w.fingerprint(nil)) {
		w.t.Errorf("step %d: Decide of %s %s changed the state (error %v)", w.step, kind, c.CommandID(), err)
	}
	if full {
		if after := view(w.s, w.ids, holds, holdsAssetCodes); !reflect.DeepEqual(before, after) {
			diff := cmp.Diff(before, after, unitsEqual)
			w.t.Errorf("step %d: Decide of %s %s changed the state (error %v):\n%s", w.step, kind, c.CommandID(), err, diff)
		}
	}
	if err != nil && outcomeOf(err) == "UNKNOWN" {
		w.t.Errorf("step %d: %s %s: error %v is no sentinel", w.step, kind, c.CommandID(), err)
	}
	if err != nil && !errors.Is(err, domain.ErrExists) && !errors.Is(err, domain.ErrNotDue) && domain.FieldOf(err) == "" {
		w.t.Errorf("step %d: %s %s: error %v names no field", w.step, kind, c.CommandID(), err)
	}
	if expect != nil {
		expect(e, err)
	}
	if err != nil {
		w.checkInvariants(nil)
		return nil, err
	}
	pos := w.s.Position() + 1
	w.s.Evolve(pos, e)
	if w.fold != nil {
		w.fold.Evolve(pos, e)
	}
	remember(w.s, pos, e) // what is applied at pos, whatever was decided before
	w.accept(c, e, pos)
	w.checkInvariants(rows)
	return e, nil
}

// accept updates the model with an applied event, checking what it says.
func (w *holdsWorkload) accept(c domain.Command, e domain.Event, pos uint64) {
	m := w.m
	m.log = append(m.log, e)
	take := func(id string) {
		if _, ok := m.taken[id]; ok {
			w.t.Errorf("step %d: id %s taken twice", w.step, id)
		}
		saveKey(w, m.taken, id)
		m.taken[id] = takenID{pos: pos, typ: e.EventType(), cmd: cloneCommand(c)}
		m.takenOrder = append(m.takenOrder, id)
	}
	resolve := func(id string) {
		saveKey(w, m.resolutions, id)
		saveKey(w, m.resolvedBy, id)
		m.resolutions[id]++
		m.resolvedBy[id] = e.EventType()
		m.open--
		if m.resolutions[id] != 1 {
			w.t.Errorf("step %d: hold %s resolved %d times", w.step, id, m.resolutions[id])
		}
		if _, open := w.s.Hold(id); open {
			w.t.Errorf("step %d: hold %s still open after %s", w.step, id, e.EventType())
		}
	}
	switch e := e.(type) {
	case domain.AssetDefined:
		saveKey(w, m.assets, e.Code)
		m.assets[e.Code] = e.Scale
	case domain.AccountOpened:
		m.accounts = append(m.accounts, e.ID)
		saveKey(w, m.byAsset, e.Asset)
		m.byAsset[e.Asset] = append(m.byAsset[e.Asset], e.ID)
	case domain.TransferCommitted:
		take(e.ID)
		saveKey(w, m.reversible, e.ID)
		m.reversible[e.ID] = e.Postings
		m.revOrder = append(m.revOrder, e.ID)
	case domain.TransferPending:
		take(e.ID)
		m.holds = append(m.holds, e.ID)
		m.open++
	case domain.PendingPosted:
		take(e.ID)
		resolve(e.PendingID)
		posted := make([]domain.Posting, len(e.Postings))
		for i, hp := range e.Postings {
			posted[i] = domain.Posting{Debit: hp.Debit, Credit: hp.Credit, Asset: hp.Asset, Amount: hp.Amount}
			if hp.Amount.Units.Cmp(hp.Held.Units) > 0 {
				w.t.Errorf("step %d: post %s posts %s of %s held", w.step, e.ID, hp.Amount, hp.Held)
			}
		}
		saveKey(w, m.reversible, e.ID)
		m.reversible[e.ID] = posted
		m.revOrder = append(m.revOrder, e.ID)
	case domain.PendingVoided:
		take(e.ID)
		resolve(e.PendingID)
		m.revOrder = append(m.revOrder, e.ID) // not reversible: NOT_REVERSIBLE
	case domain.PendingExpired:
		resolve(e.PendingID)
	case domain.TransferReversed:
		take(e.ID)
		m.revOrder = append(m.revOrder, e.ID) // not reversible either
		original, ok := m.reversible[e.TransferID]
		if !ok || m.taken[e.TransferID].pos != e.TransferPosition {
			w.t.Errorf("step %d: reversal %s of %s at %d: not a reversible transfer at that position", w.step, e.ID, e.TransferID, e.TransferPosition)
			return
		}
		next := make([]domain.Units, len(original))
		for i, p := range original {
			if done := m.reversed[e.TransferID]; done != nil {
				next[i] = done[i]
			}
			next[i] = next[i].Add(e.Postings[i].Amount.Units)
			if next[i].Cmp(p.Amount.Units) > 0 {
				w.t.Errorf("step %d: %s reversed %s of posting %d, original %s", w.step, e.TransferID, next[i].Format(p.Amount.Scale), i, p.Amount)
			}
			rp := e.Postings[i]
			if rp.Debit != p.Credit || rp.Credit != p.Debit || rp.Asset != p.Asset {
				w.t.Errorf("step %d: reversal %s posting %d = %+v, original %+v", w.step, e.ID, i, rp, p)
			}
		}
		saveKey(w, m.reversed, e.TransferID)
		m.reversed[e.TransferID] = next
	}
}

// checkInvariants runs after every step; rows, when a step applied an event,
// are the accounts' available and ceiling before it.
func (w *holdsWorkload) checkInvariants(rows map[string]accountRow) {
	type sums struct{ dp, cp, dq, cq domain.Units }
	perAsset := map[string]sums{}
	for _, id := range w.m.accounts {
		a, ok := w.s.Account(id)
		if !ok {
			w.t.Fatalf("step %d: account %s in the model, not in the state", w.step, id)
		}
		for name, u := range map[string]domain.Units{"debits_posted": a.DebitsPosted, "credits_posted": a.CreditsPosted,
			"debits_pending": a.DebitsPending, "credits_pending": a.CreditsPending} {
			if u.Sign() < 0 {
				w.t.Errorf("step %d: account %s %s = %s", w.step, id, name, u)
			}
		}
		s := perAsset[a.Asset]
		s.dp, s.cp, s.dq, s.cq = s.dp.Add(a.DebitsPosted), s.cp.Add(a.CreditsPosted), s.dq.Add(a.DebitsPending), s.cq.Add(a.CreditsPending)
		perAsset[a.Asset] = s
		if a.Closed && (!a.DebitsPending.IsZero() || !a.CreditsPending.IsZero()) {
			w.t.Errorf("step %d: closed account %s has pending amounts", w.step, id)
		}
		// A step never moves an account further out of a bound in the
		// direction the bound limits: available down below min, ceiling up
		// above max. A new bound, or a move back toward it, is no violation.
		before, moved := rows[id]
		if !moved {
			continue
		}
		if a.Min() != nil && a.Available().Cmp(before.available) < 0 && a.Available().Cmp(*a.Min()) < 0 {
			w.t.Errorf("step %d: account %s available %s -> %s, below min %s", w.step, id,
				before.available.Format(a.Scale), a.Available().Format(a.Scale), a.Min().Format(a.Scale))
		}
		if a.Max() != nil && a.Ceiling().Cmp(before.ceiling) > 0 && a.Ceiling().Cmp(*a.Max()) > 0 {
			w.t.Errorf("step %d: account %s ceiling %s -> %s, above max %s", w.step, id,
				before.ceiling.Format(a.Scale), a.Ceiling().Format(a.Scale), a.Max().Format(a.Scale))
		}
	}
	for code, s := range perAsset {
		if s.dp.Cmp(s.cp) != 0 || s.dq.Cmp(s.cq) != 0 {
			w.t.Errorf("step %d: asset %s: posted %s/%s, pending %s/%s (debits/credits)", w.step, code, s.dp, s.cp, s.dq, s.cq)
		}
	}
	if w.s.HoldCount() != w.m.open {
		w.t.Errorf("step %d: HoldCount %d, open holds %d", w.step, w.s.HoldCount(), w.m.open)
	}
	if got, want := w.s.TransferCount(), len(w.m.taken); got != want {
		w.t.Errorf("step %d: TransferCount %d, ids taken %d", w.step, got, want)
	}
	if got, want := w.s.Position(), uint64(len(w.m.log)); got != want {
		w.t.Errorf("step %d: position %d, events applied %d", w.step, got, want)
	}
}

// checkReplay applies the log from scratch, as decided and as stored (JSON),
// and compares the states with the live one.
func (w *holdsWorkload) checkReplay() {
	direct, stored := domain.NewState(), domain.NewState()
	for i, e := range w.m.log {
		pos := uint64(i + 1)
		direct.Evolve(pos, e)
		// Moved names, movement by movement, the account it moved.
		moves := domain.AppendMovements(nil, e)
		if moved := direct.Moved(); len(moved) != len(moves) {
			w.t.Errorf("event %d (%s): %d movements, Moved %v", pos, e.EventType(), len(moves), moved)
		} else {
			for k, n := range moved {
				if got := direct.AccountAt(n).ID; got != moves[k].Account {
					w.t.Errorf("event %d (%s): movement %d moved %s, Moved names %s", pos, e.EventType(), k, moves[k].Account, got)
				}
			}
		}
		b, err := domain.MarshalEvent(e)
		if err != nil {
			w.t.Fatalf("marshal event %d: %v", pos, err)
		}
		if got := domain.AppendEvent(nil, e); string(got) != string(b) {
			w.t.Errorf("event %d: AppendEvent %s, MarshalEvent %s", pos, got, b)
		}
		d, err := domain.UnmarshalEvent(e.EventType(), domain.SchemaVersion, b)
		if err != nil {
			w.t.Fatalf("unmarshal event %d: %v", pos, err)
		}
		stored.Evolve(pos, d)
	}
	for _, id := range w.m.holds {
		if _, open := w.s.Hold(id); open != (w.m.resolutions[id] == 0) {
			w.t.Errorf("step %d: hold %s open %v, resolutions %d", w.step, id, open, w.m.resolutions[id])
		}
	}
	live := viewOf(w.s, w.ids, w.m.holds, holdsAssetCodes)
	for name, s := range map[string]*domain.State{"direct": direct, "stored": stored} {
		if diff := cmp.Diff(live, viewOf(s, w.ids, w.m.holds, holdsAssetCodes), unitsEqual); diff != "" {
			w.t.Errorf("step %d: %s replay differs from the live state (-live +replay):\n%s", w.step, name, diff)
		}
	}
}
