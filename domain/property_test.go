package domain_test

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ledgerd/ledger/domain"
)

const (
	propertySeedDefault = 0x1ed6e4
	propertySteps       = 10_000
	propertyAccountsMax = 64
)

// propertySeed is LEDGER_PROPERTY_SEED when set, else a fixed seed, so that a
// failure found by anyone reproduces everywhere.
func propertySeed(t *testing.T) uint64 {
	t.Helper()
	v := os.Getenv("LEDGER_PROPERTY_SEED")
	if v == "" {
		return propertySeedDefault
	}
	seed, err := strconv.ParseUint(v, 0, 64)
	if err != nil {
		t.Fatalf("LEDGER_PROPERTY_SEED=%q: %v", v, err)
	}
	return seed
}

type assetSpec struct {
	code  string
	scale uint8
}

// propertyAssets are the assets the workload may define; PLN is never defined,
// so commands in it meet ASSET_NOT_FOUND.
var propertyAssets = []assetSpec{{"USD", 2}, {"JPY", 0}, {"BTC", 8}, {"ETH", 18}, {"KWD", 3}, {"PLN", 2}}

// modelAccount is what the workload knows of an account, independent of State.
type modelAccount struct {
	open                 *domain.OpenAccount // as first accepted
	position             uint64
	min, max             *big.Int
	debits, credits      *big.Int
	insideMin, insideMax bool // once inside a bound, the account never leaves it
}

func (m *modelAccount) balance() *big.Int {
	if m.open.Normal == domain.SideCredit {
		return new(big.Int).Sub(m.credits, m.debits)
	}
	return new(big.Int).Sub(m.debits, m.credits)
}

type acceptedTransfer struct {
	cmd      *domain.CreateTransfer
	position uint64
}

// workload generates commands and keeps a model of what was accepted.
type workload struct {
	r            *rand.Rand
	s            *domain.State
	assets       map[string]uint64 // defined asset code -> position
	accountIDs   []string          // every id ever tried, accepted or not
	accounts     map[string]*modelAccount
	byAsset      map[string][]string // accepted account ids per asset
	transfers    []acceptedTransfer
	events       []domain.Event // accepted, at positions 1..n
	outcomes     map[string]int
	nextTransfer int
	// closedEnd and closedAt are the last period closed and its position.
	closedEnd time.Time
	closedAt  uint64
}

func TestPropertyRandomWorkload(t *testing.T) {
	seed := propertySeed(t)
	t.Logf("seed %#x (set LEDGER_PROPERTY_SEED to reproduce or vary)", seed)
	w := &workload{
		r:        rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		s:        domain.NewState(),
		assets:   make(map[string]uint64),
		accounts: make(map[string]*modelAccount),
		byAsset:  make(map[string][]string),
		outcomes: make(map[string]int),
	}
	start := time.Now()
	for step := range propertySteps {
		w.step(t, step)
		if t.Failed() {
			t.Fatalf("failed at step %d (seed %#x)", step, seed)
		}
	}
	w.checkReplay(t)
	t.Logf("%d commands in %v: %v", propertySteps, time.Since(start).Round(time.Millisecond), w.outcomes)
	// The workload must reach every outcome, or it tests less than it claims.
	for _, o := range []string{
		"asset CREATED", "asset EXISTS", "account CREATED", "account EXISTS",
		"account EXISTS_WITH_DIFFERENT_FIELDS", "asset EXISTS_WITH_DIFFERENT_FIELDS", "transfer CREATED", "transfer EXISTS",
		"transfer EXISTS_WITH_DIFFERENT_FIELDS", "transfer BELOW_MIN_BALANCE",
		"transfer ABOVE_MAX_BALANCE", "transfer ACCOUNT_NOT_FOUND", "transfer ASSET_NOT_FOUND",
		"transfer ASSET_MISMATCH", "transfer SAME_ACCOUNT", "transfer INVALID_AMOUNT",
		"period CREATED", "period EXISTS", "period PERIOD_CLOSED", "transfer PERIOD_CLOSED",
	} {
		if w.outcomes[o] == 0 {
			t.Errorf("workload never produced %s", o)
		}
	}
}

