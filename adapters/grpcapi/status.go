package grpcapi

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/queries"
)

// GetTrialBalance returns Σ debits and Σ credits per asset, now or as of a
// position, with the position it reflects.
func (s *QueryServer) GetTrialBalance(ctx context.Context, req *ledgerv1.GetTrialBalanceRequest) (*ledgerv1.GetTrialBalanceResponse, error) {
	got, err := s.q.GetTrialBalance(ctx, req.GetLedger(), req.GetAsOfPosition(), req.GetMinPosition())
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.GetTrialBalanceResponse{Position: got.Position, Lines: make([]*ledgerv1.TrialBalanceLine, len(got.Lines))}
	for i, l := range got.Lines {
		resp.Lines[i] = &ledgerv1.TrialBalanceLine{Asset: l.Asset, DebitsPosted: l.DebitsPosted, CreditsPosted: l.CreditsPosted,
			DebitsPending: l.DebitsPending, CreditsPending: l.CreditsPending, Accounts: l.Accounts, AccountsClosed: l.AccountsClosed}
	}
	return resp, nil
}

// GetProjectionStatus returns each projection's checkpoint and lag, for one
// ledger or (ledger empty) all.
func (s *QueryServer) GetProjectionStatus(ctx context.Context, req *ledgerv1.GetProjectionStatusRequest) (*ledgerv1.GetProjectionStatusResponse, error) {
	got, err := s.q.GetProjectionStatus(ctx, req.GetLedger())
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.GetProjectionStatusResponse{Projections: make([]*ledgerv1.ProjectionStatus, len(got))}
	for i, p := range got {
		resp.Projections[i] = &ledgerv1.ProjectionStatus{Ledger: p.Ledger, Name: p.Name, Version: int32(p.Version),
			Position: p.Position, Head: p.Head, LagPositions: p.LagPositions, LagSeconds: p.LagSeconds,
			UpdatedAt: timestamppb.New(p.UpdatedAt), State: projectionStates[p.State], Reason: p.Reason}
	}
	return resp, nil
}

// projectionStates maps the queries' states to the wire's.
var projectionStates = map[string]ledgerv1.ProjectionState{
	queries.StateOK:             ledgerv1.ProjectionState_PROJECTION_STATE_OK,
	queries.StateChainBroken:    ledgerv1.ProjectionState_PROJECTION_STATE_CHAIN_BROKEN,
	queries.StateStreamDiverged: ledgerv1.ProjectionState_PROJECTION_STATE_STREAM_DIVERGED,
}
