package domain_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ledgerd/ledger/domain"
)

// reconLedger has a USD bank account (debit-normal), a customer account and
// one transfer t1 of 10.00 from the bank's point of view, into the bank.
func reconLedger(t *testing.T) *domain.State {
	t.Helper()
	s := domain.NewState()
	apply(t, s, asset("USD", 2))
	apply(t, s, account("bank", "USD", domain.SideDebit, "", ""))
	apply(t, s, account("cust", "USD", domain.SideCredit, "", ""))
	apply(t, s, transfer("t1", posting("bank", "cust", "USD", "10.00")))
	return s
}

func line(id, amount string) *domain.ImportStatementLine {
	return &domain.ImportStatementLine{Account: "bank", Source: "acme", ExternalID: id, Amount: amount,
		Direction: domain.SideCredit, ValueDate: "2026-03-04", Reference: "r-" + id}
}

func TestImportStatementLine(t *testing.T) {
	s := reconLedger(t)
	e, err := decide(s, line("L1", "10.5"))
	if err != nil {
		t.Fatal(err)
	}
	want := domain.StatementImported{Account: "bank", Source: "acme", ExternalID: "L1",
		Amount: domain.Amount{Units: domain.UnitsFromInt64(1050), Scale: 2}, Direction: domain.SideCredit,
		ValueDate: "2026-03-04", Reference: "r-L1"}
	if diff := cmp.Diff(want, e, unitsEqual); diff != "" {
		t.Fatalf("event (-want +got):\n%s", diff)
	}
	pos := s.Position() + 1
	s.Evolve(pos, e)

	t.Run("same line again is EXISTS", func(t *testing.T) {
		_, err := decide(s, line("L1", "10.50"))
		checkExists(t, err, pos)
	})
	t.Run("same id in another source is new", func(t *testing.T) {
		c := line("L1", "10.50")
		c.Source = "other"
		if _, err := decide(s, c); err != nil {
			t.Fatal(err)
		}
	})
	for _, tc := range []struct {
		name, field string
		edit        func(*domain.ImportStatementLine)
	}{
		{"amount", "amount", func(c *domain.ImportStatementLine) { c.Amount = "10.51" }},
		{"direction", "direction", func(c *domain.ImportStatementLine) { c.Direction = domain.SideDebit }},
		{"value date", "value_date", func(c *domain.ImportStatementLine) { c.ValueDate = "2026-03-05" }},
		{"reference", "reference", func(c *domain.ImportStatementLine) { c.Reference = "x" }},
		{"description", "description", func(c *domain.ImportStatementLine) { c.Description = "x" }},
	} {
		t.Run("different "+tc.name, func(t *testing.T) {
			c := line("L1", "10.50")
			tc.edit(c)
			_, err := decide(s, c)
			checkErr(t, err, domain.ErrExistsWithDifferentFields, tc.field)
		})
	}
}