// outcome names an error the way the result codes do.
func outcome(err error) string {
	for _, o := range []struct {
		err  error
		name string
	}{
		{domain.ErrExistsWithDifferentFields, "EXISTS_WITH_DIFFERENT_FIELDS"},
		{domain.ErrExists, "EXISTS"},
		{domain.ErrInvalidField, "INVALID_FIELD"},
		{domain.ErrInvalidAmount, "INVALID_AMOUNT"},
		{domain.ErrAccountNotFound, "ACCOUNT_NOT_FOUND"},
		{domain.ErrAccountClosed, "ACCOUNT_CLOSED"},
		{domain.ErrAssetNotFound, "ASSET_NOT_FOUND"},
		{domain.ErrAssetMismatch, "ASSET_MISMATCH"},
		{domain.ErrSameAccount, "SAME_ACCOUNT"},
		{domain.ErrBelowMinBalance, "BELOW_MIN_BALANCE"},
		{domain.ErrAboveMaxBalance, "ABOVE_MAX_BALANCE"},
		{domain.ErrBalanceOverflow, "BALANCE_OVERFLOW"},
		{domain.ErrPeriodClosed, "PERIOD_CLOSED"},
	} {
		if errors.Is(err, o.err) {
			return o.name
		}
	}
	if err == nil {
		return "CREATED"
	}
	return "UNKNOWN"
}

// balanceRow is the part of an account a command may change.
type balanceRow struct {
	id                                             string
	debits, credits, debitsPending, creditsPending domain.Units
	closed                                         bool
}

func (w *workload) rows() []balanceRow {
	out := make([]balanceRow, 0, len(w.accounts))
	for _, id := range w.accountIDs {
		if a, ok := w.s.Account(id); ok {
			out = append(out, balanceRow{id, a.DebitsPosted, a.CreditsPosted, a.DebitsPending, a.CreditsPending, a.Closed})
		}
	}
	return out
}

func (w *workload) step(t *testing.T, step int) {
	var (
		kind string
		c    domain.Command
		// expect checks a rejection against what the workload knows.
		expect func(err error)
	)
	switch n := w.r.IntN(100); {
	case n < 3 || len(w.assets) == 0:
		kind = "asset"
		c, expect = w.genAsset(t)
	case n < 15 || len(w.accounts) < 4:
		kind = "account"
		c, expect = w.genAccount(t)
	case n < 16:
		kind = "period"
		c, expect = w.genPeriod(t)
	default:
		kind = "transfer"
		c, expect = w.genTransfer(t)
	}

	before, pos, count := w.rows(), w.s.Position(), w.s.AccountCount()
	e, err := decide(w.s, c)
	w.outcomes[kind+" "+outcome(err)]++
	if !slices.Equal(before, w.rows()) || w.s.Position() != pos || w.s.AccountCount() != count {
		t.Errorf("step %d: Decide of %s %s changed the state (error %v)", step, kind, c.CommandID(), err)
	}
	if expect != nil {
		expect(err)
	}
	if err != nil {
		if outcome(err) == "UNKNOWN" {
			t.Errorf("step %d: %s %s: error %v is no sentinel", step, kind, c.CommandID(), err)
		}
		if !errors.Is(err, domain.ErrExists) && domain.FieldOf(err) == "" {
			t.Errorf("step %d: %s %s: error %v names no field", step, kind, c.CommandID(), err)
		}
		if tc, ok := c.(*domain.CreateTransfer); ok {
			w.checkBoundRejection(t, step, tc, err)
			w.checkPeriodRejection(t, step, tc, err)
		}
		w.checkInvariants(t, step)
		return
	}

	w.s.Evolve(pos+1, e)
	w.events = append(w.events, e)
	switch c := c.(type) {
	case *domain.DefineAsset:
		w.assets[c.Code] = pos + 1
	case *domain.OpenAccount:
		w.acceptAccount(t, c, e.(domain.AccountOpened), pos+1)
	case *domain.CreateTransfer:
		if at := e.(domain.TransferCommitted).EffectiveAt; at.Before(w.closedEnd) {
			t.Errorf("step %d: %s accepted, effective %s in the period closed at %s", step, c.ID, at, w.closedEnd)
		}
		w.acceptTransfer(t, step, c, e.(domain.TransferCommitted), pos+1)
	case *domain.ClosePeriod:
		w.closedEnd, w.closedAt = c.End, pos+1
	}
	w.checkInvariants(t, step)
}

