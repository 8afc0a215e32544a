package domain

import "hash/maphash"

// State is one ledger as its writer knows it: assets, accounts with balances,
// and the idempotency index. It is owned by one goroutine; nothing here locks.
type State struct {
	position uint64
	assets   map[string]Asset
	accounts map[string]*Account
	// transfers indexes every committed transfer by a 64-bit hash of its id:
	// about 20-30 bytes a transfer, and no pointers for the garbage collector
	// to scan. The transfer itself stays in the log; a retry, or a collision,
	// is resolved by reading it back (see NeedPriorError).
	transfers map[uint64]uint64
	// collided holds, by exact id, the rare transfers whose id hash was
	// already taken by another id.
	collided map[string]uint64
	seed     maphash.Seed
}

// Asset is a declared asset.
type Asset struct {
	Code     string
	Scale    uint8
	Position uint64
}

// Account is an account and its balances in minor units of its asset.
type Account struct {
	ID       string
	Asset    string
	Scale    uint8
	Normal   Side
	Min, Max *Units
	Metadata map[string]string
	Closed   bool
	// Position is where the account was opened; it is the EXISTS answer.
	Position uint64

	DebitsPosted, CreditsPosted, DebitsPending, CreditsPending Units
}

// NewState returns the state of an empty ledger.
func NewState() *State {
	return &State{
		assets:    make(map[string]Asset),
		accounts:  make(map[string]*Account),
		transfers: make(map[uint64]uint64),
		collided:  make(map[string]uint64),
		// A seed per process: the index is rebuilt at every start, and ids
		// cannot be crafted to collide.
		seed: maphash.MakeSeed(),
	}
}

// TransferCandidate returns the position of the committed transfer that may
// have this id: certain for an id that collided, otherwise the holder of the
// id's hash, to be confirmed against the event at that position.
func (s *State) TransferCandidate(id string) (uint64, bool) {
	if pos, ok := s.collided[id]; ok {
		return pos, true
	}
	pos, ok := s.transfers[maphash.String(s.seed, id)]
	return pos, ok
}

// TransferCount is the number of transfers committed.
func (s *State) TransferCount() int { return len(s.transfers) + len(s.collided) }

// indexTransfer records a committed transfer's id.
func (s *State) indexTransfer(id string, pos uint64) {
	h := maphash.String(s.seed, id)
	if _, taken := s.transfers[h]; taken {
		s.collided[id] = pos
		return
	}
	s.transfers[h] = pos
}

// Position is the position of the last event applied.
func (s *State) Position() uint64 { return s.position }

// Account returns the account with that id.
func (s *State) Account(id string) (*Account, bool) {
	a, ok := s.accounts[id]
	return a, ok
}

// Asset returns the asset with that code.
func (s *State) Asset(code string) (Asset, bool) {
	a, ok := s.assets[code]
	return a, ok
}

// AccountCount is the number of accounts opened.
func (s *State) AccountCount() int { return len(s.accounts) }

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
// DigitsMax digits. That bound keeps Balance, Available and Ceiling, each a sum
// or difference of two such totals, within a signed 128-bit integer.
func sideInRange(a *Account) bool {
	_, okD := a.DebitsPosted.CheckedAdd(a.DebitsPending)
	_, okC := a.CreditsPosted.CheckedAdd(a.CreditsPending)
	return okD && okC
}
