package domain

import (
	"container/heap"
	"iter"
	"time"
)

// Limits of a ledger's state.
const (
	// HoldsMax bounds the pending transfers open at once in a ledger: each is
	// held in memory until it resolves.
	HoldsMax = 1 << 20
	// TimeoutMax bounds a pending transfer's timeout.
	TimeoutMax = 366 * 24 * time.Hour
	// AccountsMaxDefault bounds a ledger's accounts (closed ones count: they
	// stay in memory): about 210 bytes each in the writer.
	AccountsMaxDefault = 1 << 22
	// AssetsMaxDefault bounds a ledger's assets: a trial balance has a line
	// for each.
	AssetsMaxDefault = 10_000
)

// Policy holds a ledger's configurable rules.
type Policy struct {
	// EffectivePastMax bounds how far in the past a transfer's effective_at
	// may be; 0 means any past.
	EffectivePastMax time.Duration
	// EffectiveFutureMax bounds how far in the future it may be (clock skew).
	EffectiveFutureMax time.Duration
	// AccountsMax and AssetsMax bound the ledger's accounts and assets; 0
	// means AccountsMaxDefault and AssetsMaxDefault.
	AccountsMax, AssetsMax int
}

func (p Policy) accountsMax() int {
	if p.AccountsMax <= 0 {
		return AccountsMaxDefault
	}
	return p.AccountsMax
}

func (p Policy) assetsMax() int {
	if p.AssetsMax <= 0 {
		return AssetsMaxDefault
	}
	return p.AssetsMax
}

// DefaultPolicy accepts effective times up to 90 days back and 5 minutes ahead.
var DefaultPolicy = Policy{EffectivePastMax: 90 * 24 * time.Hour, EffectiveFutureMax: 5 * time.Minute}

// State is one ledger as its writer knows it: assets, accounts with balances,
// open holds, and the idempotency index. It is owned by one goroutine; nothing
// here locks.
type State struct {
	position uint64
	policy   Policy
	assets   map[string]Asset
	accounts *accountTable
	// ids indexes every id of the transfer id space (transfers, holds, posts,
	// voids, reversals) by the top 40 bits of a 64-bit hash: the value is
	// the position of the event that took the id, with its status in the
	// top byte. About 15 bytes an id (idindex.go), and no pointers for the
	// garbage collector to scan. The events themselves stay in the log; a
	// retry, or a hash collision, is resolved by reading one back (see
	// NeedPriorError). nil in a fold-only state (NewFoldState).
	ids *idIndex
	// collided holds, by exact id, the rare ids whose hash (the bits the
	// index keeps) another id had: about 45 at ten million ids.
	collided map[string]uint64
	// key keys the index's hash (idKey.hash). A snapshot carries it, so that
	// the hashes it holds stay valid in the process that loads it.
	key idKey
	// holds are the open pending transfers, by id, and expiries orders them
	// by expiry (entries for holds since resolved are skipped when popped).
	holds    map[string]*Hold
	expiries expiryHeap
	// expirySeq numbers heap entries: an entry is live only while its hold
	// carries the same number, so a hold undone and placed again is never
	// matched by the entry of its first life.
	expirySeq uint64
	// reversed is, per reversed transfer (by position), how much of each of
	// its postings has been reversed so far. Only reversed transfers appear.
	reversed map[uint64][]Units
	// periodEnd is the end of the last closed period (zero: none) and
	// periodPos the position of its PeriodClosed event.
	periodEnd time.Time
	periodPos uint64
	// categories are the ledger's categories by name (category.go).
	categories map[string]*Category
	// alertMark is the last alert acted on by a freeze (freeze.go), recorded
	// at alertMarkPos.
	alertMark    AlertMark
	alertMarkPos uint64
	// raiseMark is the last alert raised (alert_raised.go), recorded at
	// raiseMarkPos.
	raiseMark    AlertMark
	raiseMarkPos uint64
	// alertHold is the AlertRaised just applied when its rule's hold must
	// be the next event (AlertRaised.AlertHold), nil otherwise. Transient:
	// the alerter submits both in one atomic request, so one batch holds
	// both and no snapshot falls between them.
	alertHold *AlertRaised
	// monitor holds the monitoring rules and what before-commit rules need
	// (monitor.go).
	monitor monitorState
	// categoryChildren indexes categories by parent: built from categories
	// when first needed (categoryHeight), kept by evolveCategory after; nil
	// until then (a snapshot does not carry it).
	categoryChildren map[string]map[string]struct{}
	// journal, while recording, holds the undo of every mutation since
	// Begin, for all-or-nothing batches.
	journal   []func()
	recording bool
	// moved is the number of the account each movement of the last event
	// applied moved (Moved).
	moved []int
}

