package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Accounting periods. A period is closed by a timestamp: its end (exclusive,
// UTC). Each close starts where the previous one ended (the first at the
// ledger's beginning), and from then on no movement may take effect before
// that end: a transfer, a post of a hold or a reversal whose effective_at
// falls in a closed period is refused (ErrPeriodClosed). Corrections go into
// the open period. A void or an expiry has no business time and moves no
// posted total, so it is never refused.
//
// The close records what the log holds at it: the trial balance per asset
// and a digest of every account's posted totals (ClosingDigest). That is
// the log's figures at the PeriodClosed event's position, so the trial
// balance as of that position (GetTrialBalance as_of_position) gives the
// same numbers.

// TypePeriodClosed is the type of a PeriodClosed event in the log.
const TypePeriodClosed = "PeriodClosed"

// ErrPeriodClosed refuses a command whose effective time falls in a closed
// period, or a close that does not come after the last one. A state of the
// ledger, not a malformed request: KindConflict.
var ErrPeriodClosed error = &Error{msg: "period closed", kind: KindConflict, code: "PERIOD_CLOSED"}

// PeriodClosed closes the period [Start, End): nothing may take effect
// before End from its position on. Start is absent for the first period (the
// ledger's beginning). TrialBalance has a line per asset, by code;
// ClosingDigest is ClosingDigest's over Accounts accounts.
type PeriodClosed struct {
	Start         *time.Time         `json:"start,omitempty"`
	End           time.Time          `json:"end"`
	TrialBalance  []PeriodAssetTotal `json:"trial_balance"`
	Accounts      uint64             `json:"accounts"`
	ClosingDigest string             `json:"closing_digest"`
}

// PeriodAssetTotal is an asset's line of a period's trial balance: the sums
// of its accounts' posted totals, at the asset's scale. Decimal strings, not
// Amounts: a sum over many accounts may exceed an amount's 38 digits.
type PeriodAssetTotal struct {
	Asset         string `json:"asset"`
	DebitsPosted  string `json:"debits_posted"`
	CreditsPosted string `json:"credits_posted"`
}

func (PeriodClosed) EventType() string { return TypePeriodClosed }

// ClosePeriod closes the open period at End (exclusive; UTC, microseconds).
type ClosePeriod struct {
	End time.Time

	validated bool
}

// CommandID is the end, RFC 3339: closing at the same end again is a retry.
func (c *ClosePeriod) CommandID() string { return c.End.UTC().Format(time.RFC3339Nano) }

func (c *ClosePeriod) Validate() error {
	if c.End.IsZero() {
		return fieldErrf("end", ErrInvalidField, "required")
	}
	c.End = canonicalTime(c.End)
	c.validated = true
	return nil
}

// ClosedPeriod returns the end of the last closed period and the position of
// its PeriodClosed event; ok is false while no period is closed.
func (s *State) ClosedPeriod() (end time.Time, pos uint64, ok bool) {
	return s.periodEnd, s.periodPos, !s.periodEnd.IsZero()
}

// CheckPeriods reports what a writer would have refused of e on state s
// (before e), as to periods: a movement taking effect
// in a closed period (a transfer, a hold, a post of a hold, a reversal), or
// a close that does not follow the last one or whose figures (trial
// balance, accounts, closing digest) are not the state's. Evolve trusts
// the log; an import and an audit check it with this first.
//
// Errors: ErrPeriodClosed or ErrInvalidField, as a *FieldError.
func CheckPeriods(s *State, e Event) error {
	if c, ok := e.(PeriodClosed); ok {
		return checkClose(s, &c)
	}
	// A void or an expiry has no business time (zero): never refused.
	if h, ok := HeaderOf(e); ok && !h.EffectiveAt.IsZero() {
		return checkOpenPeriod(s, h.EffectiveAt)
	}
	return nil
}

// checkClose compares a recorded close with the one decidePeriod records on
// s for its end. Not its end against the time it was recorded at: the
// clock decidePeriod compared it with is not in the log (now is the end).
func checkClose(s *State, c *PeriodClosed) error {
	e, err := decidePeriod(s, &ClosePeriod{End: c.End, validated: true}, c.End)
	var exists *ExistsError
	if errors.As(err, &exists) {
		return fieldErrf("end", ErrPeriodClosed, "%s is the end of the last closed period", c.End.Format(time.RFC3339Nano))
	}
	if err != nil {
		return err // an end before the last close's
	}
	want := e.(PeriodClosed)
	switch {
	case (want.Start == nil) != (c.Start == nil) || want.Start != nil && !want.Start.Equal(*c.Start):
		return fieldErrf("start", ErrInvalidField, "not the end of the last closed period")
	case !slices.Equal(want.TrialBalance, c.TrialBalance):
		return fieldErrf("trial_balance", ErrInvalidField, "%v, the state's is %v", c.TrialBalance, want.TrialBalance)
	case want.ClosingDigest != c.ClosingDigest || want.Accounts != c.Accounts:
		return fieldErrf("closing_digest", ErrInvalidField, "%s over %d accounts, the state's is %s over %d",
			c.ClosingDigest, c.Accounts, want.ClosingDigest, want.Accounts)
	}
	return nil
}

// checkOpenPeriod refuses a business time in a closed period.
func checkOpenPeriod(s *State, effectiveAt time.Time) error {
	if !s.periodEnd.IsZero() && effectiveAt.Before(s.periodEnd) {
		return fieldErrf("effective_at", ErrPeriodClosed, "%s is before %s, the end of the last closed period",
			effectiveAt.Format(time.RFC3339Nano), s.periodEnd.Format(time.RFC3339Nano))
	}
	return nil
}

// decidePeriod closes the open period at c.End: after the last close's end
// (the same end is a retry: EXISTS), and not after now.
func decidePeriod(s *State, c *ClosePeriod, now time.Time) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated ClosePeriod")
	}
	var start *time.Time
	if !s.periodEnd.IsZero() {
		switch c.End.Compare(s.periodEnd) {
		case 0:
			return nil, &ExistsError{Position: s.periodPos}
		case -1:
			return nil, fieldErrf("end", ErrPeriodClosed, "%s is not after %s, the end of the last closed period",
				c.End.Format(time.RFC3339Nano), s.periodEnd.Format(time.RFC3339Nano))
		}
		prev := s.periodEnd
		start = &prev
	}
	if c.End.After(now) {
		return nil, fieldErrf("end", ErrInvalidField, "%s is in the future", c.End.Format(time.RFC3339Nano))
	}
	digest, n := ClosingDigest(s)
	return PeriodClosed{Start: start, End: c.End, TrialBalance: periodTrialBalance(s), Accounts: n,
		ClosingDigest: digest}, nil
}