// genPeriod closes a period at a time in the window transfers are dated in:
// after the last close (CREATED), the same end (EXISTS) or before it
// (PERIOD_CLOSED naming end).
func (w *workload) genPeriod(t *testing.T) (domain.Command, func(error)) {
	end := now.Add(-time.Duration(w.r.IntN(1e6)) * time.Second)
	if !w.closedEnd.IsZero() && w.r.IntN(4) == 0 {
		end = w.closedEnd
	}
	return &domain.ClosePeriod{End: end}, func(err error) {
		t.Helper()
		switch {
		case !w.closedEnd.IsZero() && end.Equal(w.closedEnd):
			checkExists(t, err, w.closedAt)
		case end.Before(w.closedEnd):
			checkErr(t, err, domain.ErrPeriodClosed, "end")
		default:
			checkErr(t, err, nil, "")
		}
	}
}

// checkPeriodRejection checks a PERIOD_CLOSED refusal against the oracle: the
// transfer is dated before the last closed end.
func (w *workload) checkPeriodRejection(t *testing.T, step int, c *domain.CreateTransfer, err error) {
	if !errors.Is(err, domain.ErrPeriodClosed) {
		return
	}
	at := c.EffectiveAt
	if at.IsZero() {
		at = now
	}
	if !at.Before(w.closedEnd) {
		t.Errorf("step %d: %s refused with %v, dated %s, after the closed end %s", step, c.ID, err, at, w.closedEnd)
	}
}

func (w *workload) genAsset(t *testing.T) (domain.Command, func(error)) {
	a := propertyAssets[w.r.IntN(len(propertyAssets)-1)] // never PLN
	pos, defined := w.assets[a.code]
	switch {
	case !defined:
		return asset(a.code, uint32(a.scale)), nil
	case w.r.IntN(2) == 0:
		return asset(a.code, uint32(a.scale)), func(err error) { w.expectExists(t, "asset "+a.code, err, pos) }
	}
	other := uint32(a.scale) + 1
	if other > domain.ScaleMax {
		other = uint32(a.scale) - 1
	}
	return asset(a.code, other), func(err error) { w.expectDifferent(t, "asset "+a.code, err, "scale") }
}

// genDecimal returns a positive decimal with at most scale fractional digits,
// below 10^intDigits.
func (w *workload) genDecimal(scale uint8, intMax int) string {
	s := strconv.Itoa(w.r.IntN(intMax))
	if scale == 0 || w.r.IntN(3) == 0 {
		return s
	}
	k := 1 + w.r.IntN(int(min(scale, 4)))
	var b strings.Builder
	b.WriteString(s)
	b.WriteByte('.')
	for range k {
		b.WriteByte(byte('0' + w.r.IntN(10)))
	}
	return b.String()
}

func (w *workload) genAccount(t *testing.T) (domain.Command, func(error)) {
	// A retry of an accepted account: identical, or with another normal side.
	if len(w.accounts) > 0 && w.r.IntN(5) == 0 {
		id := w.accountIDs[w.r.IntN(len(w.accountIDs))]
		if m, ok := w.accounts[id]; ok {
			c := *m.open
			if w.r.IntN(2) == 0 {
				return &c, func(err error) { w.expectExists(t, "account "+id, err, m.position) }
			}
			c.Normal = 3 - c.Normal
			return &c, func(err error) {
				w.expectDifferent(t, "account "+id, err, "normal_balance")
			}
		}
	}
	a := propertyAssets[w.r.IntN(len(propertyAssets))]
	id := fmt.Sprintf("acc:%d", len(w.accountIDs))
	if len(w.accountIDs) >= propertyAccountsMax {
		id = w.accountIDs[w.r.IntN(len(w.accountIDs))]
	} else {
		w.accountIDs = append(w.accountIDs, id)
	}
	c := &domain.OpenAccount{ID: id, Asset: a.code, Normal: domain.SideCredit}
	if w.r.IntN(2) == 0 {
		c.Normal = domain.SideDebit
	}
	switch w.r.IntN(6) {
	case 0: // overdraft forbidden
		c.MinBalance = bound("0")
	case 1: // overdraft limit
		c.MinBalance = bound("-" + w.genDecimal(a.scale, 300))
	case 2: // credit limit
		c.MaxBalance = bound(w.genDecimal(a.scale, 1000))
	case 3: // both, possibly starting outside them
		c.MinBalance = bound(w.genDecimal(a.scale, 50))
		c.MaxBalance = bound(strconv.Itoa(50 + w.r.IntN(1000)))
	case 4: // a max below zero: starts outside it
		c.MaxBalance = bound("-" + w.genDecimal(a.scale, 20))
	}
	if w.r.IntN(4) == 0 {
		c.Metadata = map[string]string{"owner": id}
	}
	return c, nil
}