// An id's status, kept in the top byte of its index entry.
const (
	// idDone is a transfer, a post, a void or a reversal.
	idDone uint8 = iota
	// idPending is a pending transfer still open.
	idPending
	// idPendingResolved is a pending transfer posted or voided.
	idPendingResolved
	// idPendingExpired is a pending transfer that expired.
	idPendingExpired
)

const posMask = 1<<56 - 1

// Asset is a declared asset.
type Asset struct {
	Code     string
	Scale    uint8
	Position uint64
}

// Account is an account and its balances in minor units of its asset. What
// few accounts have (bounds, metadata, a close, a freeze) is kept behind one
// pointer, nil while none of it is set: a writer holds a million of these,
// and an account without them is 120 bytes where it was 160, with three
// pointer fields where it had five. The one-byte fields come last,
// together, for the padding.
type Account struct {
	ID    string
	Asset string
	// Position is where the account was opened.
	Position uint64

	DebitsPosted, CreditsPosted, DebitsPending, CreditsPending Units

	// terms is never changed in place: an undo (saveAccount) restores the
	// pointer an account had, so a change makes a new one (setTerms).
	terms *accountTerms

	Scale  uint8
	Normal Side
	Closed bool
	// Amended says its bounds or metadata changed since it was opened: a
	// retried open is then compared with the AccountOpened event itself.
	Amended bool
}

// accountTerms is the part of an account most never have.
type accountTerms struct {
	min, max *Units
	metadata map[string]string
	// closedAt is the position of the close; frozenAt that of the freeze in
	// force (0: not frozen); unfrozenAt that of the last unfreeze (0: none).
	closedAt, frozenAt, unfrozenAt uint64
}

// noTerms are the terms of an account that has none; never changed.
var noTerms accountTerms

// readTerms is the account's terms, noTerms when it has none: to read,
// never to change (setTerms).
func (a *Account) readTerms() *accountTerms {
	if a.terms == nil {
		return &noTerms
	}
	return a.terms
}

// Min is the account's lower bound on its available balance; nil: none.
func (a *Account) Min() *Units { return a.readTerms().min }

// Max is the account's upper bound on its balance with pending inflows; nil:
// none.
func (a *Account) Max() *Units { return a.readTerms().max }

// Metadata is the account's metadata, nil when never set. It is shared, not
// copied: callers must not change it.
func (a *Account) Metadata() map[string]string { return a.readTerms().metadata }

// ClosedAt is the position of the account's close, 0 while open.
func (a *Account) ClosedAt() uint64 { return a.readTerms().closedAt }

// FrozenAt is the position of the freeze in force, 0 when not frozen.
func (a *Account) FrozenAt() uint64 { return a.readTerms().frozenAt }

// UnfrozenAt is the position of the last unfreeze, 0 when none.
func (a *Account) UnfrozenAt() uint64 { return a.readTerms().unfrozenAt }

// setTerms gives the account the terms t, in a struct of its own: the
// account's old value (saveAccount's undo) keeps the one it had. Terms all
// zero are none, and allocate nothing (a snapshot's load sets a million).
func (a *Account) setTerms(t accountTerms) {
	if t.min == nil && t.max == nil && t.metadata == nil && t.closedAt|t.frozenAt|t.unfrozenAt == 0 {
		a.terms = nil
		return
	}
	own := t
	a.terms = &own
}

// Hold is an open pending transfer.
type Hold struct {
	ID        string
	Postings  []Posting
	ExpiresAt time.Time // zero: never
	Position  uint64
	expirySeq uint64
}

// NewState returns the state of an empty ledger under DefaultPolicy.
func NewState() *State {
	return &State{
		policy:   DefaultPolicy,
		assets:   make(map[string]Asset),
		accounts: newAccountTable(0),
		ids:      newIDIndex(),
		collided: make(map[string]uint64),
		// A random key per state, kept by its snapshots: ids cannot be
		// crafted to collide by anyone who has not read a snapshot.
		key:        newIDKey(),
		holds:      make(map[string]*Hold),
		reversed:   make(map[uint64][]Units),
		categories: make(map[string]*Category),
		monitor:    newMonitorState(),
	}
}

