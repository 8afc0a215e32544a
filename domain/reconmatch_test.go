package domain_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/domain"
)

// reconLine and reconMovement are matcher items of cents on a day (days since 1970).
func reconLine(id string, pos uint64, cents int64, day int32, ref string) *domain.ReconItem {
	return &domain.ReconItem{Side: domain.ReconLine, Source: "bank", ExternalID: id, Position: pos,
		Amount: domain.UnitsFromInt64(cents), Day: day, Reference: ref}
}

func reconMovement(id string, pos uint64, cents int64, day int32, ref string) *domain.ReconItem {
	return &domain.ReconItem{Side: domain.ReconMovement, TransferID: id, Position: pos,
		Amount: domain.UnitsFromInt64(cents), Day: day, Reference: ref}
}

// matched lists each item's match id, by key.
func matched(m *domain.ReconMatcher) map[string]string {
	out := map[string]string{}
	for k, it := range m.Items {
		out[k.A+"/"+k.B] = it.MatchID
	}
	return out
}

// The default rules, in order: a reference and the amount; the amount on
// the nearest day (the oldest among equals); a split of one into parts.
func TestReconMatcherDefaultRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		items []*domain.ReconItem
		want  map[string]string
	}{
		{"reference and amount", []*domain.ReconItem{
			reconMovement("t1", 1, 1000, 100, "inv-1"), reconMovement("t2", 2, 1000, 100, ""), reconLine("l1", 3, 1000, 105, "inv-1"),
		}, map[string]string{"t1/": "#3.0", "t2/": "", "bank/l1": "#3.0"}},
		{"nearest day, then the oldest", []*domain.ReconItem{
			reconMovement("t1", 1, 500, 99, ""), reconMovement("t2", 2, 500, 101, ""), reconMovement("t3", 3, 500, 100, ""),
			reconLine("l1", 4, 500, 100, ""), reconLine("l2", 5, 500, 100, ""),
		}, map[string]string{"t1/": "#5.0", "t2/": "", "t3/": "#4.0", "bank/l1": "#4.0", "bank/l2": "#5.0"}},
		{"outside the window", []*domain.ReconItem{
			reconMovement("t1", 1, 500, 90, ""), reconLine("l1", 2, 500, 100, ""),
		}, map[string]string{"t1/": "", "bank/l1": ""}},
		{"a split", []*domain.ReconItem{
			reconMovement("t1", 1, 300, 100, ""), reconMovement("t2", 2, 700, 101, ""), reconLine("l1", 3, 1000, 100, ""),
		}, map[string]string{"t1/": "#3.0", "t2/": "#3.0", "bank/l1": "#3.0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := domain.NewReconMatcher()
			for _, it := range c.items {
				m.Arrive(it, it.Position, nil)
			}
			if diff := cmp.Diff(c.want, matched(m)); diff != "" {
				t.Errorf("matches (-want +got):\n%s", diff)
			}
			if len(m.Added) != len(c.items) {
				t.Errorf("%d added, want %d", len(m.Added), len(c.items))
			}
		})
	}
}

// A dissolved match reopens its items unless they are manual-only from now
// on; Settle keeps the open items only.
func TestReconMatcherDissolveAndSettle(t *testing.T) {
	t.Parallel()
	m := domain.NewReconMatcher()
	m.Arrive(reconMovement("t1", 1, 1000, 100, ""), 1, nil)
	m.Arrive(reconLine("l1", 2, 1000, 100, ""), 2, nil)
	match := m.Matches["#2.0"]
	if match == nil || len(match.Items) != 2 || !match.Difference().IsZero() {
		t.Fatalf("match #2.0 = %+v, want t1 and l1, no difference", match)
	}
	m.Dissolve(match, false)
	for _, it := range match.Items {
		if !it.Open() || !it.Changed {
			t.Errorf("%+v after Dissolve: want open and changed", it)
		}
	}
	// Reopened, they match again, the line with a new arrival.
	m.Arrive(reconLine("l2", 3, 1000, 100, ""), 3, nil)
	if got := matched(m); got["t1/"] != "#3.0" || got["bank/l1"] != "" {
		t.Errorf("after l2: %v, want t1 with l2 (#3.0), l1 open", got)
	}
	m.Settle()
	if len(m.Items) != 1 || m.Items[domain.ReconKey{Side: domain.ReconLine, A: "bank", B: "l1"}] == nil || len(m.Matches) != 0 || m.Added != nil {
		t.Errorf("after Settle: %d items, %d matches, %d added; want l1 only", len(m.Items), len(m.Matches), len(m.Added))
	}
}

// TestReconToleranceKeepsTheSign: a tolerance pairs amounts that differ a
// little, never money in with money out: a fee of -0.02 is not the
// interest of +0.02, within a tolerance of 0.05 by amount and date or by
// reference; -0.03 is, to -0.02's fee.
func TestReconToleranceKeepsTheSign(t *testing.T) {
	t.Parallel()
	tol := domain.Amount{Units: domain.UnitsFromInt64(5), Scale: 2}
	for _, kind := range []string{domain.RuleAmountDate, domain.RuleReference} {
		rules := []domain.MatchingRule{{Kind: kind, DateWindowDays: 2, AmountTolerance: &tol}}
		m := domain.NewReconMatcher()
		m.Arrive(reconMovement("interest", 1, 2, 100, "r1"), 1, rules)
		fee := reconLine("fee", 2, -2, 100, "r1")
		m.Arrive(fee, 2, rules)
		if fee.MatchID != "" {
			t.Errorf("%s: the fee (-0.02) matched the interest (+0.02): %s", kind, fee.MatchID)
		}
		charge := reconMovement("charge", 3, -3, 100, "r1")
		m.Arrive(charge, 3, rules)
		if fee.MatchID == "" || fee.MatchID != charge.MatchID {
			t.Errorf("%s: the fee (-0.02) and the charge (-0.03) unmatched within 0.05: %q, %q", kind, fee.MatchID, charge.MatchID)
		}
	}
}

// TestReconClosestIndependentOfDeadEntries: one open set, two cache
// histories: a matcher whose day list still holds dead entries (matched
// since, not yet compacted) and one reloaded with the open items only make
// the same match. amount_date chose where to look by the lists' lengths,
// dead entries included, so a rebuild and the live projection could differ.
func TestReconClosestIndependentOfDeadEntries(t *testing.T) {
	t.Parallel()
	rules := []domain.MatchingRule{{Kind: domain.RuleAmountDate, DateWindowDays: 3}}
	build := func(dead bool) *domain.ReconItem {
		m := domain.NewReconMatcher()
		for i := range 4096 { // old open movements of a recurring amount
			m.Track(reconMovement(fmt.Sprintf("old%d", i), uint64(1+i), 100, 0, ""))
		}
		if dead { // movements of the line's day, matched since: dead entries there
			var group []*domain.ReconItem
			for i := range 4200 {
				it := reconMovement(fmt.Sprintf("m%d", i), uint64(10000+i), 7, 1000, "")
				m.Track(it)
				group = append(group, it)
			}
			m.Match(15000, domain.RuleSplit, "", group)
		}
		m.Track(reconMovement("today", 20000, 100, 1000, ""))
		line := reconLine("l1", 30000, 100, 1000, "")
		m.Arrive(line, 30000, rules)
		return line
	}
	reloaded, cached := build(false), build(true)
	if reloaded.MatchID == "" || cached.MatchID != reloaded.MatchID {
		t.Errorf("the line's match: cached %q, reloaded %q; want one match", cached.MatchID, reloaded.MatchID)
	}
}