func (w *workload) acceptAccount(t *testing.T, c *domain.OpenAccount, e domain.AccountOpened, pos uint64) {
	open := *c
	m := &modelAccount{open: &open, position: pos,
		debits: new(big.Int), credits: new(big.Int)}
	if e.MinBalance != nil {
		m.min = unitsToBig(e.MinBalance.Units)
	}
	if e.MaxBalance != nil {
		m.max = unitsToBig(e.MaxBalance.Units)
	}
	m.insideMin = m.min == nil || m.min.Sign() <= 0
	m.insideMax = m.max == nil || m.max.Sign() >= 0
	w.accounts[c.ID] = m
	w.byAsset[c.Asset] = append(w.byAsset[c.Asset], c.ID)
}

func propertyScale(code string) uint8 {
	for _, a := range propertyAssets {
		if a.code == code {
			return a.scale
		}
	}
	panic("unknown asset " + code)
}

// accountsIn returns the accepted accounts in an asset, in order of opening.
func (w *workload) accountsIn(asset string) []string { return w.byAsset[asset] }

func (w *workload) genTransfer(t *testing.T) (domain.Command, func(error)) {
	if len(w.transfers) > 0 && w.r.IntN(8) == 0 {
		return w.genTransferRetry(t)
	}
	w.nextTransfer++
	c := &domain.CreateTransfer{ID: fmt.Sprintf("tr-%d", w.nextTransfer)}
	n := 1 + w.r.IntN(4)
	for range n {
		a := propertyAssets[w.r.IntN(len(propertyAssets)-1)]
		if w.r.IntN(40) == 0 {
			a = propertyAssets[len(propertyAssets)-1] // never defined: ASSET_NOT_FOUND
		}
		ids := w.accountsIn(a.code)
		p := domain.PostingInput{Asset: a.code, Amount: w.genDecimal(a.scale, 400)}
		if len(ids) >= 2 {
			i := w.r.IntN(len(ids))
			j := (i + 1 + w.r.IntN(len(ids)-1)) % len(ids)
			p.Debit, p.Credit = ids[i], ids[j]
		} else {
			p.Debit, p.Credit = "ghost:1", "ghost:2"
		}
		switch w.r.IntN(60) {
		case 0:
			p.Credit = p.Debit // SAME_ACCOUNT
		case 1:
			p.Debit = "ghost:3" // ACCOUNT_NOT_FOUND
		case 2:
			p.Amount = "0" // INVALID_AMOUNT
		case 3:
			p.Amount += strings.Repeat("1", int(a.scale)+1-strings.Count(p.Amount, ".")) // too many decimals
			if !strings.Contains(p.Amount, ".") {
				p.Amount = "1." + strings.Repeat("5", int(a.scale)+1)
			}
		case 4: // ASSET_MISMATCH: a credit account in another asset
			other := propertyAssets[w.r.IntN(len(propertyAssets))]
			if oids := w.accountsIn(other.code); other.code != a.code && len(oids) > 0 {
				p.Credit = oids[w.r.IntN(len(oids))]
			}
		}
		c.Postings = append(c.Postings, p)
	}
	if w.r.IntN(4) == 0 {
		c.Reference = "ref " + c.ID
	}
	if w.r.IntN(4) == 0 {
		c.EffectiveAt = now.Add(-time.Duration(w.r.IntN(1e6)) * time.Second)
	}
	return c, nil
}

