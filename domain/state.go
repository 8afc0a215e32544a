package domain

// State is one ledger as its writer knows it: assets, accounts with balances,
// and the idempotency index. It is owned by one goroutine; nothing here locks.
type State struct {
	position  uint64
	assets    map[string]Asset
	accounts  map[string]*Account
	transfers map[string]transferRecord
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

// transferRecord is what idempotency needs of a committed transfer.
type transferRecord struct {
	event    *TransferCommitted
	position uint64
}

// NewState returns the state of an empty ledger.
func NewState() *State {
	return &State{
		assets:    make(map[string]Asset),
		accounts:  make(map[string]*Account),
		transfers: make(map[string]transferRecord),
	}
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
