package domain_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerd/ledger/domain"
)

// Command generators of the holds workload (property_holds_test.go): each
// returns a kind for the outcome tally, the command, and what it must answer
// when the workload knows.

func (w *holdsWorkload) pick(list []string) string { return list[w.r.IntN(len(list))] }

func (w *holdsWorkload) fresh(prefix string) string {
	w.next++
	return prefix + strconv.Itoa(w.next)
}

// amount returns a positive decimal with at most scale fractional digits.
func (w *holdsWorkload) amount(scale uint8, intMax int) string {
	s := strconv.Itoa(w.r.IntN(intMax))
	if scale == 0 || w.r.IntN(2) == 0 {
		if s == "0" {
			s = "1"
		}
		return s
	}
	k := 1 + w.r.IntN(int(min(scale, 3)))
	var b strings.Builder
	b.WriteString(s)
	b.WriteByte('.')
	for i := range k {
		c := byte('0' + w.r.IntN(10))
		if i == k-1 && c == '0' {
			c = '5' // never zero in all
		}
		b.WriteByte(c)
	}
	return b.String()
}

// randomStep runs one step: a command, an expiry round, or an atomic group.
func (w *holdsWorkload) randomStep() {
	switch n := w.r.IntN(100); {
	case n < 6 && !w.inGroup:
		w.group()
	case n < 14:
		w.expiries()
	case n < 22 && len(w.m.takenOrder) > 0:
		kind, c, expect := w.genRetry()
		w.run(kind, c, expect)
	default:
		kind, c, expect := w.genCommand()
		w.run(kind, c, expect)
	}
}

// genCommand returns a new command (no retry, no expiry round).
func (w *holdsWorkload) genCommand() (string, domain.Command, expectation) {
	switch n := w.r.IntN(100); {
	case n < 2 || len(w.m.assets) < 3:
		return w.genAsset()
	case n < 10 || len(w.m.accounts) < 6:
		return w.genAccount()
	case n < 13:
		return w.genBounds()
	case n < 15:
		return "metadata", setMeta(w.pick(w.ids), w.meta()), nil
	case n < 17:
		return w.genClose()
	case n < 40:
		return w.genTransfer(false)
	case n < 58:
		return w.genTransfer(true)
	case n < 72:
		return w.genPost()
	case n < 80:
		return w.genVoid()
	case n < 83:
		return w.genExpireAny()
	default:
		return w.genReverse()
	}
}

func (w *holdsWorkload) meta() map[string]string {
	if w.r.IntN(3) == 0 {
		return nil
	}
	return map[string]string{"k": strconv.Itoa(w.r.IntN(5))}
}

func (w *holdsWorkload) genAsset() (string, domain.Command, expectation) {
	a := holdsAssets[w.r.IntN(len(holdsAssets)-1)] // never PLN
	if _, ok := w.m.assets[a.code]; ok {
		return "asset", asset(a.code, uint32(a.scale)), func(_ domain.Event, err error) {
			if !errors.Is(err, domain.ErrExists) {
				w.t.Errorf("step %d: asset %s defined again: %v, want EXISTS", w.step, a.code, err)
			}
		}
	}
	return "asset", asset(a.code, uint32(a.scale)), nil
}

func (w *holdsWorkload) genAccount() (string, domain.Command, expectation) {
	a := holdsAssets[w.r.IntN(len(holdsAssets))]
	id := fmt.Sprintf("acc:%d", len(w.ids))
	if len(w.ids) >= holdsPropertyAccountsMax {
		id = w.pick(w.ids)
	} else {
		w.ids = append(w.ids, id)
	}
	c := &domain.OpenAccount{ID: id, Asset: a.code, Normal: domain.SideCredit, Metadata: w.meta()}
	if w.r.IntN(2) == 0 {
		c.Normal = domain.SideDebit
	}
	min, max := w.bounds(a.scale)
	c.MinBalance, c.MaxBalance = bound(min), bound(max)
	return "account", c, nil
}

// bounds returns random bounds: often none, sometimes ones the balance is
// already outside of.
func (w *holdsWorkload) bounds(scale uint8) (min, max string) {
	switch w.r.IntN(8) {
	case 0:
		return "0", ""
	case 1:
		return "-" + w.amount(scale, 200), ""
	case 2:
		return "", w.amount(scale, 500)
	case 3:
		return "0", strconv.Itoa(100 + w.r.IntN(500))
	case 4:
		return w.amount(scale, 20), "" // above a zero balance: starts outside
	}
	return "", ""
}

func (w *holdsWorkload) genBounds() (string, domain.Command, expectation) {
	id := w.pick(w.ids)
	scale := uint8(2)
	if a, ok := w.s.Account(id); ok {
		scale = a.Scale
	}
	min, max := w.bounds(scale)
	return "bounds", setBounds(id, min, max), nil
}