// NewFoldState returns the state of an empty ledger for folding its log
// only, as an audit's replay does. It keeps no index of transfer ids: the
// index answers retries of commands, which a fold never decides, and
// keeping it made a replay slower (docs/perf.md, "Session 14"). Decide
// panics on it and MarshalSnapshot refuses it.
func NewFoldState() *State {
	s := NewState()
	s.ids = nil
	return s
}

// foldOnly reports whether s keeps no id index (NewFoldState).
func (s *State) foldOnly() bool { return s.ids == nil }

// SetPolicy sets the ledger's rules for the commands decided from now on.
func (s *State) SetPolicy(p Policy) { s.policy = p }

// Position is the position of the last event applied.
func (s *State) Position() uint64 { return s.position }

// Account returns the account with that id.
func (s *State) Account(id string) (*Account, bool) {
	return s.accounts.Lookup(id)
}

// AccountNumber is the number of the account with that id: the accounts
// opened before it. Only an undone open (Rollback) takes an account back,
// so in a state never rolled back (a fold, NewFoldState; an import's
// checker) a number is the account's for the state's life. A follower of
// such a state keeps what it has per account in a slice by number, and
// finds it through the state's look-up of the account, just made and in
// the cache, instead of a look-up of its own (audit's book: a tenth of a
// replay).
func (s *State) AccountNumber(id string) (int, bool) { return s.accounts.number(id) }

// AccountAt is the account numbered n (AccountNumber), which must be one
// of the state's. It is the state's: read it, never change it.
func (s *State) AccountAt(n int) *Account { return s.accounts.at(n) }

// Moved is the number (AccountNumber) of the account each movement of the
// event Evolve applied last moved, in AppendMovements' order: a fold kept
// beside the state follows the accounts through it without finding each
// one again (two look-ups a movement, cache misses on a large ledger, were
// a fifth of a replay). The slice is the state's, valid until the next
// Evolve or Rollback (which may take back an account it names).
func (s *State) Moved() []int { return s.moved }

// Asset returns the asset with that code.
func (s *State) Asset(code string) (Asset, bool) {
	a, ok := s.assets[code]
	return a, ok
}

// Hold returns the open pending transfer with that id.
func (s *State) Hold(id string) (*Hold, bool) {
	h, ok := s.holds[id]
	return h, ok
}

// Reversed returns what each posting of the posted transfer at pos has had
// reversed so far, nil when none was: what CheckReversal takes as done. The
// slice is the state's: read it, never change it.
func (s *State) Reversed(pos uint64) []Units { return s.reversed[pos] }

// Accounts yields every account, in the order they were added to this
// state: opened, or listed by the snapshot it was loaded from. The accounts
// are the state's: read them, never change them.
func (s *State) Accounts() iter.Seq[*Account] { return s.accounts.All() }

// AccountCount is the number of accounts opened.
func (s *State) AccountCount() int { return s.accounts.Len() }

// HoldCount is the number of pending transfers open.
func (s *State) HoldCount() int { return len(s.holds) }

// TransferCount is the number of ids taken in the transfer id space.
// A fold-only state (NewFoldState) counts none.
func (s *State) TransferCount() int {
	if s.foldOnly() {
		return 0
	}
	return s.ids.Len() + len(s.collided)
}

// TransferCandidate returns the position of the event that may have taken id:
// certain for an id that collided, otherwise the holder of the id's hash, to
// be confirmed against the event at that position.
func (s *State) TransferCandidate(id string) (uint64, bool) {
	pos, _, _, ok := s.lookupID(id)
	return pos, ok
}

// lookupID returns the position and status of the entry for id, and whether
// it is certainly id's (exact) rather than its hash's.
func (s *State) lookupID(id string) (pos uint64, status uint8, exact, ok bool) {
	if s.foldOnly() {
		panic("domain: an id look-up on a fold-only state (NewFoldState)")
	}
	if v, ok := s.collided[id]; ok {
		return v & posMask, uint8(v >> 56), true, true
	}
	v, ok := s.ids.get(s.key.hash(id))
	return v & posMask, uint8(v >> 56), false, ok
}

// indexID records an id taken at pos with a status.
func (s *State) indexID(id string, pos uint64, status uint8) {
	if s.foldOnly() {
		return
	}
	v := pos | uint64(status)<<56
	h := s.key.hash(id)
	if !s.ids.add(h, v) {
		s.collided[id] = v
		s.undo(func() { delete(s.collided, id) })
		return
	}
	s.undo(func() { s.ids.remove(h) })
}