// ClosingDigest returns the SHA-256 (lowercase hex) of the canonical encoding
// of every account's posted totals, and how many accounts it covers. The
// encoding, one line per account (open or closed, moved or not) in
// ascending byte order of id:
//
//	<id> TAB <asset> TAB <debits_posted> TAB <credits_posted> LF
//
// with amounts as decimal strings at the asset's scale ("10.00", "0.00"). An
// id holds no tab or newline, so the lines are unambiguous, and anyone can
// recompute the digest from a balances listing with sort and sha256sum.
func ClosingDigest(s *State) (string, uint64) {
	accounts := slices.Collect(s.accounts.All())
	// Go compares strings bytewise.
	slices.SortFunc(accounts, func(a, b *Account) int { return strings.Compare(a.ID, b.ID) })
	h := sha256.New()
	var line []byte
	for _, a := range accounts {
		line = append(line[:0], a.ID...)
		line = append(line, '\t')
		line = append(line, a.Asset...)
		line = append(line, '\t')
		line = append(line, a.DebitsPosted.Format(a.Scale)...)
		line = append(line, '\t')
		line = append(line, a.CreditsPosted.Format(a.Scale)...)
		line = append(line, '\n')
		h.Write(line)
	}
	return hex.EncodeToString(h.Sum(nil)), uint64(len(accounts))
}

// periodTrialBalance sums the accounts' posted totals per asset, in big
// integers (a sum may exceed 128 bits), with a line for every asset.
func periodTrialBalance(s *State) []PeriodAssetTotal {
	type sums struct{ debits, credits big.Int }
	per := make(map[string]*sums, len(s.assets))
	for code := range s.assets {
		per[code] = &sums{}
	}
	for a := range s.accounts.All() {
		t := per[a.Asset]
		t.debits.Add(&t.debits, a.DebitsPosted.big())
		t.credits.Add(&t.credits, a.CreditsPosted.big())
	}
	out := make([]PeriodAssetTotal, 0, len(per))
	for code, t := range per {
		scale := s.assets[code].Scale
		out = append(out, PeriodAssetTotal{Asset: code, DebitsPosted: FormatMinor(&t.debits, scale),
			CreditsPosted: FormatMinor(&t.credits, scale)})
	}
	slices.SortFunc(out, func(a, b PeriodAssetTotal) int { return strings.Compare(a.Asset, b.Asset) })
	return out
}

// evolvePeriod applies a close, asserting that it continues the last one.
func (s *State) evolvePeriod(pos uint64, e *PeriodClosed) {
	continues := (e.Start == nil && s.periodEnd.IsZero()) || (e.Start != nil && e.Start.Equal(s.periodEnd))
	if !continues || e.End.IsZero() || (e.Start != nil && !e.End.After(*e.Start)) {
		panic(fmt.Sprintf("domain: period closed at %d does not continue the last one (ending %s)", pos,
			s.periodEnd.Format(time.RFC3339Nano)))
	}
	end, at := s.periodEnd, s.periodPos
	s.periodEnd, s.periodPos = e.End, pos
	s.undo(func() { s.periodEnd, s.periodPos = end, at })
}
