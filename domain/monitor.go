package domain

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Monitoring rules. A rule is defined per ledger, and each definition or
// change of it is a RuleDefined event with the next version, so what a rule
// decided replays like a transfer. Rules look at the postings of transfers
// and holds (TransferCommitted, TransferPending: where money starts to move)
// of the accounts they watch, and balance crossings at every movement.
//
// A before-commit rule (threshold, velocity, balance crossing) is evaluated
// here, in Decide, and refuses a transfer or hold with RULE_REJECTED; an
// after-commit rule is evaluated by an Evaluator (monitor_eval.go) folding
// the log, which raises alerts.

// TypeRuleDefined is the type of a RuleDefined event in the log.
const TypeRuleDefined = "RuleDefined"

// Limits of rules: wire contracts, documented in the proto.
const (
	// RulesMax bounds a ledger's rules: each is held by the writer and
	// considered for every transfer.
	RulesMax = 1000
	// RulesPerRequestMax bounds the rules of one DefineRules.
	RulesPerRequestMax = 100
	// RuleDescriptionLenMax bounds a rule's description, in bytes.
	RuleDescriptionLenMax = 1024
	// RuleMetadataPairsMax bounds a rule's account_metadata pairs.
	RuleMetadataPairsMax = 8
	// VelocityWindowMin and VelocityWindowMax bound a velocity window.
	VelocityWindowMin = time.Second
	VelocityWindowMax = 31 * 24 * time.Hour
	// DormantMin and DormantMax bound a dormancy.
	DormantMin = time.Hour
	DormantMax = 10 * 365 * 24 * time.Hour
)

// ErrRuleRejected refuses a transfer a before-commit rule would fire on.
var ErrRuleRejected error = NewOutcome("RULE_REJECTED", "rejected by a monitoring rule")

// RuleMode is when a rule is evaluated.
type RuleMode string

const (
	ModeAfterCommit  RuleMode = "after_commit"
	ModeBeforeCommit RuleMode = "before_commit"
)

// RuleAction is what a rule does when it fires, beside the alert.
type RuleAction string

const (
	// ActionFreeze freezes the watched account that made the rule fire.
	ActionFreeze RuleAction = "freeze"
	// ActionHold places a hold of the triggering amount from the watched
	// account to the rule's HoldAccount: threshold rules on credits only,
	// the amount of every posting crediting the account above the
	// threshold (the alert's figure "hold").
	ActionHold RuleAction = "hold"
)

// Crossing is the direction a balance crossing rule watches.
type Crossing string

const (
	CrossingBelow Crossing = "below"
	CrossingAbove Crossing = "above"
)

// Rule is a monitoring rule as the log records it: amounts at the asset's
// scale. Exactly one kind is set.
type Rule struct {
	ID                 string                  `json:"id"`
	Description        string                  `json:"description,omitempty"`
	Mode               RuleMode                `json:"mode"`
	Disabled           bool                    `json:"disabled,omitempty"`
	AccountPattern     string                  `json:"account_pattern,omitempty"`
	AccountMetadata    map[string]string       `json:"account_metadata,omitempty"`
	Asset              string                  `json:"asset"`
	Threshold          *ThresholdRule          `json:"threshold,omitempty"`
	Velocity           *VelocityRule           `json:"velocity,omitempty"`
	BalanceCrossing    *BalanceCrossingRule    `json:"balance_crossing,omitempty"`
	NewCounterparty    *NewCounterpartyRule    `json:"new_counterparty,omitempty"`
	DormantReactivated *DormantReactivatedRule `json:"dormant_reactivated,omitempty"`
	Actions            []RuleAction            `json:"actions,omitempty"`
	// HoldAccount is where the hold action holds the amount towards: an
	// open account in Asset; set with ActionHold only.
	HoldAccount string `json:"hold_account,omitempty"`
}

// ThresholdRule fires on a posting above Amount with a watched account on
// Side (zero: either side).
type ThresholdRule struct {
	Amount Amount `json:"amount"`
	Side   Side   `json:"side,omitempty"`
}

