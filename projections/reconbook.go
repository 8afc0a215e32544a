package projections

import "github.com/ledgerd/ledger/domain"

// The matcher's types, under the names the projector's code reads best with.
type (
	reconItem  = domain.ReconItem
	reconMatch = domain.ReconMatch
	itemKey    = domain.ReconKey
)

const (
	sideLine     = domain.ReconLine
	sideMovement = domain.ReconMovement
)

// reconBook is one reconciled account as the projector holds it: the
// account's row (asset, normal side, rules) beside the matcher of its items,
// and what of them is stored.
type reconBook struct {
	*domain.ReconMatcher
	account, asset string
	scale          uint8
	normal         domain.Side
	rules          []domain.MatchingRule // nil: the default
	enabledAt      uint64
	stored         bool // the recon_accounts row exists
	rulesChanged   bool
	// storedMatches are the matches loaded from the read model since the
	// last settle: the others are new.
	storedMatches map[*reconMatch]bool
}

func newReconBook(account string) *reconBook {
	return &reconBook{ReconMatcher: domain.NewReconMatcher(), account: account, storedMatches: map[*reconMatch]bool{}}
}

// arrive adds a new item at pos and matches it by the account's rules.
func (b *reconBook) arrive(it *reconItem, pos uint64) { b.Arrive(it, pos, b.rules) }

// settle marks everything stored, once written.
func (b *reconBook) settle() {
	b.stored, b.rulesChanged = true, false
	clear(b.storedMatches)
	b.Settle()
}
