package domain

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Evaluator evaluates after-commit rules over a ledger's log, event by event
// in position order, and returns the alerts they raise: a function of the
// log alone, so a replay raises the same alerts with the same ids. The
// alerts projection and DryRunRule share it.
//
// Rules are those the log defines at each position (RuleDefined), or, for a
// dry run, one given rule in place of them all. It keeps, per account, the
// balances (for crossings), the last activity (for dormancy), and per rule
// that watches the account: the velocity window (a postingRings, bounded as
// the writer's), whether the balance is past a crossing's level, and the
// counterparties seen (at most CounterpartiesMax, from the rule's
// definition on). About 100 bytes an account, as the writer's state.
type Evaluator struct {
	ledger   string
	only     *RuleVersion
	rules    []*RuleVersion // after-commit, enabled, in id order
	byID     map[string]*RuleVersion
	assets   map[string]uint8
	accounts map[string]*evalAccount
	// ids holds the accounts' keys: a look-up compares bytes next to the
	// other keys, not the strings of the events that opened them.
	ids   idBuffer
	moves []Movement
	// moved is the account of each of moves (nil: not opened), found once
	// for the balances and the last activity.
	moved []*evalAccount
}

// CounterpartiesMax bounds the counterparties a new-counterparty rule
// remembers per account: beyond it the set starts over (a rule may then
// fire again for a counterparty seen long ago).
const CounterpartiesMax = 10_000

type evalAccount struct {
	id       string
	asset    string
	scale    uint8
	normal   Side
	metadata map[string]string
	balances Account
	last     int64 // effective time of the last posting, Unix ns; 0: none
	rules    map[string]*evalRuleState
}

type evalRuleState struct {
	rings postingRings
	// past says the balance is past a crossing's level, as of the rule's
	// version pastVersion: a new version (a level or a direction changed,
	// the rule disabled and enabled again) learns it anew from the next
	// movement's starting balance, as a new rule does.
	past, pastKnown bool
	pastVersion     uint32
	counterparties  map[string]struct{}
}

// Alert is what a rule that fired records.
type Alert struct {
	ID             string
	RuleID         string
	RuleVersion    uint32
	Position       uint64
	TransferID     string
	Account        string
	Counterparties []string
	Asset          string
	Figures        map[string]string
	Freeze         bool
	// HoldAccount is the rule's, when it holds the triggering amount
	// (figure "amount") towards it.
	HoldAccount string
	RecordedAt  time.Time
	EffectiveAt time.Time
}

// NewEvaluator returns an evaluator of ledger's log from its start: of the
// rules the log defines, or of only (its version 0) when only is not nil.
func NewEvaluator(ledger string, only *Rule) *Evaluator {
	ev := &Evaluator{ledger: ledger, byID: map[string]*RuleVersion{}, assets: map[string]uint8{}, accounts: map[string]*evalAccount{}}
	if only != nil {
		r := &RuleVersion{Rule: *only}
		r.Rule.Mode, r.Rule.Disabled = ModeAfterCommit, false
		ev.only, ev.rules = r, []*RuleVersion{r}
	}
	return ev
}

// HasRules reports whether any rule is in force.
func (ev *Evaluator) HasRules() bool { return len(ev.rules) > 0 }

// Apply folds the event at pos, recorded at recordedAt, and returns the
// alerts it raises, by rule id then account.
func (ev *Evaluator) Apply(pos uint64, recordedAt time.Time, e Event) []Alert {
	switch e := e.(type) {
	case AssetDefined:
		ev.assets[e.Code] = e.Scale
		return nil
	case AccountOpened:
		id := ev.ids.copy(e.ID)
		ev.accounts[id] = &evalAccount{id: id, asset: e.Asset, scale: ev.assets[e.Asset], normal: e.Normal,
			metadata: e.Metadata, balances: Account{Normal: e.Normal}}
		return nil
	case AccountMetadataSet:
		if a := ev.accounts[e.ID]; a != nil {
			a.metadata = e.Metadata
		}
		return nil
	case RuleDefined:
		ev.define(pos, &e)
		return nil
	}
	ev.moves = AppendMovements(ev.moves[:0], e)
	if len(ev.moves) == 0 {
		return nil
	}
	f := &firing{ev: ev, pos: pos, recordedAt: recordedAt}
	if len(ev.rules) > 0 {
		f.before = map[string]Units{}
		for i := range ev.moves {
			if a := ev.accounts[ev.moves[i].Account]; a != nil {
				if _, ok := f.before[a.id]; !ok {
					f.before[a.id] = a.balances.Available()
				}
			}
		}
	}
	ev.moved = ev.moved[:0]
	for i := range ev.moves {
		m := &ev.moves[i]
		a := ev.accounts[m.Account]
		ev.moved = append(ev.moved, a)
		if a != nil {
			dp, cp, dq, cq := m.Deltas()
			a.balances.DebitsPosted = a.balances.DebitsPosted.Add(dp)
			a.balances.CreditsPosted = a.balances.CreditsPosted.Add(cp)
			a.balances.DebitsPending = a.balances.DebitsPending.Add(dq)
			a.balances.CreditsPending = a.balances.CreditsPending.Add(cq)
		}
	}
	postings, at, id, counted := countedPostings(e)
	f.event = e
	f.transfer, f.at = eventID(e), at
	if f.transfer == "" && len(ev.moves) > 0 {
		f.transfer = ev.moves[0].Transfer
	}
	if counted {
		f.transfer = id
	}
	for _, r := range ev.rules {
		f.rule(r, postings, counted)
	}
	if counted {
		// A counted event's movements are its postings' two sides
		// (appendPosting): their accounts, found once above, are the
		// postings' debits and credits.
		for _, a := range ev.moved {
			if a != nil {
				a.last = max(a.last, at.UnixNano())
			}
		}
	}
	return f.alerts
}

