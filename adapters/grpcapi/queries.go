package grpcapi

import (
	"context"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/queries"
)

// QueryServer serves ledger.v1.QueryService.
type QueryServer struct {
	ledgerv1.UnimplementedQueryServiceServer
	q *queries.Service
	// writers answer consistency STRONG.
	writers Writers
}

// NewQueryServer returns a QueryServer over q, with writers for STRONG reads.
func NewQueryServer(q *queries.Service, writers Writers) *QueryServer {
	return &QueryServer{q: q, writers: writers}
}

// GetBalances returns balances with the position they reflect: from the
// movements projection (each account's last statement line), now (the
// default) or as of a position or a time, or from the writer (consistency
// STRONG).
func (s *QueryServer) GetBalances(ctx context.Context, req *ledgerv1.GetBalancesRequest) (*ledgerv1.GetBalancesResponse, error) {
	if n := len(req.GetAccounts()); n == 0 || n > queries.AccountsPerRequestMax {
		return nil, invalidArgument("accounts", "want 1..1000 account ids")
	}
	for _, id := range req.GetAccounts() {
		if !domain.ValidID(id) {
			return nil, invalidArgument("accounts", "account ids must match [A-Za-z0-9:_.@-]{1,128}")
		}
	}
	asOfTime, effective, err := asOfOf(req)
	if err != nil {
		return nil, err
	}
	ledger, accounts := req.GetLedger(), req.GetAccounts()
	var got queries.Balances
	switch {
	case req.GetConsistency() == ledgerv1.Consistency_CONSISTENCY_STRONG:
		return s.strongBalances(ctx, ledger, accounts)
	case req.GetAsOfPosition() != 0:
		got, err = s.q.BalancesAsOfPosition(ctx, ledger, accounts, req.GetAsOfPosition(), req.GetMinPosition())
	case req.GetAsOfTime() != nil:
		got, err = s.q.BalancesAsOfTime(ctx, ledger, accounts, asOfTime, effective, req.GetMinPosition())
	default:
		got, err = s.q.GetBalances(ctx, ledger, accounts, req.GetMinPosition())
	}
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.GetBalancesResponse{Position: got.Position, Balances: make([]*ledgerv1.Balance, len(got.Balances))}
	for i, b := range got.Balances {
		resp.Balances[i] = &ledgerv1.Balance{Account: b.Account, Asset: b.Asset, NormalBalance: normalBalance(b.Normal),
			DebitsPosted: b.DebitsPosted, CreditsPosted: b.CreditsPosted, DebitsPending: b.DebitsPending,
			CreditsPending: b.CreditsPending, Balance: b.Balance, Available: b.Available, Position: b.Position}
	}
	return resp, nil
}