// genTransferRetry resends an accepted transfer: identical, with effective_at
// omitted, or with the first amount changed.
func (w *workload) genTransferRetry(t *testing.T) (domain.Command, func(error)) {
	prior := w.transfers[w.r.IntN(len(w.transfers))]
	c := *prior.cmd
	c.Postings = slices.Clone(prior.cmd.Postings)
	switch w.r.IntN(3) {
	case 0:
		return &c, func(err error) { w.expectExists(t, "transfer "+c.ID, err, prior.position) }
	case 1:
		c.EffectiveAt = time.Time{}
		return &c, func(err error) { w.expectExists(t, "transfer "+c.ID, err, prior.position) }
	}
	c.Postings[0].Amount = "1" + c.Postings[0].Amount
	return &c, func(err error) { w.expectDifferent(t, "transfer "+c.ID, err, "postings[0].amount") }
}

func (w *workload) expectExists(t *testing.T, what string, err error, pos uint64) {
	t.Helper()
	var ee *domain.ExistsError
	if !errors.As(err, &ee) || ee.Position != pos {
		t.Errorf("retry of %s: got %v, want EXISTS at %d", what, err, pos)
	}
}

func (w *workload) expectDifferent(t *testing.T, what string, err error, field string) {
	t.Helper()
	if !errors.Is(err, domain.ErrExistsWithDifferentFields) || domain.FieldOf(err) != field {
		t.Errorf("retry of %s: got %v (field %q), want EXISTS_WITH_DIFFERENT_FIELDS on %s", what, err, domain.FieldOf(err), field)
	}
}

// netEffects returns each account's debit and credit totals in t.
func netEffects(postings []domain.Posting) map[string][2]*big.Int {
	net := make(map[string][2]*big.Int)
	add := func(id string, side int, u domain.Units) {
		v, ok := net[id]
		if !ok {
			v = [2]*big.Int{new(big.Int), new(big.Int)}
			net[id] = v
		}
		v[side].Add(v[side], unitsToBig(u))
	}
	for _, p := range postings {
		add(p.Debit, 0, p.Amount.Units)
		add(p.Credit, 1, p.Amount.Units)
	}
	return net
}

// boundViolation is the oracle for checkEffect: it names the bound a movement of
// m by debit and credit would cross in the direction it moves, or "".
func boundViolation(m *modelAccount, debit, credit *big.Int) string {
	delta := new(big.Int).Sub(credit, debit)
	if m.open.Normal == domain.SideDebit {
		delta.Neg(delta)
	}
	next := new(big.Int).Add(m.balance(), delta)
	switch {
	case m.min != nil && delta.Sign() < 0 && next.Cmp(m.min) < 0:
		return "BELOW_MIN_BALANCE"
	case m.max != nil && delta.Sign() > 0 && next.Cmp(m.max) > 0:
		return "ABOVE_MAX_BALANCE"
	}
	return ""
}

// checkBoundRejection checks a bound refusal against the oracle: some account
// in the transfer must really cross that bound.
func (w *workload) checkBoundRejection(t *testing.T, step int, c *domain.CreateTransfer, err error) {
	want := outcome(err)
	if want != "BELOW_MIN_BALANCE" && want != "ABOVE_MAX_BALANCE" {
		return
	}
	postings := make([]domain.Posting, len(c.Postings))
	for i, p := range c.Postings {
		u, err := domain.MustDecimal(p.Amount).Units(propertyScale(p.Asset))
		if err != nil {
			t.Fatalf("step %d: %s refused on a bound with a bad amount %s", step, c.ID, p.Amount)
		}
		postings[i] = domain.Posting{Debit: p.Debit, Credit: p.Credit, Asset: p.Asset, Amount: domain.Amount{Units: u}}
	}
	for id, dc := range netEffects(postings) {
		if boundViolation(w.accounts[id], dc[0], dc[1]) == want {
			return
		}
	}
	t.Errorf("step %d: %s refused with %v, but the oracle finds no account crossing that bound", step, c.ID, err)
}

func (w *workload) acceptTransfer(t *testing.T, step int, c *domain.CreateTransfer, e domain.TransferCommitted, pos uint64) {
	for id, dc := range netEffects(e.Postings) {
		m := w.accounts[id]
		if v := boundViolation(m, dc[0], dc[1]); v != "" {
			t.Errorf("step %d: %s accepted, but the oracle says account %s is %s", step, c.ID, id, v)
		}
		m.debits.Add(m.debits, dc[0])
		m.credits.Add(m.credits, dc[1])
		w.checkModel(t, step, id)
	}
	saved := *c
	saved.Postings = slices.Clone(c.Postings)
	w.transfers = append(w.transfers, acceptedTransfer{cmd: &saved, position: pos})
}