// holdRule evaluates a threshold rule with the hold action on the money
// that arrived: a transfer's postings and what a post of a hold posts, not
// a hold (nothing has come in yet: the rule's hold would take money the
// account does not have, or hold what may never come).
func (f *firing) holdRule(r *RuleVersion) {
	arrived := arrivedPostings(f.event)
	if len(arrived) > 0 && f.at.IsZero() {
		// A post's alert takes its effective time, as a transfer's does
		// (other rules' alerts at a post keep none, as before).
		if h, ok := HeaderOf(f.event); ok {
			at := f.at
			f.at = h.EffectiveAt
			defer func() { f.at = at }()
		}
	}
	t := r.Rule.Threshold
	for i := range arrived {
		p := &arrived[i]
		a := f.ev.accounts[p.Credit]
		if p.Asset != r.Rule.Asset || a == nil || !r.Rule.Watches(a.id, a.asset, a.metadata) || p.Amount.Units.Cmp(t.Amount.Units) <= 0 {
			continue
		}
		f.fire(r, a, []string{p.Debit}, map[string]string{"amount": p.Amount.String(), "threshold": t.Amount.String(),
			"hold": heldAmount(arrived, r, a).Format(a.scale)})
	}
}

// arrivedPostings are the postings whose money arrived with e: a transfer's,
// and what a post of a hold posts, unless the hold is a rule's (its post
// moves what was held towards the hold account: a hold rule watching that
// account would hold it again).
func arrivedPostings(e Event) []Posting {
	switch e := e.(type) {
	case TransferCommitted:
		return e.Postings
	case PendingPosted:
		if strings.HasPrefix(e.PendingID, AlertHoldIDPrefix) {
			return nil
		}
		var out []Posting
		for i := range e.Postings {
			if hp := &e.Postings[i]; !hp.Amount.Units.IsZero() {
				out = append(out, hp.Posted())
			}
		}
		return out
	}
	return nil
}

// heldAmount is what hold rule r holds of account a on an event's
// postings: every one crediting it above the threshold, in the rule's
// asset. The writer refused postings to one account over DigitsMax: the sum
// fits.
func heldAmount(postings []Posting, r *RuleVersion, a *evalAccount) Units {
	var sum Units
	for i := range postings {
		p := &postings[i]
		if p.Credit == a.id && p.Asset == r.Rule.Asset && p.Amount.Units.Cmp(r.Rule.Threshold.Amount.Units) > 0 {
			sum = sum.Add(p.Amount.Units)
		}
	}
	return sum
}

// countedPostings are the postings rules count (a transfer, a hold), at the
// event's effective time.
func countedPostings(e Event) ([]Posting, time.Time, string, bool) {
	switch e := e.(type) {
	case TransferCommitted:
		return e.Postings, e.EffectiveAt, e.ID, true
	case TransferPending:
		// A rule's own hold is not counted (CreateTransfer.Alert): a hold
		// rule would fire on its holds, each placing another.
		return e.Postings, e.EffectiveAt, e.ID, e.Alert == ""
	}
	return nil, time.Time{}, "", false
}

func (ev *Evaluator) define(pos uint64, e *RuleDefined) {
	if ev.only != nil {
		return
	}
	ev.byID[e.Rule.ID] = &RuleVersion{Rule: e.Rule, Version: e.Version, Position: pos}
	ev.rules = ev.rules[:0]
	for _, id := range slices.Sorted(maps.Keys(ev.byID)) {
		if r := ev.byID[id]; !r.Rule.Disabled && r.Rule.Mode == ModeAfterCommit {
			ev.rules = append(ev.rules, r)
		}
	}
}

// firing collects one event's alerts.
type firing struct {
	ev         *Evaluator
	event      Event
	pos        uint64
	recordedAt time.Time
	at         time.Time
	transfer   string
	before     map[string]Units
	alerts     []Alert
}

