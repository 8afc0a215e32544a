package domain

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Before-commit rules: the writer evaluates them in Decide against its state,
// and refuses a transfer or hold they would fire on (RULE_REJECTED, the
// detail naming the rule, its version and the figure).
//
// A velocity rule needs each watched account's recent postings. The state
// keeps them, only for accounts watched by an enabled before-commit velocity
// rule and only from the rule's definition on, in a ring per account and
// side (postingRing): entries older than the longest such window (by
// effective time) are dropped, and a ring holds at most VelocityRingMax
// entries: beyond that its two oldest are merged into one at the later
// time, so a posting may be counted a little longer than its window, never
// shorter (a rule errs on the side of refusing). Memory: at most
// VelocityRingMax·32 bytes per watched account and side, and only busy
// accounts fill their rings.

// VelocityRingMax bounds the entries of a watched account's ring per side.
const VelocityRingMax = 1024

// monitorState is the state's part of monitoring.
type monitorState struct {
	rules map[string]*RuleVersion
	// before are the enabled before-commit rules in id order, velocity
	// those of them that are velocity rules, and windowMax the longest of
	// their windows (reindex).
	before, velocity []*RuleVersion
	windowMax        time.Duration
	// rings are the recent postings of accounts watched by a before-commit
	// velocity rule.
	rings map[string]*postingRings
	// holds are, by rule, the versions with the hold action and their
	// hold accounts, in version order: what an AlertRaised of any version
	// may ask for (the alerts it raises come from a read model).
	holds map[string][]ruleHold
}

// ruleHold is a rule version's hold account.
type ruleHold struct {
	version uint32
	account string
}

func newMonitorState() monitorState {
	return monitorState{rules: map[string]*RuleVersion{}, rings: map[string]*postingRings{}, holds: map[string][]ruleHold{}}
}

// holdAccount is the account version of rule holds towards ("": it holds
// nothing).
func (m *monitorState) holdAccount(rule string, version uint32) string {
	for _, h := range m.holds[rule] {
		if h.version == version {
			return h.account
		}
	}
	return ""
}

// reindex recomputes before, velocity and windowMax from rules. A longer
// window than before counts from its definition on: what the rings let go
// under the shorter one is forgotten, not refused (their horizons reset).
func (m *monitorState) reindex() {
	was := m.windowMax
	defer func() {
		if m.windowMax > was {
			for _, rings := range m.rings {
				rings.horizon = [2]int64{}
			}
		}
	}()
	m.before, m.velocity, m.windowMax = nil, nil, 0
	for _, id := range slices.Sorted(maps.Keys(m.rules)) {
		r := m.rules[id]
		if r.Rule.Disabled || r.Rule.Mode != ModeBeforeCommit {
			continue
		}
		m.before = append(m.before, r)
		if v := r.Rule.Velocity; v != nil {
			m.velocity = append(m.velocity, r)
			m.windowMax = max(m.windowMax, time.Duration(v.WindowSeconds)*time.Second)
		}
	}
}

// ringEntry is one or more postings of an account on one side: their count
// and sum, at the latest of their effective times (Unix nanoseconds).
type ringEntry struct {
	at    int64
	count uint32
	sum   Units
}

// postingRings are an account's recent postings, debits [0] and credits [1],
// in the order they were recorded, and per side the latest effective time
// of the postings dropped for their age (0: none), past which a window that
// reaches back is short of them.
type postingRings struct {
	sides   [2][]ringEntry
	horizon [2]int64
}

func sideIndex(s Side) int {
	if s == SideCredit {
		return 1
	}
	return 0
}

func (p *postingRings) clone() *postingRings {
	return &postingRings{sides: [2][]ringEntry{slices.Clone(p.sides[0]), slices.Clone(p.sides[1])}, horizon: p.horizon}
}

