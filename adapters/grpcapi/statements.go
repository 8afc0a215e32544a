package grpcapi

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/queries"
)

// ListStatement returns a page of an account's statement with running
// balances, and the position it reflects.
func (s *QueryServer) ListStatement(ctx context.Context, req *ledgerv1.ListStatementRequest) (*ledgerv1.ListStatementResponse, error) {
	q, err := statementQuery(req)
	if err != nil {
		return nil, err
	}
	got, err := s.q.ListStatement(ctx, q)
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.ListStatementResponse{Account: got.Account, Asset: got.Asset, OpeningBalance: got.OpeningBalance,
		ClosingBalance: got.ClosingBalance, NextCursor: got.NextCursor, Position: got.Position,
		Lines: make([]*ledgerv1.StatementLine, len(got.Lines))}
	// A page's lines and their times in two allocations, not three a line.
	lines := make([]ledgerv1.StatementLine, len(got.Lines))
	times := make([]timestamppb.Timestamp, 2*len(got.Lines))
	for i := range got.Lines {
		resp.Lines[i] = statementLineIn(&lines[i], times[2*i:2*i+2], &got.Lines[i])
	}
	return resp, nil
}

// statementLineIn is l in its wire form, in pl, with its two times in
// times: ListStatement and ReadStatementLines serve a line alike.
func statementLineIn(pl *ledgerv1.StatementLine, times []timestamppb.Timestamp, l *queries.StatementLine) *ledgerv1.StatementLine {
	pl.Position, pl.PostingIndex, pl.TransferId, pl.Kind = l.Position, l.PostingIndex, l.TransferID, l.Kind
	pl.CounterAccounts, pl.Direction, pl.Amount, pl.Pending = l.CounterAccounts, direction(l.Side), l.Amount, l.Pending
	pl.RunningBalance, pl.RunningAvailable = l.RunningBalance, l.RunningAvailable
	pl.EffectiveAt, pl.RecordedAt = timestampIn(&times[0], l.EffectiveAt), timestampIn(&times[1], l.RecordedAt)
	pl.Reference, pl.Metadata = l.Reference, l.Metadata
	return pl
}

// timestampIn is timestamppb.New(t) in *ts.
func timestampIn(ts *timestamppb.Timestamp, t time.Time) *timestamppb.Timestamp {
	ts.Seconds, ts.Nanos = t.Unix(), int32(t.Nanosecond())
	return ts
}

// statementQuery validates a request's fields, naming the first bad one.
func statementQuery(req *ledgerv1.ListStatementRequest) (queries.StatementQuery, error) {
	q := queries.StatementQuery{Ledger: req.GetLedger(), Account: req.GetAccount(), FromPosition: req.GetFromPosition(),
		ToPosition: req.GetToPosition(), Cursor: req.GetCursor(), Limit: int(req.GetLimit()),
		MinPosition: req.GetMinPosition(), IncludePending: req.GetIncludePending()}
	if !domain.ValidID(q.Account) {
		return q, invalidArgument("account", "must match [A-Za-z0-9:_.@-]{1,128}")
	}
	if req.GetLimit() > queries.StatementLimitMax {
		return q, invalidArgument("limit", fmt.Sprintf("%d lines, at most %d (0: %d)", req.GetLimit(),
			queries.StatementLimitMax, queries.StatementLimitDefault))
	}
	var err error
	if q.FromTime, err = timeOf("from_time", req.GetFromTime()); err != nil {
		return q, err
	}
	if q.ToTime, err = timeOf("to_time", req.GetToTime()); err != nil {
		return q, err
	}
	if q.Effective, err = effectiveBasis(req.GetTimeBasis()); err != nil {
		return q, err
	}
	return q, nil
}

// effectiveBasis reports whether times are effective (business) times.
func effectiveBasis(b ledgerv1.TimeBasis) (bool, error) {
	switch b {
	case ledgerv1.TimeBasis_TIME_BASIS_UNSPECIFIED:
		return false, nil
	case ledgerv1.TimeBasis_TIME_BASIS_EFFECTIVE:
		return true, nil
	}
	return false, invalidArgument("time_basis", fmt.Sprintf("unknown time basis %d", b))
}

func direction(side string) ledgerv1.Direction {
	switch side {
	case "debit":
		return ledgerv1.Direction_DIRECTION_DEBIT
	case "credit":
		return ledgerv1.Direction_DIRECTION_CREDIT
	}
	return ledgerv1.Direction_DIRECTION_UNSPECIFIED
}

// strongBalances answers from the ledger's writer: every acknowledged command
// included, so min_position is moot. The answer's position is the writer's
// (every batch it reflects has committed), and a balance's position is 0:
// the writer does not track the last event that moved each account.
func (s *QueryServer) strongBalances(ctx context.Context, ledger string, accounts []string) (*ledgerv1.GetBalancesResponse, error) {
	// An unknown ledger is refused by the registry's look-up: no writer
	// starts for it.
	w, err := s.writers.Writer(ledger)
	if err != nil {
		return nil, statusOf(err)
	}
	var (
		got []commands.Balance
		pos uint64
	)
	err = w.Read(ctx, func(st *domain.State) {
		pos = st.Position()
		got = make([]commands.Balance, 0, len(accounts))
		for _, id := range accounts {
			if a, ok := st.Account(id); ok {
				got = append(got, commands.Balance{Account: a.ID, Asset: a.Asset, Scale: a.Scale, Normal: a.Normal,
					DebitsPosted: a.DebitsPosted, CreditsPosted: a.CreditsPosted,
					DebitsPending: a.DebitsPending, CreditsPending: a.CreditsPending})
			}
		}
	})
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.GetBalancesResponse{Position: pos, Balances: make([]*ledgerv1.Balance, len(got))}
	for i, b := range got {
		resp.Balances[i] = balanceOf(b)
	}
	return resp, nil
}

// asOfOf validates consistency, as_of_position, as_of_time and time_basis
// together.
func asOfOf(req *ledgerv1.GetBalancesRequest) (asOf time.Time, effective bool, err error) {
	switch req.GetConsistency() {
	case ledgerv1.Consistency_CONSISTENCY_UNSPECIFIED, ledgerv1.Consistency_CONSISTENCY_STRONG:
	default:
		return time.Time{}, false, invalidArgument("consistency", fmt.Sprintf("unknown consistency %d", req.GetConsistency()))
	}
	strong := req.GetConsistency() == ledgerv1.Consistency_CONSISTENCY_STRONG
	switch {
	case strong && (req.GetAsOfPosition() != 0 || req.GetAsOfTime() != nil):
		return time.Time{}, false, invalidArgument("consistency", "STRONG reads the writer now: not with as_of_position or as_of_time")
	case req.GetAsOfPosition() != 0 && req.GetAsOfTime() != nil:
		return time.Time{}, false, invalidArgument("as_of_time", "not with as_of_position")
	}
	if asOf, err = timeOf("as_of_time", req.GetAsOfTime()); err != nil {
		return time.Time{}, false, err
	}
	if effective, err = effectiveBasis(req.GetTimeBasis()); err != nil {
		return time.Time{}, false, err
	}
	return asOf, effective, nil
}
