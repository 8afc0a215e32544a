package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math/big"
	"slices"
	"strconv"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// book is a ledger folded from its log: the domain's own state, whose Evolve
// asserts every invariant, and beside it what the projections show and the
// state does not keep: the accounts in order, each one's last movement, and
// each account's statement lines as the movements projection writes them
// (one per side of a posting; a post releases the hold before it posts).
type book struct {
	state *domain.State
	// accounts is the accounts by their number in the state
	// (domain.State.AccountNumber): an account is found through the
	// state's index (account), not one of the book's own.
	accounts []*bookAccount
	assets   map[string]*bookAsset
	// lines receives every statement line; nil: none are followed.
	lines func(a *bookAccount, l *line) error
	// digests says whether statement lines are digested (verify compares
	// them with the projection). With neither lines nor digests (a
	// replay), the book follows only where accounts and assets last moved:
	// its balances are the state's.
	digests bool

	// seed keys the statement digests: unknown outside this run, so no
	// projection can be edited to match a digest it should not.
	seed maphash.Seed

	position   uint64
	recordedAt time.Time
	hash       eventstore.Hash
	moves      []domain.Movement // one event's, reused
	// digested is the scratch of a line's digests: 8 bytes for the
	// digest before it or its seq, then what the digest covers.
	digested []byte
	// alerts, when set, folds every event applied through the evaluator.
	alerts *alertReplay
}

// bookAccount is an account with its running totals line by line: the
// domain state holds them per event, a statement per line. A replay's book
// keeps neither totals nor lines (book.digests).
type bookAccount struct {
	id, asset string
	scale     uint8
	normal    domain.Side
	// opened, moved (last movement; 0: none), closed (0: open) and
	// amended (last change of bounds or metadata; 0: none) are positions.
	opened, moved, closed, amended uint64
	totals                         domain.Account // the four fields and Normal only

	// lines is how many statement lines the account has; digest chains
	// them (statementDigest), sum adds up each one's digest alone, keyed by
	// its seq (its rank among the account's lines at its position): what a
	// read of every line at once, in no order, is compared with.
	lines  uint64
	digest uint64
	sum    uint64
	seq    uint32
}

// bookAsset is an asset and the last position that changed its line of the
// trial balance.
type bookAsset struct {
	code    string
	scale   uint8
	changed uint64
}

// line is one statement line of an account, as expected.
type line struct {
	position     uint64
	postingIndex uint32
	kind         string
	transferID   string
	counter      string
	side         string // debit or credit
	pending      bool
	amount       string
	// runningBalance and runningAvailable are just after the line.
	runningBalance, runningAvailable string
	// effectiveAt and recordedAt (lineTime: Unix microseconds), reference
	// and metadata (metadataText) are its event's.
	effectiveAt, recordedAt int64
	reference, metadata     string
}

// newBook returns an empty book; with digests, it digests every statement
// line.
func newBook(digests bool) *book {
	return &book{state: domain.NewFoldState(), assets: map[string]*bookAsset{},
		seed: maphash.MakeSeed(), digests: digests}
}

// errUnknownEvent is a record whose type or version this build cannot read:
// not a divergence, a verifier too old.
var errUnknownEvent = errors.New("this ledgerctl cannot read the event: a newer one is needed")

// apply folds one record whose position, hash and link were checked. It
// returns an invariant divergence for an event that does not decode or that
// the domain refuses to apply.
//
// Errors: errUnknownEvent; an error of b.lines; an error for totals that
// disagree with the domain's, which is a bug of this package.
func (b *book) apply(r *eventstore.Record) (*Divergence, error) {
	e, d, err := decodeRecord(r)
	if d != nil || err != nil {
		return d, err
	}
	if d := b.evolve(r, e); d != nil {
		return d, nil
	}
	return nil, b.applied(r, e)
}

// decodeRecord decodes r's payload: an invariant divergence for one that
// does not decode.
//
// Errors: errUnknownEvent.
func decodeRecord(r *eventstore.Record) (domain.Event, *Divergence, error) {
	e, err := domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload)
	if errors.Is(err, domain.ErrUnknownEvent) {
		return nil, nil, fmt.Errorf("event %d (%s v%d): %w", r.Position, r.Type, r.SchemaVersion, errUnknownEvent)
	}
	if err != nil {
		return nil, &Divergence{Kind: KindInvariant, Position: r.Position, Expected: "an event that decodes",
			Found: err.Error(), Detail: r.Type}, nil
	}
	return e, nil, nil
}