// checkInvariants runs after every command.
func (w *workload) checkInvariants(t *testing.T, step int) {
	type sums struct{ debits, credits domain.Units }
	perAsset := make(map[string]sums, len(propertyAssets))
	for _, id := range w.accountIDs {
		m, ok := w.accounts[id]
		a, live := w.s.Account(id)
		if ok != live {
			t.Fatalf("step %d: account %s in model %v, in state %v", step, id, ok, live)
		}
		if !ok {
			continue
		}
		sum := perAsset[a.Asset]
		sum.debits = sum.debits.Add(a.DebitsPosted)
		sum.credits = sum.credits.Add(a.CreditsPosted)
		perAsset[a.Asset] = sum

		// With no bound changes and no pending transfers: once an account is
		// inside a bound, it stays inside.
		if a.Min() != nil {
			inside := a.Available().Cmp(*a.Min()) >= 0
			if m.insideMin && !inside {
				t.Errorf("step %d: account %s available %s below min %s", step, id, a.Available().Format(a.Scale), a.Min().Format(a.Scale))
			}
			m.insideMin = m.insideMin || inside
		}
		if a.Max() != nil {
			inside := a.Ceiling().Cmp(*a.Max()) <= 0
			if m.insideMax && !inside {
				t.Errorf("step %d: account %s ceiling %s above max %s", step, id, a.Ceiling().Format(a.Scale), a.Max().Format(a.Scale))
			}
			m.insideMax = m.insideMax || inside
		}
	}
	for code, sum := range perAsset {
		if sum.debits.Cmp(sum.credits) != 0 {
			t.Errorf("step %d: asset %s: Σ debits_posted %s != Σ credits_posted %s", step, code, sum.debits, sum.credits)
		}
	}
}

// checkModel compares the account with the model's big.Int balances.
func (w *workload) checkModel(t *testing.T, step int, id string) {
	m := w.accounts[id]
	a, _ := w.s.Account(id)
	if d, c := unitsToBig(a.DebitsPosted), unitsToBig(a.CreditsPosted); d.Cmp(m.debits) != 0 || c.Cmp(m.credits) != 0 {
		t.Errorf("step %d: account %s has debits %s credits %s, model %s %s", step, id, d, c, m.debits, m.credits)
	}
}

// checkReplay applies the accepted events, as stored (JSON) and as decided, to
// new states, which must equal the live one.
func (w *workload) checkReplay(t *testing.T) {
	direct, stored := domain.NewState(), domain.NewState()
	for i, e := range w.events {
		pos := uint64(i + 1)
		direct.Evolve(pos, e)
		b, err := domain.MarshalEvent(e)
		if err != nil {
			t.Fatalf("marshal event %d: %v", pos, err)
		}
		d, err := domain.UnmarshalEvent(e.EventType(), domain.SchemaVersion, b)
		if err != nil {
			t.Fatalf("unmarshal event %d: %v", pos, err)
		}
		stored.Evolve(pos, d)
	}
	if got, want := direct.Position(), w.s.Position(); got != want {
		t.Fatalf("replayed position %d, live %d", got, want)
	}
	live := snapshot(w.s, w.accountIDs)
	for name, s := range map[string]*domain.State{"direct": direct, "stored": stored} {
		if s.AccountCount() != w.s.AccountCount() {
			t.Errorf("%s replay: %d accounts, live %d", name, s.AccountCount(), w.s.AccountCount())
		}
		if end, at, _ := s.ClosedPeriod(); !end.Equal(w.closedEnd) || at != w.closedAt {
			t.Errorf("%s replay: period closed at %s (%d), live %s (%d)", name, end, at, w.closedEnd, w.closedAt)
		}
		if diff := cmp.Diff(live, snapshot(s, w.accountIDs), unitsEqual); diff != "" {
			t.Errorf("%s replay differs from live state (-live +replay):\n%s", name, diff)
		}
		for _, a := range propertyAssets {
			got, gok := s.Asset(a.code)
			want, wok := w.s.Asset(a.code)
			if got != want || gok != wok {
				t.Errorf("%s replay: asset %s = %+v, live %+v", name, a.code, got, want)
			}
		}
	}
	t.Logf("replayed %d events", len(w.events))
}