func (f *firing) fire(r *RuleVersion, a *evalAccount, counterparties []string, figures map[string]string) {
	id := fmt.Sprintf("%s:%d:%s:%s", f.ev.ledger, f.pos, r.Rule.ID, a.id)
	for i := range f.alerts {
		if f.alerts[i].ID == id {
			return // once per rule and account at a position
		}
	}
	al := Alert{ID: id, RuleID: r.Rule.ID, RuleVersion: r.Version, Position: f.pos, TransferID: f.transfer, Account: a.id,
		Counterparties: counterparties, Asset: a.asset, Figures: figures, Freeze: r.Rule.Freezes(), RecordedAt: f.recordedAt}
	if r.Rule.Holds() {
		al.HoldAccount = r.Rule.HoldAccount
	}
	if !f.at.IsZero() {
		al.EffectiveAt = f.at
	}
	f.alerts = append(f.alerts, al)
}

func (a *evalAccount) state(rule string) *evalRuleState {
	if a.rules == nil {
		a.rules = map[string]*evalRuleState{}
	}
	st := a.rules[rule]
	if st == nil {
		st = &evalRuleState{}
		a.rules[rule] = st
	}
	return st
}

// rule evaluates r on the event.
func (f *firing) rule(r *RuleVersion, postings []Posting, counted bool) {
	ev := f.ev
	if b := r.Rule.BalanceCrossing; b != nil {
		for _, id := range slices.Sorted(maps.Keys(f.before)) {
			a := ev.accounts[id]
			if !r.Rule.Watches(a.id, a.asset, a.metadata) {
				continue
			}
			st := a.state(r.Rule.ID)
			if st.pastVersion != r.Version {
				st.pastKnown, st.pastVersion = false, r.Version
			}
			past := func(u Units) bool {
				if b.Crossing == CrossingBelow {
					return u.Cmp(b.Level.Units) < 0
				}
				return u.Cmp(b.Level.Units) > 0
			}
			if !st.pastKnown {
				st.past, st.pastKnown = past(f.before[id]), true
			}
			after := a.balances.Available()
			now := past(after)
			if now && !st.past {
				f.fire(r, a, nil, map[string]string{"available": after.Format(a.scale), "level": b.Level.String(),
					"crossing": string(b.Crossing)})
			}
			st.past = now
		}
		return
	}
	if r.Rule.Holds() {
		f.holdRule(r)
		return
	}
	if !counted {
		return
	}
	at := f.at.UnixNano()
	for i := range postings {
		p := &postings[i]
		if p.Asset != r.Rule.Asset {
			continue
		}
		for _, leg := range [2]struct {
			acc, other string
			side       Side
		}{{p.Debit, p.Credit, SideDebit}, {p.Credit, p.Debit, SideCredit}} {
			a := ev.accounts[leg.acc]
			if a == nil || !r.Rule.Watches(a.id, a.asset, a.metadata) {
				continue
			}
			switch {
			case r.Rule.Threshold != nil:
				t := r.Rule.Threshold
				if (t.Side == 0 || t.Side == leg.side) && p.Amount.Units.Cmp(t.Amount.Units) > 0 {
					f.fire(r, a, []string{leg.other}, map[string]string{"amount": p.Amount.String(), "threshold": t.Amount.String()})
				}
			case r.Rule.Velocity != nil:
				v := r.Rule.Velocity
				if v.Side != 0 && v.Side != leg.side {
					continue
				}
				w := time.Duration(v.WindowSeconds) * time.Second
				st := a.state(r.Rule.ID)
				st.rings.add(leg.side, at, p.Amount.Units, w)
				// A backdated transfer's window may be short of postings let
				// go (window): it counts what the rings hold.
				count, sum, _ := st.rings.window(v.Side, at, w)
				if (v.MaxCount > 0 && count > uint64(v.MaxCount)) || (v.MaxSum != nil && sum.Cmp(v.MaxSum.Units) > 0) {
					f.fire(r, a, []string{leg.other}, map[string]string{"count": strconv.FormatUint(count, 10),
						"sum": sum.Format(a.scale), "window_seconds": strconv.FormatUint(uint64(v.WindowSeconds), 10)})
				}
			case r.Rule.NewCounterparty != nil:
				st := a.state(r.Rule.ID)
				if _, seen := st.counterparties[leg.other]; seen {
					continue
				}
				if st.counterparties == nil || len(st.counterparties) >= CounterpartiesMax {
					st.counterparties = map[string]struct{}{}
				}
				st.counterparties[leg.other] = struct{}{}
				f.fire(r, a, []string{leg.other}, map[string]string{"counterparty": leg.other})
			case r.Rule.DormantReactivated != nil:
				d := int64(r.Rule.DormantReactivated.DormantSeconds) * int64(time.Second)
				if a.last != 0 && at-a.last >= d {
					f.fire(r, a, []string{leg.other}, map[string]string{"idle_seconds": strconv.FormatInt((at-a.last)/int64(time.Second), 10),
						"dormant_seconds": strconv.FormatUint(r.Rule.DormantReactivated.DormantSeconds, 10)})
				}
			}
		}
	}
}