// applied does the book's part for e, which b.state has applied.
func (b *book) applied(r *eventstore.Record, e domain.Event) error {
	b.position, b.recordedAt, b.hash = r.Position, r.RecordedAt, r.Hash
	if b.alerts != nil {
		b.alerts.apply(r.Ledger, r.Position, r.RecordedAt, e)
	}
	return b.follow(r, e)
}

// evolve applies e to the domain's state, turning its panic on a broken
// invariant into a divergence.
func (b *book) evolve(r *eventstore.Record, e domain.Event) (d *Divergence) {
	defer func() {
		if p := recover(); p != nil {
			d = &Divergence{Kind: KindInvariant, Position: r.Position, Expected: "an event the domain can apply",
				Found: fmt.Sprint(p), Detail: r.Type}
		}
	}()
	b.state.Evolve(r.Position, e)
	return nil
}

// follow does the book's own bookkeeping for an event the state applied, so
// every account and asset it names exists.
func (b *book) follow(r *eventstore.Record, e domain.Event) error {
	pos := r.Position
	switch e := e.(type) {
	case domain.AssetDefined:
		b.assets[e.Code] = &bookAsset{code: e.Code, scale: e.Scale, changed: pos}
		return nil
	case domain.AccountOpened:
		asset := b.assets[e.Asset]
		a := &bookAccount{id: e.ID, asset: e.Asset, scale: asset.scale, normal: e.Normal, opened: pos,
			totals: domain.Account{Normal: e.Normal}}
		if n, ok := b.state.AccountNumber(e.ID); !ok || n != len(b.accounts) {
			return fmt.Errorf("audit: account %s is number %d (%v) in the state, %d in the book: a bug of the auditor",
				e.ID, n, ok, len(b.accounts))
		}
		b.accounts = append(b.accounts, a)
		asset.changed = pos
		return nil
	case domain.AccountClosed:
		a := b.account(e.ID)
		a.closed = pos
		b.assets[a.asset].changed = pos
		return nil
	case domain.AccountBoundsChanged:
		b.account(e.ID).amended = pos
		return nil
	case domain.AccountMetadataSet:
		b.account(e.ID).amended = pos
		return nil
	}
	// Every statement line is a movement (domain.AppendMovements); bounds
	// and metadata move no balance.
	b.moves = domain.AppendMovements(b.moves[:0], e)
	// The state found each movement's account as it applied it: its
	// numbers spare finding them again.
	moved := b.state.Moved()
	if len(moved) != len(b.moves) {
		return fmt.Errorf("audit: the state moved %d accounts at %d, the book has %d movements: a bug of the auditor",
			len(moved), pos, len(b.moves))
	}
	if i := slices.IndexFunc(moved, func(n int) bool { return n >= len(b.accounts) }); i >= 0 {
		return fmt.Errorf("audit: the state moved account number %d at %d, the book has %d accounts: a bug of the auditor",
			moved[i], pos, len(b.accounts))
	}
	var asset *bookAsset
	if !b.digests && b.lines == nil {
		// A replay needs only where each account and asset last moved: its
		// balances are the state's. Following the lines' totals too (and
		// checking them against the state's, as verify does) cost it a
		// tenth of its time.
		for i := range b.moves {
			asset = b.assetOf(asset, b.moves[i].Asset)
			asset.changed = pos
			b.accounts[moved[i]].moved = pos
		}
		return nil
	}
	var ev lineEvent
	if len(b.moves) > 0 {
		ev = lineEventOf(r, e)
	}
	for i := range b.moves {
		m := &b.moves[i]
		asset = b.assetOf(asset, m.Asset)
		asset.changed = pos
		a := b.accounts[moved[i]]
		if a.id != m.Account {
			// Verify checks the order Moved keeps (a replay, whose balances
			// are the state's own, does not pay for it).
			return fmt.Errorf("audit: movement %d at %d is %s's, the state moved %s: a bug of the auditor", i, pos, m.Account, a.id)
		}
		if err := b.line(a, m, pos, &ev); err != nil {
			return err
		}
	}
	for _, n := range moved {
		if err := b.checkAccount(pos, n); err != nil {
			return err
		}
	}
	return nil
}