func (w *holdsWorkload) genClose() (string, domain.Command, expectation) {
	id := w.pick(w.ids)
	a, ok := w.s.Account(id)
	if !ok {
		return "close", closeAccount(id), nil
	}
	if !a.Closed && len(w.openAccounts(a.Asset)) <= 6 {
		// Keep enough accounts open for transfers to mean something.
		return "metadata", setMeta(id, w.meta()), nil
	}
	closed, closedAt, pending := a.Closed, a.ClosedAt(), !a.DebitsPending.IsZero() || !a.CreditsPending.IsZero()
	return "close", closeAccount(id), func(_ domain.Event, err error) {
		var ee *domain.ExistsError
		switch {
		case closed && (!errors.As(err, &ee) || ee.Position != closedAt):
			w.t.Errorf("step %d: close of %s closed at %d: %v", w.step, id, closedAt, err)
		case !closed && pending && !errors.Is(err, domain.ErrAccountHasPending):
			w.t.Errorf("step %d: close of %s with pending amounts: %v", w.step, id, err)
		case !closed && !pending && err != nil:
			w.t.Errorf("step %d: close of %s: %v", w.step, id, err)
		}
	}
}

// openAccounts returns the open accounts in an asset.
func (w *holdsWorkload) openAccounts(asset string) []string {
	var out []string
	for _, id := range w.m.byAsset[asset] {
		if a, _ := w.s.Account(id); !a.Closed {
			out = append(out, id)
		}
	}
	return out
}

// postings returns 1..3 postings, in one or more assets (FX).
func (w *holdsWorkload) postings() []domain.PostingInput {
	var out []domain.PostingInput
	for range 1 + w.r.IntN(3) {
		a := holdsAssets[w.r.IntN(len(holdsAssets)-1)]
		if w.r.IntN(50) == 0 {
			a = holdsAssets[len(holdsAssets)-1] // PLN: ASSET_NOT_FOUND
		}
		p := domain.PostingInput{Asset: a.code, Amount: w.amount(a.scale, 100), Debit: "ghost:1", Credit: "ghost:2"}
		ids := w.m.byAsset[a.code]
		if w.r.IntN(30) > 0 {
			ids = w.openAccounts(a.code) // now and then, a closed one: ACCOUNT_CLOSED
		}
		if len(ids) >= 2 {
			i := w.r.IntN(len(ids))
			j := (i + 1 + w.r.IntN(len(ids)-1)) % len(ids)
			p.Debit, p.Credit = ids[i], ids[j]
		}
		out = append(out, p)
	}
	return out
}

func (w *holdsWorkload) genTransfer(pending bool) (string, domain.Command, expectation) {
	c := &domain.CreateTransfer{ID: w.fresh("t"), Postings: w.postings(), Pending: pending}
	kind := "transfer"
	if pending {
		kind = "hold"
		if w.r.IntN(3) > 0 {
			c.TimeoutSeconds = uint32(1 + w.r.IntN(600))
		}
	}
	if w.r.IntN(4) == 0 {
		c.Reference = "ref"
	}
	c.Metadata = w.meta()
	switch w.r.IntN(40) {
	case 0: // within the policy
		c.EffectiveAt = w.clock.Add(-time.Duration(w.r.IntN(80*24)) * time.Hour)
	case 1: // too far back
		c.EffectiveAt = w.clock.Add(-91 * 24 * time.Hour)
	case 2: // too far ahead
		c.EffectiveAt = w.clock.Add(6 * time.Minute)
	}
	return kind, c, nil
}

// holdTarget picks an id for a post or void: mostly an open hold, else a
// resolved one, a transfer, or an unknown id. It returns the outcome wanted
// ("" for success, or the outcome name).
func (w *holdsWorkload) holdTarget() (string, string) {
	switch n := w.r.IntN(20); {
	case n == 0:
		return w.fresh("nothing"), "PENDING_NOT_FOUND"
	case n == 1 && len(w.m.revOrder) > 0:
		id := w.pick(w.m.revOrder)
		return id, "PENDING_NOT_FOUND"
	case n < 5 && len(w.m.holds) > 0:
		id := w.pick(w.m.holds)
		return id, w.holdState(id)
	}
	open := w.openHolds()
	if len(open) == 0 {
		return w.fresh("nothing"), "PENDING_NOT_FOUND"
	}
	id := w.pick(open)
	return id, w.holdState(id)
}