// VelocityRule fires when a watched account's postings on Side (zero: both)
// within the window ending at a transfer's effective time number more than
// MaxCount or sum more than MaxSum (zero and nil: no such limit).
type VelocityRule struct {
	Side          Side    `json:"side,omitempty"`
	WindowSeconds uint32  `json:"window_seconds"`
	MaxCount      uint32  `json:"max_count,omitempty"`
	MaxSum        *Amount `json:"max_sum,omitempty"`
}

// BalanceCrossingRule fires once when a watched account's available balance
// crosses Level, and again only once it has come back (re-armed).
type BalanceCrossingRule struct {
	Level    Amount   `json:"level"`
	Crossing Crossing `json:"crossing"`
}

// NewCounterpartyRule fires on a posting between a watched account and an
// account it never had one with before.
type NewCounterpartyRule struct{}

// DormantReactivatedRule fires on a posting of a watched account after none
// for at least DormantSeconds (by effective time).
type DormantReactivatedRule struct {
	DormantSeconds uint64 `json:"dormant_seconds"`
}

// RuleDefined defines a rule, or changes it: Version is 1 for its first
// definition, one more for each change.
type RuleDefined struct {
	Version uint32 `json:"version"`
	Rule    Rule   `json:"rule"`
}

func (RuleDefined) EventType() string { return TypeRuleDefined }

// RuleVersion is a rule as in force: its definition, version and position.
type RuleVersion struct {
	Rule     Rule
	Version  uint32
	Position uint64
}

// kind names the rule's kind, "" if none or several are set.
func (r *Rule) kind() string {
	var kinds []string
	if r.Threshold != nil {
		kinds = append(kinds, "threshold")
	}
	if r.Velocity != nil {
		kinds = append(kinds, "velocity")
	}
	if r.BalanceCrossing != nil {
		kinds = append(kinds, "balance_crossing")
	}
	if r.NewCounterparty != nil {
		kinds = append(kinds, "new_counterparty")
	}
	if r.DormantReactivated != nil {
		kinds = append(kinds, "dormant_reactivated")
	}
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0]
}