// assetOf is the book's asset code, last when it is that one: an event's
// movements are most often all of one asset.
func (b *book) assetOf(last *bookAsset, code string) *bookAsset {
	if last != nil && last.code == code {
		return last
	}
	return b.assets[code]
}

// account is the book's account of an account the state holds: every
// movement the state applied names one, and so does every id the book
// gives out (accountIDs).
func (b *book) account(id string) *bookAccount {
	n, ok := b.state.AccountNumber(id)
	if !ok || n >= len(b.accounts) {
		panic(fmt.Sprintf("audit: account %s (number %d, %v) not in the book: a bug of the auditor", id, n, ok))
	}
	return b.accounts[n]
}

// lineCount is how many statement lines the book's accounts have.
func (b *book) lineCount() uint64 {
	n := uint64(0)
	for _, a := range b.accounts {
		n += a.lines
	}
	return n
}

// lineEvent is what a line copies from its event, as it is served.
type lineEvent struct {
	kind                    string
	effectiveAt, recordedAt int64
	reference, metadata     string
}

// lineEventOf is r's, whose payload decodes to e.
func lineEventOf(r *eventstore.Record, e domain.Event) lineEvent {
	h, _ := domain.HeaderOf(e)
	return lineEvent{kind: r.Type, effectiveAt: lineTime(h.Effective(r.RecordedAt)), recordedAt: lineTime(r.RecordedAt),
		reference: h.Reference, metadata: metadataText(h.Metadata)}
}

func (b *book) line(a *bookAccount, m *domain.Movement, pos uint64, ev *lineEvent) error {
	t := m.Total(&a.totals)
	*t = t.Add(m.Amount)
	if a.moved == pos {
		a.seq++ // as the projector numbers an account's lines at a position
	} else {
		a.seq = 0
	}
	a.moved = pos
	a.lines++
	if b.lines == nil {
		// Digests alone (verify's first read): what they cover is written
		// from the numbers, no line built (three texts a line).
		b.digested = appendMovementLine(append(b.digested[:0], make([]byte, 8)...), a, m, pos, ev)
		digest, alone := digestsOf(b.seed, b.digested, a.digest, uint64(a.seq))
		a.digest, a.sum = digest, a.sum+alone
		return nil
	}
	l := line{position: pos, postingIndex: uint32(m.Posting), kind: ev.kind, transferID: m.Transfer, counter: m.Counterparty,
		side: m.Side.String(), pending: m.Pending, amount: m.Amount.Format(a.scale),
		runningBalance: a.totals.Balance().Format(a.scale), runningAvailable: a.totals.Available().Format(a.scale),
		effectiveAt: ev.effectiveAt, recordedAt: ev.recordedAt, reference: ev.reference, metadata: ev.metadata}
	digest, alone := lineDigests(b.seed, a.digest, uint64(a.seq), &l)
	a.digest, a.sum = digest, a.sum+alone
	return b.lines(a, &l)
}

// appendMovementLine appends what appendLine appends for the line m makes
// on a at pos (its totals already moved), from the numbers.
func appendMovementLine(b []byte, a *bookAccount, m *domain.Movement, pos uint64, ev *lineEvent) []byte {
	b = binary.AppendUvarint(b, pos)
	b = binary.AppendUvarint(b, uint64(uint32(m.Posting)))
	b = binary.AppendVarint(b, ev.effectiveAt)
	b = binary.AppendVarint(b, ev.recordedAt)
	b = append(append(b, m.Side.String()...), 0)
	b = append(append(b, strconv.FormatBool(m.Pending)...), 0)
	for _, s := range [...]string{ev.kind, m.Transfer, m.Counterparty} {
		b = append(append(b, s...), 0)
	}
	b = append(m.Amount.AppendFormat(b, a.scale), 0)
	b = append(a.totals.Balance().AppendFormat(b, a.scale), 0)
	b = append(a.totals.Available().AppendFormat(b, a.scale), 0)
	b = append(append(b, ev.reference...), 0)
	return append(append(b, ev.metadata...), 0)
}