// holdState is what a post or void of hold id must answer now.
func (w *holdsWorkload) holdState(id string) string {
	if w.m.resolutions[id] > 0 {
		if w.m.resolvedBy[id] == domain.TypePendingExpired {
			return "PENDING_EXPIRED"
		}
		return "PENDING_ALREADY_RESOLVED"
	}
	h, ok := w.s.Hold(id)
	if !ok {
		w.t.Fatalf("step %d: hold %s unresolved in the model, not open in the state", w.step, id)
	}
	if !h.ExpiresAt.IsZero() && !w.clock.Before(h.ExpiresAt) {
		return "PENDING_EXPIRED"
	}
	return ""
}

func (w *holdsWorkload) openHolds() []string {
	var out []string
	// The last few hundred holds are enough to find open ones quickly.
	for _, id := range w.m.holds[max(0, len(w.m.holds)-400):] {
		if w.m.resolutions[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// wantOutcome returns an expectation that the outcome is want, or, when want
// is "", any outcome but the ones listed as impossible.
func (w *holdsWorkload) wantOutcome(what, want string, impossible ...string) expectation {
	return func(_ domain.Event, err error) {
		got := outcomeOf(err)
		if want != "" && got != want {
			w.t.Errorf("step %d: %s: got %s (%v), want %s", w.step, what, got, err, want)
		}
		if want == "" && slices.Contains(impossible, got) {
			w.t.Errorf("step %d: %s: got %s (%v)", w.step, what, got, err)
		}
	}
}

func (w *holdsWorkload) genPost() (string, domain.Command, expectation) {
	id, want := w.holdTarget()
	c := postHold(w.fresh("p"), id)
	kind := "post"
	h, open := w.s.Hold(id)
	if open && w.r.IntN(2) == 0 {
		kind = "post partial"
		exceed := w.r.IntN(8) == 0
		for i, p := range h.Postings {
			u := domain.UnitsFromInt64(w.r.Int64N(unitsInt64(p.Amount.Units) + 1))
			if exceed && i == len(h.Postings)-1 {
				u = p.Amount.Units.Add(domain.UnitsFromInt64(1))
				if want == "" {
					want = "AMOUNT_EXCEEDS_PENDING"
				}
			}
			c.Amounts = append(c.Amounts, u.Format(p.Amount.Scale))
		}
	}
	if w.r.IntN(4) == 0 {
		c.Reference = "post"
	}
	c.Metadata = w.meta()
	if want == "" {
		// A post never moves an account against a bound, and an account
		// with pending amounts cannot close: it always succeeds.
		want = "CREATED"
	}
	return kind, c, w.wantOutcome(kind+" of "+id, want)
}

// unitsInt64 returns u, known small.
func unitsInt64(u domain.Units) int64 {
	v, err := strconv.ParseInt(u.String(), 10, 64)
	if err != nil {
		panic(err)
	}
	return v
}

func (w *holdsWorkload) genVoid() (string, domain.Command, expectation) {
	id, want := w.holdTarget()
	c := voidHold(w.fresh("v"), id)
	if w.r.IntN(4) == 0 {
		c.Reference = "void"
	}
	if want == "" {
		want = "CREATED"
	}
	return "void", c, w.wantOutcome("void of "+id, want)
}

// genExpireAny expires a random open hold, due or not.
func (w *holdsWorkload) genExpireAny() (string, domain.Command, expectation) {
	open := w.openHolds()
	if len(open) == 0 {
		return "expire", expireHold(w.fresh("nothing")), w.wantOutcome("expiry of nothing", "NOT_DUE")
	}
	id := w.pick(open)
	h, _ := w.s.Hold(id)
	want := "NOT_DUE"
	if !h.ExpiresAt.IsZero() && !w.clock.Before(h.ExpiresAt) {
		want = "CREATED"
	}
	return "expire", expireHold(id), w.wantOutcome("expiry of "+id, want)
}

func (w *holdsWorkload) genReverse() (string, domain.Command, expectation) {
	c := reverse(w.fresh("r"), "")
	kind, want := "reverse", ""
	switch n := w.r.IntN(20); {
	case n == 0 || len(w.m.revOrder) == 0:
		c.TransferID, want = w.fresh("nothing"), "TRANSFER_NOT_FOUND"
	case n == 1 && len(w.m.holds) > 0:
		c.TransferID, want = w.pick(w.m.holds), "NOT_REVERSIBLE"
	default:
		c.TransferID = w.pick(w.m.revOrder)
		if taken := w.m.taken[c.TransferID]; taken.typ == domain.TypeTransferReversed || taken.typ == domain.TypePendingVoided {
			want = "NOT_REVERSIBLE"
			break
		}
		original, done := w.m.reversible[c.TransferID], w.m.reversed[c.TransferID]
		left := make([]domain.Units, len(original))
		allZero := true
		for i, p := range original {
			left[i] = p.Amount.Units
			if done != nil {
				left[i] = left[i].Sub(done[i])
			}
			allZero = allZero && left[i].IsZero()
		}
		if w.r.IntN(2) == 0 {
			if allZero {
				// Reversal postings are checked (ACCOUNT_CLOSED) before the
				// total is found to be zero.
				want = "ALREADY_REVERSED"
				if w.anyClosed(original) {
					want = ""
				}
			}
			break
		}
		kind = "reverse partial"
		over := w.r.IntN(6) == 0
		for i, p := range original {
			u := domain.UnitsFromInt64(w.r.Int64N(unitsInt64(left[i]) + 1))
			if over {
				u = left[i].Add(domain.UnitsFromInt64(1))
			}
			c.Amounts = append(c.Amounts, u.Format(p.Amount.Scale))
		}
		if over {
			// Nothing left at all is ALREADY_REVERSED; something left,
			// asked more of, AMOUNT_EXCEEDS_REMAINING.
			want = "AMOUNT_EXCEEDS_REMAINING"
			if allZero {
				want = "ALREADY_REVERSED"
			}
		}
	}
	if w.r.IntN(10) == 0 {
		c.EffectiveAt = w.clock.Add(-time.Hour)
	}
	c.Metadata = w.meta()
	return kind, c, w.wantOutcome(kind+" of "+c.TransferID, want, "PENDING_NOT_FOUND")
}

// anyClosed reports whether a posting touches a closed account.
func (w *holdsWorkload) anyClosed(postings []domain.Posting) bool {
	for _, p := range postings {
		for _, id := range []string{p.Debit, p.Credit} {
			if a, _ := w.s.Account(id); a.Closed {
				return true
			}
		}
	}
	return false
}

// genRetry resends an accepted command of the id space: identical (EXISTS at
// its position), with another reference (EXISTS_WITH_DIFFERENT_FIELDS on
// reference), or as a void of another kind's id (on id).
func (w *holdsWorkload) genRetry() (string, domain.Command, expectation) {
	id := w.pick(w.m.takenOrder)
	taken := w.m.taken[id]
	c := cloneCommand(taken.cmd)
	switch w.r.IntN(3) {
	case 0:
		return "retry", c, func(_ domain.Event, err error) {
			var ee *domain.ExistsError
			if !errors.As(err, &ee) || ee.Position != taken.pos {
				w.t.Errorf("step %d: retry of %s: %v, want EXISTS at %d", w.step, id, err, taken.pos)
			}
		}
	case 1:
		switch c := c.(type) {
		case *domain.CreateTransfer:
			c.Reference += "!"
		case *domain.PostPending:
			c.Reference += "!"
		case *domain.VoidPending:
			c.Reference += "!"
		case *domain.ReverseTransfer:
			c.Reference += "!"
		}
		return "retry", c, w.wantDifferent(id, "reference")
	}
	if taken.typ == domain.TypePendingVoided {
		return "retry", postHold(id, "whatever"), w.wantDifferent(id, "id")
	}
	return "retry", voidHold(id, "whatever"), w.wantDifferent(id, "id")
}

func (w *holdsWorkload) wantDifferent(id, field string) expectation {
	return func(_ domain.Event, err error) {
		if !errors.Is(err, domain.ErrExistsWithDifferentFields) || domain.FieldOf(err) != field {
			w.t.Errorf("step %d: retry of %s: %v (field %q), want EXISTS_WITH_DIFFERENT_FIELDS on %s", w.step, id, err, domain.FieldOf(err), field)
		}
	}
}

// cloneCommand copies a command's exported fields: a fresh command, without
// the priors or validation of the original.
func cloneCommand(c domain.Command) domain.Command {
	switch c := c.(type) {
	case *domain.CreateTransfer:
		return &domain.CreateTransfer{ID: c.ID, Postings: slices.Clone(c.Postings), Reference: c.Reference, Metadata: maps.Clone(c.Metadata),
			EffectiveAt: c.EffectiveAt, Pending: c.Pending, TimeoutSeconds: c.TimeoutSeconds}
	case *domain.PostPending:
		return &domain.PostPending{ID: c.ID, PendingID: c.PendingID, Amounts: slices.Clone(c.Amounts), Reference: c.Reference, Metadata: maps.Clone(c.Metadata)}
	case *domain.VoidPending:
		return &domain.VoidPending{ID: c.ID, PendingID: c.PendingID, Reference: c.Reference}
	case *domain.ReverseTransfer:
		return &domain.ReverseTransfer{ID: c.ID, TransferID: c.TransferID, Amounts: slices.Clone(c.Amounts), Reference: c.Reference,
			Metadata: maps.Clone(c.Metadata), EffectiveAt: c.EffectiveAt}
	}
	panic(fmt.Sprintf("cloneCommand: %T", c))
}