// setIDStatus changes the status of an id known to be indexed (exactly: only
// holds change status, and an open hold's id is known).
func (s *State) setIDStatus(id string, status uint8) {
	if s.foldOnly() {
		return
	}
	if v, ok := s.collided[id]; ok {
		s.collided[id] = v&posMask | uint64(status)<<56
		s.undo(func() { s.collided[id] = v })
		return
	}
	h := s.key.hash(id)
	v, _ := s.ids.get(h)
	s.ids.set(h, v&posMask|uint64(status)<<56)
	s.undo(func() { s.ids.set(h, v) })
}

// NextExpiry returns when the earliest open hold expires.
func (s *State) NextExpiry() (time.Time, bool) {
	for len(s.expiries) > 0 {
		top := s.expiries[0]
		if s.live(top) {
			return top.at, true
		}
		s.popStale()
	}
	return time.Time{}, false
}

// DueHolds returns up to max ids of open holds whose expiry is at or before now.
// Their entries stay in the heap until the holds resolve.
func (s *State) DueHolds(now time.Time, max int) []string {
	var (
		due  []string
		keep []expiry
	)
	for len(s.expiries) > 0 && len(due) < max {
		top := s.expiries[0]
		if !s.live(top) {
			s.popStale()
			continue
		}
		if top.at.After(now) {
			break
		}
		heap.Pop(&s.expiries)
		keep = append(keep, top)
		due = append(due, top.id)
	}
	for _, e := range keep {
		heap.Push(&s.expiries, e)
	}
	return due
}

// live reports whether a heap entry belongs to an open hold's current life.
func (s *State) live(e expiry) bool {
	h, ok := s.holds[e.id]
	return ok && h.expirySeq == e.seq
}

// popStale drops the top entry, whose hold has resolved; a rollback puts it
// back, since the hold then comes back too.
func (s *State) popStale() {
	e := heap.Pop(&s.expiries).(expiry)
	s.undo(func() { heap.Push(&s.expiries, e) })
}

// Begin starts recording the undo of every mutation, for an all-or-nothing
// batch; Rollback undoes them, Commit forgets them.
func (s *State) Begin() {
	if s.recording {
		panic("domain: Begin while recording")
	}
	s.recording, s.journal = true, s.journal[:0]
	if !s.foldOnly() {
		s.ids.hold()
	}
}

// Rollback undoes every mutation since Begin, newest first.
func (s *State) Rollback() {
	for i := len(s.journal) - 1; i >= 0; i-- {
		s.journal[i]()
	}
	s.Commit()
}

// Commit stops recording and keeps every mutation since Begin.
func (s *State) Commit() {
	// The accounts opened since Begin stay (after a Rollback, none is left).
	s.accounts.keepIDs()
	clear(s.journal)
	s.recording, s.journal = false, s.journal[:0]
	if !s.foldOnly() {
		s.ids.release()
	}
}

// undo records fn as the undo of a mutation, when recording.
func (s *State) undo(fn func()) {
	if s.recording {
		s.journal = append(s.journal, fn)
	}
}

// Balance is the posted balance on the account's normal side.
func (a *Account) Balance() Units {
	if a.Normal == SideCredit {
		return a.CreditsPosted.Sub(a.DebitsPosted)
	}
	return a.DebitsPosted.Sub(a.CreditsPosted)
}

// Available is the balance less pending outflows: what can still leave.
func (a *Account) Available() Units {
	if a.Normal == SideCredit {
		return a.Balance().Sub(a.DebitsPending)
	}
	return a.Balance().Sub(a.CreditsPending)
}

// Ceiling is the balance plus pending inflows: what max_balance bounds.
func (a *Account) Ceiling() Units {
	if a.Normal == SideCredit {
		return a.Balance().Add(a.CreditsPending)
	}
	return a.Balance().Add(a.DebitsPending)
}

// sideInRange reports whether each side's posted plus pending total has at most
// DigitsMax digits, and no field is negative. That bound keeps Balance,
// Available and Ceiling, each a sum or difference of two such totals, within
// a signed 128-bit integer.
func sideInRange(a *Account) bool {
	if a.DebitsPosted.Sign() < 0 || a.CreditsPosted.Sign() < 0 || a.DebitsPending.Sign() < 0 || a.CreditsPending.Sign() < 0 {
		return false
	}
	_, okD := a.DebitsPosted.CheckedAdd(a.DebitsPending)
	_, okC := a.CreditsPosted.CheckedAdd(a.CreditsPending)
	return okD && okC
}

// expiry is a hold's place in the expiry heap.
type expiry struct {
	at  time.Time
	id  string
	seq uint64
}

type expiryHeap []expiry

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h expiryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)   { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
