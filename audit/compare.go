package audit

import (
	"context"
	"fmt"
	"strconv"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// balancesBatchMax is the accounts of one GetBalances: the most it takes.
const balancesBatchMax = 1000

// field is one compared field: its name, the value expected and the value
// found.
type field struct{ name, expected, found string }

// firstDiff returns the first field that differs, or nil.
func firstDiff(fields []field) *field {
	for i := range fields {
		if fields[i].expected != fields[i].found {
			return &fields[i]
		}
	}
	return nil
}

// lower reports whether d should replace best as the first divergence of its
// kind: a lower position wins (ties keep the earlier, which comes first in
// account or asset order).
func lower(d, best *Divergence) bool { return d != nil && (best == nil || d.Position < best.Position) }

// balances compares every account with the projections at the verified head
// To: as of To, and now for each account that has not changed since To.
// Both are the movements projection's (an account's balance is its last
// statement line's): the two answers go through different queries, not
// different read models. The divergence's position is the account's last
// movement (its opening when it has none).
func (v *verifier) balances(ctx context.Context) (*Divergence, error) {
	ids := v.book.accountIDs()
	at := v.rep.To
	var (
		best    *Divergence
		skipped int
	)
	for start := 0; start < len(ids); start += balancesBatchMax {
		batch := ids[start:min(start+balancesBatchMax, len(ids))]
		asOf, err := v.getBalances(ctx, &ledgerv1.GetBalancesRequest{Ledger: v.rep.Ledger, Accounts: batch, AsOfPosition: at})
		if err != nil {
			return nil, err
		}
		now, err := v.getBalances(ctx, &ledgerv1.GetBalancesRequest{Ledger: v.rep.Ledger, Accounts: batch, MinPosition: at})
		if err != nil {
			return nil, err
		}
		for _, id := range batch {
			a := v.book.account(id)
			want := v.book.balance(a)
			d := diffBalance(a, want, asOf.byAccount[id], want.Position,
				fmt.Sprintf("as of position %d (movements projection)", at))
			if lower(d, best) {
				best = d
			}
			got := now.byAccount[id]
			if got != nil && got.GetPosition() > at {
				skipped++ // moved since: the as-of comparison covers it
				continue
			}
			d = diffBalance(a, want, got, want.Position,
				fmt.Sprintf("now, at position %d (movements projection)", now.position))
			if lower(d, best) {
				best = d
			}
		}
		v.progress("balances", uint64(start+len(batch)), uint64(len(ids)))
	}
	if skipped > 0 {
		v.rep.Notes = append(v.rep.Notes, fmt.Sprintf("%d accounts moved after position %d: their balances now were not "+
			"compared, only as of %d", skipped, at, at))
	}
	return best, nil
}

// balancesAnswer is a GetBalances answer by account.
type balancesAnswer struct {
	byAccount map[string]*ledgerv1.Balance
	position  uint64
}

func (v *verifier) getBalances(ctx context.Context, req *ledgerv1.GetBalancesRequest) (balancesAnswer, error) {
	resp, err := unary(ctx, fmt.Sprintf("balances of %d accounts as of %d", len(req.GetAccounts()), req.GetAsOfPosition()),
		v.proj.GetBalances, req)
	if err != nil {
		return balancesAnswer{}, err
	}
	out := balancesAnswer{byAccount: make(map[string]*ledgerv1.Balance, len(resp.GetBalances())), position: resp.GetPosition()}
	for _, b := range resp.GetBalances() {
		out.byAccount[b.GetAccount()] = b
	}
	return out, nil
}

// diffBalance compares an account's balances with those served (nil: the
// account is absent), position included.
func diffBalance(a *bookAccount, want Balance, got *ledgerv1.Balance, wantPosition uint64, where string) *Divergence {
	d := &Divergence{Kind: KindBalances, Position: max(a.opened, a.moved), Account: a.id, Asset: a.asset, Detail: where}
	if got == nil {
		d.Field, d.Expected, d.Found = "account", "the account", "no account"
		return d
	}
	f := firstDiff([]field{
		{"asset", want.Asset, got.GetAsset()},
		{"normal_balance", want.NormalBalance, sideOf(got.GetNormalBalance())},
		{"debits_posted", want.DebitsPosted, got.GetDebitsPosted()},
		{"credits_posted", want.CreditsPosted, got.GetCreditsPosted()},
		{"debits_pending", want.DebitsPending, got.GetDebitsPending()},
		{"credits_pending", want.CreditsPending, got.GetCreditsPending()},
		{"balance", want.Balance, got.GetBalance()},
		{"available", want.Available, got.GetAvailable()},
		{"position", strconv.FormatUint(wantPosition, 10), strconv.FormatUint(got.GetPosition(), 10)},
	})
	if f == nil {
		return nil
	}
	d.Field, d.Expected, d.Found = f.name, f.expected, f.found
	return d
}

func sideOf(n ledgerv1.NormalBalance) string {
	switch n {
	case ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT:
		return "credit"
	case ledgerv1.NormalBalance_NORMAL_BALANCE_DEBIT:
		return "debit"
	}
	return n.String()
}

// trialBalance compares the trial balance as of To (history) and, when the
// projection stands exactly at To, now (the current lines).
func (v *verifier) trialBalance(ctx context.Context) (*Divergence, error) {
	want := v.book.trialBalance()
	at := v.rep.To
	asOf, err := v.getTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{Ledger: v.rep.Ledger, AsOfPosition: at})
	if err != nil {
		return nil, err
	}
	if d := diffTrialBalance(want, asOf.GetLines(), fmt.Sprintf("as of position %d", at)); d != nil {
		return d, nil
	}
	now, err := v.getTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{Ledger: v.rep.Ledger, MinPosition: at})
	if err != nil {
		return nil, err
	}
	v.progress("trial balance", 1, 1)
	if now.GetPosition() != at {
		v.rep.Notes = append(v.rep.Notes, fmt.Sprintf("the trial balance now (at position %d) was not compared, only as of %d",
			now.GetPosition(), at))
		return nil, nil
	}
	return diffTrialBalance(want, now.GetLines(), fmt.Sprintf("now, at position %d", at)), nil
}

