package grpcapi

import (
	"context"
	"errors"

	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
)

// ClosePeriod closes the ledger's open accounting period at the request's
// end. A close answers with its result (CREATED, or EXISTS for the same end
// again); a refusal is the call's status, since the call is about that one
// close: FailedPrecondition for an end not after the last close's
// (PERIOD_CLOSED), InvalidArgument naming end for one missing or in the
// future.
func (s *CommandServer) ClosePeriod(ctx context.Context, req *ledgerv1.ClosePeriodRequest) (*ledgerv1.ClosePeriodResponse, error) {
	if req.GetEnd() == nil {
		return nil, invalidArgument("end", "required: the period's end (exclusive)")
	}
	end, err := timeOf("end", req.GetEnd())
	if err != nil {
		return nil, err
	}
	cmd := &domain.ClosePeriod{End: end}
	w, err := s.writers.Writer(req.GetLedger())
	if err != nil {
		return nil, statusOf(err)
	}
	results, err := w.SubmitWith(ctx, []domain.Command{cmd}, commands.SubmitOptions{})
	if err != nil {
		s.logFailure(req.GetLedger(), err)
		return nil, statusOf(err)
	}
	r := results[0]
	if r.Err != nil && !errors.Is(r.Err, domain.ErrExists) {
		return nil, statusOf(r.Err)
	}
	res, err := itemResult(0, cmd.CommandID(), r)
	if err != nil {
		return nil, err
	}
	if r.Err == nil && s.periodClosed != nil {
		s.periodClosed(req.GetLedger(), r.Position)
	}
	return &ledgerv1.ClosePeriodResponse{Result: res}, nil
}

// OnPeriodClosed sets f to be called after each close ClosePeriod commits,
// with its ledger and the PeriodClosed event's position: where ledgerd
// signs an anchor of the chain head (a close is "signed" by that anchor).
// f must not block. Set it before serving.
func (s *CommandServer) OnPeriodClosed(f func(ledger string, position uint64)) { s.periodClosed = f }

// ListPeriods returns the ledger's closed periods, oldest first, by pages.
func (s *QueryServer) ListPeriods(ctx context.Context, req *ledgerv1.ListPeriodsRequest) (*ledgerv1.ListPeriodsResponse, error) {
	got, err := s.q.ListPeriods(ctx, req.GetLedger(), req.GetAfterPosition(), int(req.GetLimit()), req.GetMinPosition())
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.ListPeriodsResponse{Position: got.Position, More: got.More,
		Periods: make([]*ledgerv1.Period, len(got.Periods))}
	for i, p := range got.Periods {
		out := &ledgerv1.Period{Position: p.Position, FromPosition: p.FromPosition, End: timestamppb.New(p.End),
			Accounts: p.Accounts, ClosingDigest: p.ClosingDigest, RecordedAt: timestamppb.New(p.RecordedAt)}
		if p.Start != nil {
			out.Start = timestamppb.New(*p.Start)
		}
		for _, t := range p.TrialBalance {
			out.TrialBalance = append(out.TrialBalance, &ledgerv1.PeriodTotal{Asset: t.Asset,
				DebitsPosted: t.DebitsPosted, CreditsPosted: t.CreditsPosted})
		}
		resp.Periods[i] = out
	}
	return resp, nil
}