func TestImportStatementLineRefused(t *testing.T) {
	s := reconLedger(t)
	for _, tc := range []struct {
		name, field string
		want        error
		edit        func(*domain.ImportStatementLine)
	}{
		{"unknown account", "account", domain.ErrAccountNotFound, func(c *domain.ImportStatementLine) { c.Account = "nope" }},
		{"too many decimals", "amount", domain.ErrInvalidAmount, func(c *domain.ImportStatementLine) { c.Amount = "1.001" }},
		{"zero", "amount", domain.ErrInvalidAmount, func(c *domain.ImportStatementLine) { c.Amount = "0" }},
		{"negative", "amount", domain.ErrInvalidAmount, func(c *domain.ImportStatementLine) { c.Amount = "-1" }},
		{"not a number", "amount", domain.ErrInvalidAmount, func(c *domain.ImportStatementLine) { c.Amount = "1,00" }},
		{"no direction", "direction", domain.ErrInvalidField, func(c *domain.ImportStatementLine) { c.Direction = 0 }},
		{"bad date", "value_date", domain.ErrInvalidField, func(c *domain.ImportStatementLine) { c.ValueDate = "2026-02-30" }},
		{"short date", "value_date", domain.ErrInvalidField, func(c *domain.ImportStatementLine) { c.ValueDate = "2026-3-4" }},
		{"date before 1970", "value_date", domain.ErrInvalidField, func(c *domain.ImportStatementLine) { c.ValueDate = "1969-12-31" }},
		{"bad external id", "external_id", domain.ErrInvalidField, func(c *domain.ImportStatementLine) { c.ExternalID = "a b" }},
		{"long external id", "external_id", domain.ErrInvalidField, func(c *domain.ImportStatementLine) { c.ExternalID = strings.Repeat("x", domain.ExternalIDLenMax+1) }},
		{"long source", "source", domain.ErrInvalidField, func(c *domain.ImportStatementLine) { c.Source = strings.Repeat("s", domain.SourceLenMax+1) }},
		{"long reference", "reference", domain.ErrInvalidField, func(c *domain.ImportStatementLine) { c.Reference = strings.Repeat("r", domain.ReferenceLenMax+1) }},
		{"long description", "description", domain.ErrInvalidField, func(c *domain.ImportStatementLine) { c.Description = strings.Repeat("d", domain.DescriptionLenMax+1) }},
		{"NUL in description", "description", domain.ErrInvalidField, func(c *domain.ImportStatementLine) { c.Description = "a\x00b" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := line("L1", "1.00")
			tc.edit(c)
			_, err := decide(s, c)
			checkErr(t, err, tc.want, tc.field)
		})
	}
	t.Run("at the bounds", func(t *testing.T) {
		c := line(strings.Repeat("x", domain.ExternalIDLenMax-2)+"/1", "1.00")
		c.Source = strings.Repeat("s", domain.SourceLenMax)
		c.Reference = strings.Repeat("r", domain.ReferenceLenMax)
		c.Description = strings.Repeat("d", domain.DescriptionLenMax)
		if _, err := decide(s, c); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSetMatchingRules(t *testing.T) {
	s := reconLedger(t)
	c := &domain.SetMatchingRules{Account: "bank", Rules: []domain.MatchingRuleInput{
		{Kind: domain.RuleReference},
		{Kind: domain.RuleAmountDate, DateWindowDays: domain.DateWindowDaysMax, AmountTolerance: "0.1"},
		{Kind: domain.RuleSplit},
	}}
	e, err := decide(s, c)
	if err != nil {
		t.Fatal(err)
	}
	tol := domain.Amount{Units: domain.UnitsFromInt64(10), Scale: 2}
	want := domain.MatchingRulesSet{Account: "bank", Rules: []domain.MatchingRule{
		{Kind: domain.RuleReference},
		{Kind: domain.RuleAmountDate, DateWindowDays: domain.DateWindowDaysMax, AmountTolerance: &tol},
		{Kind: domain.RuleSplit, GroupMax: domain.GroupMaxDefault},
	}}
	if diff := cmp.Diff(want, e, unitsEqual); diff != "" {
		t.Fatalf("event (-want +got):\n%s", diff)
	}
	many := make([]domain.MatchingRuleInput, domain.MatchingRulesMax+1)
	for i := range many {
		many[i].Kind = domain.RuleReference
	}
	for _, tc := range []struct {
		name, field string
		want        error
		rules       []domain.MatchingRuleInput
	}{
		{"none", "rules", domain.ErrInvalidField, nil},
		{"too many", "rules", domain.ErrInvalidField, many},
		{"bad kind", "rules[0].kind", domain.ErrInvalidField, []domain.MatchingRuleInput{{Kind: "fuzzy"}}},
		{"window", "rules[0].date_window_days", domain.ErrInvalidField, []domain.MatchingRuleInput{{Kind: domain.RuleAmountDate, DateWindowDays: domain.DateWindowDaysMax + 1}}},
		{"group on reference", "rules[0].group_max", domain.ErrInvalidField, []domain.MatchingRuleInput{{Kind: domain.RuleReference, GroupMax: 2}}},
		{"group too big", "rules[0].group_max", domain.ErrInvalidField, []domain.MatchingRuleInput{{Kind: domain.RuleSplit, GroupMax: domain.GroupMaxMax + 1}}},
		{"group of one", "rules[0].group_max", domain.ErrInvalidField, []domain.MatchingRuleInput{{Kind: domain.RuleSplit, GroupMax: 1}}},
		{"negative tolerance", "rules[0].amount_tolerance", domain.ErrInvalidAmount, []domain.MatchingRuleInput{{Kind: domain.RuleReference, AmountTolerance: "-0.01"}}},
		{"tolerance scale", "rules[0].amount_tolerance", domain.ErrInvalidAmount, []domain.MatchingRuleInput{{Kind: domain.RuleReference, AmountTolerance: "0.001"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decide(s, &domain.SetMatchingRules{Account: "bank", Rules: tc.rules})
			checkErr(t, err, tc.want, tc.field)
		})
	}
	t.Run("unknown account", func(t *testing.T) {
		_, err := decide(s, &domain.SetMatchingRules{Account: "nope", Rules: []domain.MatchingRuleInput{{Kind: domain.RuleReference}}})
		checkErr(t, err, domain.ErrAccountNotFound, "account")
	})
}

func TestMatchManually(t *testing.T) {
	s := reconLedger(t)
	apply(t, s, line("L1", "10.00"))
	match := func() *domain.MatchManually {
		return &domain.MatchManually{ID: "m1", Account: "bank",
			Lines:     []domain.LineRef{{Source: "acme", ExternalID: "L1"}},
			Movements: []domain.MovementRef{{TransferID: "t1"}, {TransferID: "t2", PostingIndex: 1}},
			Reason:    "paid together"}
	}
	_, err := decide(s, match())
	checkErr(t, err, domain.ErrMovementNotFound, "movements[1]") // no t2 yet
	apply(t, s, account("other-side", "USD", domain.SideCredit, "", ""))
	apply(t, s, transfer("t2", posting("cust", "other-side", "USD", "1.00"), posting("bank", "cust", "USD", "2.00")))
	pos := apply(t, s, match())
	_, err = decide(s, match())
	checkExists(t, err, pos)

	for _, tc := range []struct {
		name, field string
		want        error
		edit        func(*domain.MatchManually)
	}{
		{"changed reason", "reason", domain.ErrExistsWithDifferentFields, func(c *domain.MatchManually) { c.Reason = "x" }},
		{"unknown line", "lines[0]", domain.ErrLineNotFound, func(c *domain.MatchManually) { c.ID = "m2"; c.Lines[0].ExternalID = "L9" }},
		{"line of another source", "lines[0]", domain.ErrLineNotFound, func(c *domain.MatchManually) { c.ID = "m2"; c.Lines[0].Source = "x" }},
		{"unknown transfer", "movements[0]", domain.ErrMovementNotFound, func(c *domain.MatchManually) { c.ID = "m2"; c.Movements[0].TransferID = "t9" }},
		{"posting off the account", "movements[1]", domain.ErrMovementNotFound, func(c *domain.MatchManually) { c.ID = "m2"; c.Movements[1].PostingIndex = 0 }},
		{"posting out of range", "movements[1]", domain.ErrMovementNotFound, func(c *domain.MatchManually) { c.ID = "m2"; c.Movements[1].PostingIndex = 5 }},
		{"no reason", "reason", domain.ErrInvalidField, func(c *domain.MatchManually) { c.ID = "m2"; c.Reason = "" }},
		{"no lines", "lines", domain.ErrInvalidField, func(c *domain.MatchManually) { c.ID = "m2"; c.Lines = nil }},
		{"line twice", "lines[1]", domain.ErrInvalidField, func(c *domain.MatchManually) { c.ID = "m2"; c.Lines = append(c.Lines, c.Lines[0]) }},
		{"movement twice", "movements[2]", domain.ErrInvalidField, func(c *domain.MatchManually) {
			c.ID = "m2"
			c.Movements = append(c.Movements, c.Movements[0])
		}},
		{"too many movements", "movements", domain.ErrInvalidField, func(c *domain.MatchManually) {
			c.ID = "m2"
			c.Movements = make([]domain.MovementRef, domain.MatchItemsMax+1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := match()
			tc.edit(c)
			_, err := decide(s, c)
			checkErr(t, err, tc.want, tc.field)
		})
	}
}

func TestUnmatch(t *testing.T) {
	s := reconLedger(t)
	apply(t, s, line("L1", "10.00"))
	ok := []*domain.Unmatch{
		{Account: "bank", Line: &domain.LineRef{Source: "acme", ExternalID: "L1"}, Reason: "wrong"},
		{Account: "bank", Movement: &domain.MovementRef{TransferID: "t1"}, Reason: "wrong"},
	}
	for _, c := range ok {
		if _, err := decide(s, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, field string
		want        error
		c           *domain.Unmatch
	}{
		{"neither", "line", domain.ErrInvalidField, &domain.Unmatch{Account: "bank", Reason: "x"}},
		{"both", "line", domain.ErrInvalidField, &domain.Unmatch{Account: "bank", Line: ok[0].Line, Movement: ok[1].Movement, Reason: "x"}},
		{"unknown line", "line", domain.ErrLineNotFound, &domain.Unmatch{Account: "bank", Line: &domain.LineRef{Source: "acme", ExternalID: "L2"}, Reason: "x"}},
		{"movement of another account", "movement", domain.ErrMovementNotFound, &domain.Unmatch{Account: "cust2", Movement: ok[1].Movement, Reason: "x"}},
		{"no reason", "reason", domain.ErrInvalidField, &domain.Unmatch{Account: "bank", Line: ok[0].Line}},
		{"long reason", "reason", domain.ErrInvalidField, &domain.Unmatch{Account: "bank", Line: ok[0].Line, Reason: strings.Repeat("r", domain.ReasonLenMax+1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.c.Account == "cust2" {
				apply(t, s, account("cust2", "USD", domain.SideCredit, "", ""))
			}
			_, err := decide(s, tc.c)
			checkErr(t, err, tc.want, tc.field)
		})
	}
}

// TestReconcileRefusesAPostingOfNothing: a partial reversal may reverse a
// posting by 0; that posting moved no money, and the reconciliation has no
// item for it. A match or an unmatch naming it is refused (the projector,
// which has no such item, stopped on it for good when the writer let it
// into the log).
func TestReconcileRefusesAPostingOfNothing(t *testing.T) {
	s := reconLedger(t)
	apply(t, s, account("cust2", "USD", domain.SideCredit, "", ""))
	apply(t, s, transfer("t2", posting("bank", "cust", "USD", "5.00"), posting("cust", "cust2", "USD", "3.00")))
	apply(t, s, reverse("r2", "t2", "0", "3.00"))
	apply(t, s, line("L9", "5.00"))
	nothing := &domain.MovementRef{TransferID: "r2", PostingIndex: 0}
	_, err := decide(s, &domain.Unmatch{Account: "bank", Movement: nothing, Reason: "x"})
	checkErr(t, err, domain.ErrMovementNotFound, "movement")
	_, err = decide(s, &domain.MatchManually{ID: "m9", Account: "bank", Lines: []domain.LineRef{{Source: "acme", ExternalID: "L9"}},
		Movements: []domain.MovementRef{*nothing}, Reason: "x"})
	checkErr(t, err, domain.ErrMovementNotFound, "movements[0]")
	// The reversal's other posting moved money: it may be named.
	if _, err := decide(s, &domain.Unmatch{Account: "cust2", Movement: &domain.MovementRef{TransferID: "r2", PostingIndex: 1},
		Reason: "x"}); err != nil {
		t.Errorf("unmatch of r2's posting of 3.00: %v", err)
	}
}