// Watches reports whether the rule watches account a: in its asset, matching
// its pattern, holding every metadata pair. A disabled rule watches nothing.
func (r *Rule) Watches(id, asset string, metadata map[string]string) bool {
	if r.Disabled || asset != r.Asset {
		return false
	}
	if r.AccountPattern != "" && !MatchAccountPattern(r.AccountPattern, id) {
		return false
	}
	for k, v := range r.AccountMetadata {
		if got, ok := metadata[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Freezes reports whether the rule's actions include a freeze.
func (r *Rule) Freezes() bool { return slices.Contains(r.Actions, ActionFreeze) }

// Holds reports whether the rule's actions include a hold.
func (r *Rule) Holds() bool { return slices.Contains(r.Actions, ActionHold) }

// check checks a rule's fields that need no state: what Validate checks of
// a command, and that its amounts are of one scale. Field names are the
// wire's.
func (r *Rule) check() error {
	if err := checkID("id", r.ID); err != nil {
		return err
	}
	if n := len(r.Description); n > RuleDescriptionLenMax || !validText(r.Description) {
		return fieldErrf("description", ErrInvalidField, "%d bytes of UTF-8 without NUL, at most %d", n, RuleDescriptionLenMax)
	}
	if r.Mode != ModeAfterCommit && r.Mode != ModeBeforeCommit {
		return fieldErrf("mode", ErrInvalidField, "%q is not a mode", r.Mode)
	}
	if r.AccountPattern != "" {
		if err := CheckAccountPattern(r.AccountPattern); err != nil {
			return fieldErrf("account_pattern", ErrInvalidField, "%v", err)
		}
	}
	if n := len(r.AccountMetadata); n > RuleMetadataPairsMax {
		return fieldErrf("account_metadata", ErrInvalidField, "%d pairs, at most %d", n, RuleMetadataPairsMax)
	}
	if err := checkMetadata("account_metadata", r.AccountMetadata); err != nil {
		return err
	}
	if err := checkAssetCode("asset", r.Asset); err != nil {
		return err
	}
	kind := r.kind()
	if kind == "" {
		return fieldErrf("kind", ErrInvalidField, "exactly one of threshold, velocity, balance_crossing, new_counterparty, dormant_reactivated")
	}
	if r.Mode == ModeBeforeCommit && kind != "threshold" && kind != "velocity" && kind != "balance_crossing" {
		return fieldErrf("mode", ErrInvalidField, "a %s rule runs after commit only: the writer evaluates threshold, velocity and balance crossing", kind)
	}
	for i, a := range r.Actions {
		field := fmt.Sprintf("actions[%d]", i)
		switch {
		case a != ActionFreeze && a != ActionHold:
			return fieldErrf(field, ErrInvalidField, "%q is not an action", a)
		case slices.Index(r.Actions, a) != i:
			return fieldErrf(field, ErrInvalidField, "%q twice", a)
		case r.Mode == ModeBeforeCommit:
			return fieldErrf(field, ErrInvalidField, "a before-commit rule refuses the transfer: it freezes or holds nothing")
		case a == ActionHold && (kind != "threshold" || r.Threshold.Side != SideCredit):
			return fieldErrf(field, ErrInvalidField, "only a threshold rule on credits holds: the amount came in, and is held where it came")
		}
	}
	switch {
	case r.Holds():
		if err := checkID("hold_account", r.HoldAccount); err != nil {
			return err
		}
	case r.HoldAccount != "":
		return fieldErrf("hold_account", ErrInvalidField, "only a rule with the hold action holds towards an account")
	}
	switch {
	case r.Threshold != nil:
		if r.Threshold.Amount.Units.Sign() < 0 {
			return fieldErrf("threshold.amount", ErrInvalidAmount, "must not be negative")
		}
		if !validSide(r.Threshold.Side) {
			return fieldErrf("threshold.side", ErrInvalidField, "unknown side")
		}
	case r.Velocity != nil:
		v := r.Velocity
		if w := time.Duration(v.WindowSeconds) * time.Second; w < VelocityWindowMin || w > VelocityWindowMax {
			return fieldErrf("velocity.window_seconds", ErrInvalidField, "%d s, want %d..%d", v.WindowSeconds,
				int(VelocityWindowMin.Seconds()), int(VelocityWindowMax.Seconds()))
		}
		if v.MaxCount == 0 && v.MaxSum == nil {
			return fieldErrf("velocity.max_count", ErrInvalidField, "max_count or max_sum, or both")
		}
		if v.MaxSum != nil && v.MaxSum.Units.Sign() <= 0 {
			return fieldErrf("velocity.max_sum", ErrInvalidAmount, "must be positive")
		}
		if !validSide(v.Side) {
			return fieldErrf("velocity.side", ErrInvalidField, "unknown side")
		}
	case r.BalanceCrossing != nil:
		if c := r.BalanceCrossing.Crossing; c != CrossingBelow && c != CrossingAbove {
			return fieldErrf("balance_crossing.crossing", ErrInvalidField, "below or above")
		}
	case r.DormantReactivated != nil:
		if d := time.Duration(r.DormantReactivated.DormantSeconds) * time.Second; r.DormantReactivated.DormantSeconds > uint64(DormantMax/time.Second) || d < DormantMin {
			return fieldErrf("dormant_reactivated.dormant_seconds", ErrInvalidField, "%d s, want %d..%d",
				r.DormantReactivated.DormantSeconds, int(DormantMin.Seconds()), int64(DormantMax.Seconds()))
		}
	}
	return nil
}

func validSide(s Side) bool { return s == 0 || s == SideDebit || s == SideCredit }

// scales checks that every amount of the rule is at scale.
func (r *Rule) scales(scale uint8) error {
	check := func(field string, a *Amount) error {
		if a != nil && a.Scale != scale {
			return fieldErrf(field, ErrInvalidAmount, "%s is not at scale %d", a, scale)
		}
		return nil
	}
	switch {
	case r.Threshold != nil:
		return check("threshold.amount", &r.Threshold.Amount)
	case r.Velocity != nil:
		return check("velocity.max_sum", r.Velocity.MaxSum)
	case r.BalanceCrossing != nil:
		return check("balance_crossing.level", &r.BalanceCrossing.Level)
	}
	return nil
}

// equal reports whether two definitions are the same rule.
func (r *Rule) equal(o *Rule) bool {
	a, _ := json.Marshal(r)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}

// DefineRule defines a rule or changes it. Its amounts are decimals, set at
// the asset's scale by Decide: ThresholdAmount, MaxSum (velocity, "" for
// none) and Level (balance crossing); the kinds' amounts in Rule are ignored.
type DefineRule struct {
	Rule                           Rule
	ThresholdAmount, MaxSum, Level string

	threshold, maxSum, level Decimal
	validated                bool
}

// CommandID is the rule's id.
func (c *DefineRule) CommandID() string { return c.Rule.ID }

func (c *DefineRule) Validate() error {
	if c.Rule.Mode == "" {
		c.Rule.Mode = ModeAfterCommit
	}
	if len(c.Rule.AccountMetadata) == 0 {
		c.Rule.AccountMetadata = nil
	}
	if len(c.Rule.Actions) == 0 {
		c.Rule.Actions = nil
	}
	parse := func(field, s string, into *Decimal) error {
		d, err := ParseDecimal(s)
		if err != nil {
			return fieldErr(field, err)
		}
		*into = d
		return nil
	}
	var err error
	switch {
	case c.Rule.Threshold != nil:
		err = parse("threshold.amount", c.ThresholdAmount, &c.threshold)
	case c.Rule.Velocity != nil && c.MaxSum != "":
		err = parse("velocity.max_sum", c.MaxSum, &c.maxSum)
	case c.Rule.BalanceCrossing != nil:
		err = parse("balance_crossing.level", c.Level, &c.level)
	}
	if err != nil {
		return err
	}
	// The amounts' signs are checked here, their scale by Decide.
	probe := c.Rule
	if probe.Threshold != nil {
		t := *probe.Threshold
		t.Amount = Amount{Units: c.threshold.coef}
		probe.Threshold = &t
	}
	if probe.Velocity != nil {
		v := *probe.Velocity
		v.MaxSum = nil
		if c.MaxSum != "" {
			v.MaxSum = &Amount{Units: c.maxSum.coef}
		}
		probe.Velocity = &v
	}
	if err := probe.check(); err != nil {
		return err
	}
	c.validated = true
	return nil
}

// resolved returns the rule with its amounts at scale.
func (c *DefineRule) resolved(scale uint8) (Rule, error) {
	r := c.Rule
	at := func(field string, d Decimal) (Amount, error) {
		u, err := d.Units(scale)
		if err != nil {
			return Amount{}, fieldErr(field, err)
		}
		return Amount{Units: u, Scale: scale}, nil
	}
	var err error
	switch {
	case r.Threshold != nil:
		t := *r.Threshold
		t.Amount, err = at("threshold.amount", c.threshold)
		r.Threshold = &t
	case r.Velocity != nil:
		v := *r.Velocity
		v.MaxSum = nil
		if c.MaxSum != "" {
			var a Amount
			a, err = at("velocity.max_sum", c.maxSum)
			v.MaxSum = &a
		}
		r.Velocity = &v
	case r.BalanceCrossing != nil:
		b := *r.BalanceCrossing
		b.Level, err = at("balance_crossing.level", c.level)
		r.BalanceCrossing = &b
	}
	return r, err
}

// Rule returns the rule with that id as in force.
func (s *State) Rule(id string) (RuleVersion, bool) {
	r, ok := s.monitor.rules[id]
	if !ok {
		return RuleVersion{}, false
	}
	return *r, true
}

// Rules returns every rule in force, in id order.
func (s *State) Rules() []RuleVersion {
	out := make([]RuleVersion, 0, len(s.monitor.rules))
	for _, id := range slices.Sorted(maps.Keys(s.monitor.rules)) {
		out = append(out, *s.monitor.rules[id])
	}
	return out
}

// decideRule defines or changes a rule: EXISTS when the definition is the
// one in force.
func decideRule(s *State, c *DefineRule) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated DefineRule")
	}
	asset, ok := s.assets[c.Rule.Asset]
	if !ok {
		return nil, fieldErr("asset", ErrAssetNotFound)
	}
	r, err := c.resolved(asset.Scale)
	if err != nil {
		return nil, err
	}
	prior, exists := s.monitor.rules[r.ID]
	if exists && prior.Rule.equal(&r) {
		return nil, &ExistsError{Position: prior.Position}
	}
	// An alert's id joins the rule's id and the account's with ':' (both
	// may hold it): rule "a" on account "b:c" and rule "a:b" on account "c"
	// would raise one id. New rules may not hold it; a rule a log already
	// defines may still change.
	if !exists && strings.Contains(r.ID, ":") {
		return nil, fieldErrf("id", ErrInvalidField, "%q holds ':', which alert ids use to join a rule's id to an account's", r.ID)
	}
	if !exists && len(s.monitor.rules) >= RulesMax {
		return nil, fieldErrf("id", ErrInvalidField, "the ledger has %d rules, at most %d", len(s.monitor.rules), RulesMax)
	}
	if r.Holds() && !r.Disabled { // a disabled rule holds nothing: its account may be closed
		a, err := openAccount(s, r.HoldAccount)
		if err != nil {
			return nil, fieldErr("hold_account", err)
		}
		if a.Asset != r.Asset {
			return nil, fieldErrf("hold_account", ErrInvalidField, "account %s is in %s, the rule in %s", a.ID, a.Asset, r.Asset)
		}
	}
	version := uint32(1)
	if exists {
		version = prior.Version + 1
	}
	return RuleDefined{Version: version, Rule: r}, nil
}

// DryRule returns the rule c defines as the ledger of s would record it,
// amounts at its asset's scale, without deciding it: what a dry run
// evaluates. c must be validated.
//
// Errors: ErrAssetNotFound (field asset); an amount finer than the asset's
// scale (its field).
func DryRule(s *State, c *DefineRule) (Rule, error) {
	if !c.validated {
		panic("domain: DryRule of an unvalidated DefineRule")
	}
	asset, ok := s.assets[c.Rule.Asset]
	if !ok {
		return Rule{}, fieldErr("asset", ErrAssetNotFound)
	}
	return c.resolved(asset.Scale)
}

// evolveRule applies a definition, asserting what Decide checked.
func (s *State) evolveRule(pos uint64, e *RuleDefined) {
	if err := e.Rule.check(); err != nil {
		panic(fmt.Sprintf("domain: rule %s at %d: %v", e.Rule.ID, pos, err))
	}
	asset, ok := s.assets[e.Rule.Asset]
	if !ok {
		panic(fmt.Sprintf("domain: rule %s at %d in undefined asset %s", e.Rule.ID, pos, e.Rule.Asset))
	}
	if err := e.Rule.scales(asset.Scale); err != nil {
		panic(fmt.Sprintf("domain: rule %s at %d: %v", e.Rule.ID, pos, err))
	}
	prior, exists := s.monitor.rules[e.Rule.ID]
	want := uint32(1)
	if exists {
		want = prior.Version + 1
	}
	if e.Version != want {
		panic(fmt.Sprintf("domain: rule %s at %d has version %d, want %d", e.Rule.ID, pos, e.Version, want))
	}
	if !exists && len(s.monitor.rules) >= RulesMax {
		panic(fmt.Sprintf("domain: rule %s at %d: more than %d rules", e.Rule.ID, pos, RulesMax))
	}
	s.monitor.rules[e.Rule.ID] = &RuleVersion{Rule: e.Rule, Version: e.Version, Position: pos}
	s.monitor.reindex()
	if e.Rule.Holds() {
		holds := s.monitor.holds[e.Rule.ID]
		s.monitor.holds[e.Rule.ID] = append(holds, ruleHold{version: e.Version, account: e.Rule.HoldAccount})
		s.undo(func() {
			if len(holds) == 0 {
				delete(s.monitor.holds, e.Rule.ID)
			} else {
				s.monitor.holds[e.Rule.ID] = holds
			}
		})
	}
	s.undo(func() {
		if exists {
			s.monitor.rules[e.Rule.ID] = prior
		} else {
			delete(s.monitor.rules, e.Rule.ID)
		}
		s.monitor.reindex()
	})
}
