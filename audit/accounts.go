package audit

import (
	"context"
	"fmt"
	"strconv"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
)

// accountsPage is the page size of the accounts check's ListAccounts (its
// most).
const accountsPage = 1000

// accounts compares the accounts read model (ListAccounts, every status)
// with the replay's accounts at To: asset, normal balance, bounds,
// metadata, status, opening and the freeze in force, and that it holds
// every account and no other. ListAccounts has no as-of: once its
// checkpoint has passed To, an account amended since would differ for that
// alone, so only the pages read while the read model stood at To are
// compared (their divergences stand), and the report says when a page was
// not. The divergence's position is where the account last changed: its
// opening, a change of its bounds or metadata, its close, freeze or
// unfreeze.
func (v *verifier) accounts(ctx context.Context) (*Divergence, error) {
	at := v.rep.To
	req := &ledgerv1.ListAccountsRequest{Ledger: v.rep.Ledger, Limit: accountsPage, MinPosition: at}
	listed := make(map[string]bool, len(v.book.accounts))
	var (
		best *Divergence
		last string // ids only go up: that bounds the listing, whatever the cursors
	)
	for {
		resp, err := v.listAccounts(ctx, req)
		if err != nil {
			return nil, err
		}
		if resp.GetPosition() != at {
			v.rep.Notes = append(v.rep.Notes, fmt.Sprintf("accounts compared only up to %d of %d: the accounts read model "+
				"moved past position %d, to %d, and lists accounts as they are now", len(listed), len(v.book.accounts),
				at, resp.GetPosition()))
			return best, nil
		}
		for _, got := range resp.GetAccounts() {
			if got.GetId() <= last {
				return nil, fmt.Errorf("accounts at %d: ledgerd listed %s after %s: %w", at, got.GetId(), last, errOutOfOrder)
			}
			last = got.GetId()
			listed[got.GetId()] = true
			a, ok := v.book.state.Account(got.GetId())
			if !ok {
				d := &Divergence{Kind: KindAccount, Position: got.GetOpenedPosition(), Account: got.GetId(),
					Asset: got.GetAsset(), Field: "account", Expected: "no account", Found: "the account",
					Detail: "accounts read model (movements projection)"}
				if lower(d, best) {
					best = d
				}
				continue
			}
			if d := diffAccount(a, v.book.account(a.ID).amended, got); lower(d, best) {
				best = d
			}
		}
		v.progress("accounts", uint64(min(len(listed), len(v.book.accounts))), uint64(len(v.book.accounts)))
		if resp.GetNextCursor() == "" || len(resp.GetAccounts()) == 0 {
			break
		}
		if len(listed) > len(v.book.accounts)+accountsPage {
			// A page of accounts the log never opened is divergence
			// enough: the rest would only add to it.
			break
		}
		req.Cursor = resp.GetNextCursor()
	}
	v.rep.AccountsCompared = true
	for _, a := range v.book.accounts {
		if listed[a.id] {
			continue
		}
		s, _ := v.book.state.Account(a.id)
		d := &Divergence{Kind: KindAccount, Position: accountChanged(s, a.amended), Account: a.id, Asset: a.asset,
			Field: "account", Expected: "the account", Found: "no account",
			Detail: "accounts read model (movements projection)"}
		if lower(d, best) {
			best = d
		}
	}
	return best, nil
}

func (v *verifier) listAccounts(ctx context.Context, req *ledgerv1.ListAccountsRequest) (*ledgerv1.ListAccountsResponse, error) {
	return unary(ctx, fmt.Sprintf("accounts at %d", req.GetMinPosition()), v.proj.ListAccounts, req)
}

// accountChanged is where an account last changed: its opening, close,
// freeze or unfreeze (the state's), or amended, the book's last change of
// its bounds or metadata.
func accountChanged(a *domain.Account, amended uint64) uint64 {
	return max(a.Position, a.ClosedAt(), a.FrozenAt(), a.UnfrozenAt(), amended)
}

// diffAccount compares an account of the replay, last amended at amended,
// with the one served.
func diffAccount(a *domain.Account, amended uint64, got *ledgerv1.AccountView) *Divergence {
	bound := func(u *domain.Units) string {
		if u == nil {
			return ""
		}
		return u.Format(a.Scale)
	}
	status := ledgerv1.AccountStatus_ACCOUNT_STATUS_OPEN
	if a.Closed {
		status = ledgerv1.AccountStatus_ACCOUNT_STATUS_CLOSED
	}
	f := firstDiff([]field{
		{"asset", a.Asset, got.GetAsset()},
		{"normal_balance", a.Normal.String(), sideOf(got.GetNormalBalance())},
		{"min_balance", bound(a.Min()), got.GetMinBalance()},
		{"max_balance", bound(a.Max()), got.GetMaxBalance()},
		{"metadata", metadataText(a.Metadata()), metadataText(got.GetMetadata())},
		{"status", status.String(), got.GetStatus().String()},
		{"opened_position", strconv.FormatUint(a.Position, 10), strconv.FormatUint(got.GetOpenedPosition(), 10)},
		{"frozen_position", strconv.FormatUint(a.FrozenAt(), 10), strconv.FormatUint(got.GetFrozenPosition(), 10)},
	})
	if f == nil {
		return nil
	}
	return &Divergence{Kind: KindAccount, Position: accountChanged(a, amended), Account: a.ID, Asset: a.Asset, Field: f.name,
		Expected: f.expected, Found: f.found, Detail: "accounts read model (movements projection)"}
}