// add records a posting of amount at at on side, dropping what is older
// than windowMax before the newest entry and merging the oldest beyond
// VelocityRingMax.
func (p *postingRings) add(side Side, at int64, amount Units, windowMax time.Duration) {
	ring := append(p.sides[sideIndex(side)], ringEntry{at: at, count: 1, sum: amount})
	newest := at
	for _, e := range ring {
		newest = max(newest, e.at)
	}
	drop := 0
	for drop < len(ring) && ring[drop].at <= newest-int64(windowMax) {
		p.horizon[sideIndex(side)] = max(p.horizon[sideIndex(side)], ring[drop].at)
		drop++
	}
	ring = ring[drop:]
	for len(ring) > VelocityRingMax {
		a, b := ring[0], ring[1]
		ring[1] = ringEntry{at: max(a.at, b.at), count: a.count + b.count, sum: saturatingAdd(a.sum, b.sum)}
		ring = ring[1:]
	}
	if drop > 0 || cap(ring) > 2*VelocityRingMax {
		ring = slices.Clone(ring) // let the dropped front go
	}
	p.sides[sideIndex(side)] = ring
}

// maxUnits is the largest amount: a sum that would overflow is held there,
// which every limit is below.
func maxUnits() Units {
	u, _ := MustDecimal("99999999999999999999999999999999999999").Units(0)
	return u
}

// saturatingAdd is a+b, or maxUnits when that overflows: a velocity sum
// past every limit stays past it (CheckedAdd's zero would let it through).
func saturatingAdd(a, b Units) Units {
	if sum, ok := a.CheckedAdd(b); ok {
		return sum
	}
	return maxUnits()
}

// window returns the count and sum of the postings on side (zero: both)
// whose time is in (at−w, at], and whether postings dropped for their age
// may lie in it (short): only a window that reaches back behind the newest
// posting by more than the longest window and the clock skew allowed
// (EffectiveFutureMax) can be, a backdated transfer's.
func (p *postingRings) window(side Side, at int64, w time.Duration) (count uint64, sum Units, short bool) {
	for i, ring := range p.sides {
		if side != 0 && sideIndex(side) != i {
			continue
		}
		if h := p.horizon[i]; h != 0 && h > at-int64(w) {
			short = true
		}
		for _, e := range ring {
			if e.at > at-int64(w) && e.at <= at {
				count += uint64(e.count)
				sum = saturatingAdd(sum, e.sum)
			}
		}
	}
	return count, sum, short
}

// recordVelocity records the postings of a transfer or hold in the rings of
// the accounts a before-commit velocity rule watches.
func (s *State) recordVelocity(postings []Posting, effectiveAt time.Time) {
	m := &s.monitor
	if len(m.velocity) == 0 {
		return
	}
	at := effectiveAt.UnixNano()
	for i := range postings {
		p := &postings[i]
		for _, leg := range [2]struct {
			id   string
			side Side
		}{{p.Debit, SideDebit}, {p.Credit, SideCredit}} {
			a := s.accounts.Get(leg.id)
			if !s.velocityWatched(a) {
				continue
			}
			rings, had := m.rings[leg.id]
			switch {
			case !had:
				rings = &postingRings{}
				m.rings[leg.id] = rings
				s.undo(func() { delete(m.rings, leg.id) })
			case s.recording:
				old := rings.clone()
				s.undo(func() { *rings = *old })
			}
			// Kept EffectiveFutureMax longer than the longest window: a
			// transfer of now may follow one dated that far ahead, and its
			// window must find what came before it (not a horizon).
			rings.add(leg.side, at, p.Amount.Units, m.windowMax+s.policy.EffectiveFutureMax)
		}
	}
}

func (s *State) velocityWatched(a *Account) bool {
	for _, r := range s.monitor.velocity {
		if r.Rule.Watches(a.ID, a.Asset, a.Metadata()) {
			return true
		}
	}
	return false
}