func (v *verifier) getTrialBalance(ctx context.Context, req *ledgerv1.GetTrialBalanceRequest) (*ledgerv1.GetTrialBalanceResponse, error) {
	return unary(ctx, fmt.Sprintf("trial balance as of %d", req.GetAsOfPosition()), v.proj.GetTrialBalance, req)
}

// diffTrialBalance returns the divergence of the lowest position between the
// lines expected and those served.
func diffTrialBalance(want []TrialBalanceLine, got []*ledgerv1.TrialBalanceLine, where string) *Divergence {
	byAsset := make(map[string]*ledgerv1.TrialBalanceLine, len(got))
	for _, l := range got {
		byAsset[l.GetAsset()] = l
	}
	var best *Divergence
	for _, w := range want {
		g, ok := byAsset[w.Asset]
		delete(byAsset, w.Asset)
		d := &Divergence{Kind: KindTrialBalance, Position: w.Position, Asset: w.Asset, Detail: where}
		if !ok {
			d.Field, d.Expected, d.Found = "asset", "a line", "no line"
		} else if f := firstDiff([]field{
			{"debits_posted", w.DebitsPosted, g.GetDebitsPosted()},
			{"credits_posted", w.CreditsPosted, g.GetCreditsPosted()},
			{"debits_pending", w.DebitsPending, g.GetDebitsPending()},
			{"credits_pending", w.CreditsPending, g.GetCreditsPending()},
			{"accounts", strconv.FormatUint(w.Accounts, 10), strconv.FormatUint(g.GetAccounts(), 10)},
			{"accounts_closed", strconv.FormatUint(w.AccountsClosed, 10), strconv.FormatUint(g.GetAccountsClosed(), 10)},
		}); f != nil {
			d.Field, d.Expected, d.Found = f.name, f.expected, f.found
		} else {
			d = nil
		}
		if lower(d, best) {
			best = d
		}
	}
	if best == nil {
		for _, g := range got {
			if _, extra := byAsset[g.GetAsset()]; extra {
				return &Divergence{Kind: KindTrialBalance, Asset: g.GetAsset(), Field: "asset", Expected: "no line",
					Found: "a line", Detail: where + ": an asset the log does not define"}
			}
		}
	}
	return best
}