// checkAccount holds the line totals of an account an event moved, by its
// number, to the domain's totals after it.
func (b *book) checkAccount(pos uint64, n int) error {
	a := b.state.AccountAt(n)
	t := &b.accounts[n].totals
	if a.DebitsPosted != t.DebitsPosted || a.CreditsPosted != t.CreditsPosted ||
		a.DebitsPending != t.DebitsPending || a.CreditsPending != t.CreditsPending {
		return fmt.Errorf("audit: statement totals of %s differ from the domain's at %d: a bug of the auditor", a.ID, pos)
	}
	return nil
}

// accountIDs returns every account's id, sorted.
func (b *book) accountIDs() []string {
	ids := make([]string, 0, len(b.accounts))
	for _, a := range b.accounts {
		ids = append(ids, a.id)
	}
	slices.Sort(ids)
	return ids
}

// Balance is one account's balances, as decimal strings in its asset's scale.
type Balance struct {
	Account        string `json:"account"`
	Asset          string `json:"asset"`
	NormalBalance  string `json:"normal_balance"`
	DebitsPosted   string `json:"debits_posted"`
	CreditsPosted  string `json:"credits_posted"`
	DebitsPending  string `json:"debits_pending"`
	CreditsPending string `json:"credits_pending"`
	Balance        string `json:"balance"`
	Available      string `json:"available"`
	// Position is the account's last movement, or its opening.
	Position uint64 `json:"position"`
	Closed   bool   `json:"closed,omitempty"`
}

// balance is a's balances from the domain's state.
func (b *book) balance(a *bookAccount) Balance {
	s, _ := b.state.Account(a.id)
	return Balance{Account: a.id, Asset: a.asset, NormalBalance: a.normal.String(),
		DebitsPosted: s.DebitsPosted.Format(a.scale), CreditsPosted: s.CreditsPosted.Format(a.scale),
		DebitsPending: s.DebitsPending.Format(a.scale), CreditsPending: s.CreditsPending.Format(a.scale),
		Balance: s.Balance().Format(a.scale), Available: s.Available().Format(a.scale),
		Position: max(a.opened, a.moved), Closed: s.Closed}
}

// TrialBalanceLine is one asset's sums over its accounts.
type TrialBalanceLine struct {
	Asset          string `json:"asset"`
	DebitsPosted   string `json:"debits_posted"`
	CreditsPosted  string `json:"credits_posted"`
	DebitsPending  string `json:"debits_pending"`
	CreditsPending string `json:"credits_pending"`
	// Accounts open in the asset, and closed.
	Accounts       uint64 `json:"accounts"`
	AccountsClosed uint64 `json:"accounts_closed"`
	// Position is the last event that changed the line.
	Position uint64 `json:"position"`
}

// trialBalance sums every account per asset (in big.Int: a sum over many
// accounts may pass 128 bits), by asset code.
func (b *book) trialBalance() []TrialBalanceLine {
	type sums struct {
		dp, cp, dq, cq big.Int
		open, closed   uint64
	}
	per := make(map[string]*sums, len(b.assets))
	for code := range b.assets {
		per[code] = &sums{}
	}
	var v big.Int
	for _, a := range b.accounts {
		s := per[a.asset]
		st, _ := b.state.Account(a.id)
		for _, f := range []struct {
			dst *big.Int
			u   domain.Units
		}{{&s.dp, st.DebitsPosted}, {&s.cp, st.CreditsPosted}, {&s.dq, st.DebitsPending}, {&s.cq, st.CreditsPending}} {
			v.SetString(f.u.String(), 10) // Units.String is a plain integer
			f.dst.Add(f.dst, &v)
		}
		if st.Closed {
			s.closed++
		} else {
			s.open++
		}
	}
	codes := make([]string, 0, len(b.assets))
	for code := range b.assets {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	out := make([]TrialBalanceLine, len(codes))
	for i, code := range codes {
		s, scale := per[code], b.assets[code].scale
		out[i] = TrialBalanceLine{Asset: code, DebitsPosted: domain.FormatMinor(&s.dp, scale), CreditsPosted: domain.FormatMinor(&s.cp, scale),
			DebitsPending: domain.FormatMinor(&s.dq, scale), CreditsPending: domain.FormatMinor(&s.cq, scale),
			Accounts: s.open, AccountsClosed: s.closed, Position: b.assets[code].changed}
	}
	return out
}