// checkBeforeRules refuses a transfer or hold (its postings, at effectiveAt,
// moving the accounts by fx) that an enabled before-commit rule would fire
// on: the first such rule in id order.
//
// Errors: a *FieldError wrapping ErrRuleRejected.
func (s *State) checkBeforeRules(postings []Posting, effectiveAt time.Time, fx effects) error {
	for _, r := range s.monitor.before {
		var err error
		switch {
		case r.Rule.Threshold != nil:
			err = s.checkThreshold(r, postings)
		case r.Rule.Velocity != nil:
			err = s.checkVelocity(r, postings, effectiveAt)
		case r.Rule.BalanceCrossing != nil:
			err = s.checkCrossing(r, fx)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func rejected(field string, r *RuleVersion, format string, args ...any) error {
	return fieldErrf(field, ErrRuleRejected, "rule %s version %d: %s", r.Rule.ID, r.Version, fmt.Sprintf(format, args...))
}

// watchedLegs calls fn for each side of p on which side (zero: either) a
// watched account of r stands.
func (s *State) watchedLegs(r *Rule, p *Posting, side Side, fn func(account string, side Side) error) error {
	if p.Asset != r.Asset {
		return nil
	}
	if side != SideCredit {
		if a := s.accounts.Get(p.Debit); r.Watches(a.ID, a.Asset, a.Metadata()) {
			if err := fn(a.ID, SideDebit); err != nil {
				return err
			}
		}
	}
	if side != SideDebit {
		if a := s.accounts.Get(p.Credit); r.Watches(a.ID, a.Asset, a.Metadata()) {
			return fn(a.ID, SideCredit)
		}
	}
	return nil
}

func (s *State) checkThreshold(r *RuleVersion, postings []Posting) error {
	t := r.Rule.Threshold
	for i := range postings {
		p := &postings[i]
		if p.Asset != r.Rule.Asset || p.Amount.Units.Cmp(t.Amount.Units) <= 0 {
			continue
		}
		err := s.watchedLegs(&r.Rule, p, t.Side, func(account string, _ Side) error {
			return rejected(fmt.Sprintf("postings[%d].amount", i), r, "account %s: amount %s above threshold %s",
				account, p.Amount, t.Amount)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *State) checkVelocity(r *RuleVersion, postings []Posting, effectiveAt time.Time) error {
	v := r.Rule.Velocity
	w := time.Duration(v.WindowSeconds) * time.Second
	type own struct {
		count uint64
		sum   Units
	}
	mine := map[string]*own{}
	var order []string
	for i := range postings {
		err := s.watchedLegs(&r.Rule, &postings[i], v.Side, func(account string, _ Side) error {
			o, ok := mine[account]
			if !ok {
				o = &own{}
				mine[account] = o
				order = append(order, account)
			}
			o.count++
			o.sum = saturatingAdd(o.sum, postings[i].Amount.Units)
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, account := range order {
		o := mine[account]
		count, sum := o.count, o.sum
		if rings, ok := s.monitor.rings[account]; ok {
			c, u, short := rings.window(v.Side, effectiveAt.UnixNano(), w)
			if short {
				// Postings this window would count were let go: it cannot
				// be counted, and the rule errs on the side of refusing.
				return rejected("effective_at", r, "account %s: a window of %d s to %s reaches back past the postings "+
					"the ledger still holds for the rule", account, v.WindowSeconds, effectiveAt.UTC().Format(time.RFC3339Nano))
			}
			count += c
			sum = saturatingAdd(sum, u)
		}
		if v.MaxCount > 0 && count > uint64(v.MaxCount) {
			return rejected("postings", r, "account %s: %d postings in %d s, max_count %d", account, count, v.WindowSeconds, v.MaxCount)
		}
		if v.MaxSum != nil && sum.Cmp(v.MaxSum.Units) > 0 {
			return rejected("postings", r, "account %s: %s in %d s, max_sum %s", account, sum.Format(v.MaxSum.Scale),
				v.WindowSeconds, v.MaxSum)
		}
	}
	return nil
}

func (s *State) checkCrossing(r *RuleVersion, fx effects) error {
	b := r.Rule.BalanceCrossing
	for _, ef := range fx {
		a := ef.acc
		if !r.Rule.Watches(a.ID, a.Asset, a.Metadata()) {
			continue
		}
		next, _ := applied(a, ef.debitsPosted, ef.creditsPosted, ef.debitsPending, ef.creditsPending)
		before, after := a.Available(), next.Available()
		if Crosses(b, before, after) {
			return rejected("postings", r, "account %s: available %s would cross %s level %s", a.ID,
				after.Format(a.Scale), b.Crossing, b.Level)
		}
	}
	return nil
}

// Crosses reports whether a balance going from before to after crosses the
// rule's level in its direction: below, from at or above level to under it;
// above, from at or below level to over it.
func Crosses(b *BalanceCrossingRule, before, after Units) bool {
	if b.Crossing == CrossingBelow {
		return before.Cmp(b.Level.Units) >= 0 && after.Cmp(b.Level.Units) < 0
	}
	return before.Cmp(b.Level.Units) <= 0 && after.Cmp(b.Level.Units) > 0
}
