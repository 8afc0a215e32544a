package grpcapi

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/queries"
	"github.com/ledgerd/ledger/workflows"
)

// ReconciliationServer serves ledger.v1.ReconciliationService: its commands
// go to the ledger's writer, its queries to the reconciliation projection.
type ReconciliationServer struct {
	ledgerv1.UnimplementedReconciliationServiceServer
	commands   *CommandServer
	statements *workflows.Statements
	q          *queries.Service
}

// NewReconciliationServer returns a ReconciliationServer.
func NewReconciliationServer(writers Writers, q *queries.Service, logger *slog.Logger) *ReconciliationServer {
	return &ReconciliationServer{commands: NewCommandServer(writers, logger), statements: workflows.NewStatements(writers), q: q}
}

// ImportStatement records statement lines, one result per line
// (workflows.Statements.Import).
func (s *ReconciliationServer) ImportStatement(ctx context.Context, req *ledgerv1.ImportStatementRequest) (*ledgerv1.ImportStatementResponse, error) {
	lines := make([]*domain.ImportStatementLine, len(req.GetLines()))
	for i, l := range req.GetLines() {
		lines[i] = &domain.ImportStatementLine{ExternalID: l.GetExternalId(), Amount: l.GetAmount(),
			Direction: lineDirection(l.GetDirection()), ValueDate: l.GetValueDate(), Reference: l.GetReference(),
			Description: l.GetDescription()}
	}
	results, err := s.statements.Import(ctx, req.GetLedger(), req.GetAccount(), req.GetSource(), lines, req.GetAtomic())
	if err != nil {
		s.commands.logFailure(req.GetLedger(), err)
		return nil, statusOf(err)
	}
	cmds := make([]domain.Command, len(lines))
	for i, l := range lines {
		cmds[i] = l
	}
	out, err := itemResults(cmds, results)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.ImportStatementResponse{Results: out}, nil
}

func lineDirection(d ledgerv1.LineDirection) domain.Side {
	switch d {
	case ledgerv1.LineDirection_LINE_DIRECTION_CREDIT:
		return domain.SideCredit
	case ledgerv1.LineDirection_LINE_DIRECTION_DEBIT:
		return domain.SideDebit
	}
	return 0
}

var ruleKinds = map[ledgerv1.MatchingRuleKind]string{
	ledgerv1.MatchingRuleKind_MATCHING_RULE_KIND_REFERENCE:   domain.RuleReference,
	ledgerv1.MatchingRuleKind_MATCHING_RULE_KIND_AMOUNT_DATE: domain.RuleAmountDate,
	ledgerv1.MatchingRuleKind_MATCHING_RULE_KIND_SPLIT:       domain.RuleSplit,
}

// SetMatchingRules replaces an account's rules.
func (s *ReconciliationServer) SetMatchingRules(ctx context.Context, req *ledgerv1.SetMatchingRulesRequest) (*ledgerv1.SetMatchingRulesResponse, error) {
	c := &domain.SetMatchingRules{Account: req.GetAccount(), Rules: make([]domain.MatchingRuleInput, len(req.GetRules()))}
	for i, r := range req.GetRules() {
		// An unknown kind stays "" and Validate names it.
		c.Rules[i] = domain.MatchingRuleInput{Kind: ruleKinds[r.GetKind()], DateWindowDays: r.GetDateWindowDays(),
			AmountTolerance: r.GetAmountTolerance(), GroupMax: r.GetGroupMax()}
	}
	results, err := s.commands.submit(ctx, req.GetLedger(), []domain.Command{c}, commands.SubmitOptions{})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.SetMatchingRulesResponse{Result: results[0]}, nil
}

// MatchManually matches lines to movements by hand.
func (s *ReconciliationServer) MatchManually(ctx context.Context, req *ledgerv1.MatchManuallyRequest) (*ledgerv1.MatchManuallyResponse, error) {
	if len(req.GetLines()) > domain.MatchItemsMax || len(req.GetMovements()) > domain.MatchItemsMax {
		return nil, invalidArgument("lines", fmt.Sprintf("at most %d lines and %d movements", domain.MatchItemsMax, domain.MatchItemsMax))
	}
	c := &domain.MatchManually{ID: req.GetId(), Account: req.GetAccount(), Reason: req.GetReason()}
	for _, l := range req.GetLines() {
		c.Lines = append(c.Lines, lineRef(l))
	}
	for i, m := range req.GetMovements() {
		ref, err := movementRef(fmt.Sprintf("movements[%d]", i), m)
		if err != nil {
			return nil, err
		}
		c.Movements = append(c.Movements, ref)
	}
	results, err := s.commands.submit(ctx, req.GetLedger(), []domain.Command{c}, commands.SubmitOptions{})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.MatchManuallyResponse{Result: results[0]}, nil
}

// Unmatch dissolves the match of a line or a movement.
func (s *ReconciliationServer) Unmatch(ctx context.Context, req *ledgerv1.UnmatchRequest) (*ledgerv1.UnmatchResponse, error) {
	c := &domain.Unmatch{Account: req.GetAccount(), Reason: req.GetReason()}
	if req.GetLine() != nil {
		l := lineRef(req.GetLine())
		c.Line = &l
	}
	if req.GetMovement() != nil {
		m, err := movementRef("movement", req.GetMovement())
		if err != nil {
			return nil, err
		}
		c.Movement = &m
	}
	results, err := s.commands.submit(ctx, req.GetLedger(), []domain.Command{c}, commands.SubmitOptions{})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.UnmatchResponse{Result: results[0]}, nil
}

func lineRef(l *ledgerv1.LineRef) domain.LineRef {
	return domain.LineRef{Source: l.GetSource(), ExternalID: l.GetExternalId()}
}

func movementRef(field string, m *ledgerv1.MovementRef) (domain.MovementRef, error) {
	if m.GetPostingIndex() >= domain.PostingsPerTransfer {
		return domain.MovementRef{}, invalidArgument(field+".posting_index", fmt.Sprintf("at most %d", domain.PostingsPerTransfer-1))
	}
	return domain.MovementRef{TransferID: m.GetTransferId(), PostingIndex: uint16(m.GetPostingIndex())}, nil
}

// GetReconciliation returns an account's reconciliation for a period.
func (s *ReconciliationServer) GetReconciliation(ctx context.Context, req *ledgerv1.GetReconciliationRequest) (*ledgerv1.GetReconciliationResponse, error) {
	period, err := periodOf(req.GetFromDate(), req.GetToDate())
	if err != nil {
		return nil, err
	}
	r, err := s.q.GetReconciliation(ctx, req.GetLedger(), req.GetAccount(), period, req.GetMinPosition())
	if err != nil {
		return nil, statusOf(err)
	}
	return &ledgerv1.GetReconciliationResponse{Account: r.Account, Asset: r.Asset, Matches: r.Matches,
		MatchedLines: r.MatchedLines, MatchedMovements: r.MatchedMovements,
		UnmatchedLines: r.UnmatchedLines, UnmatchedLinesSum: r.UnmatchedLinesSum,
		UnmatchedMovements: r.UnmatchedMovements, UnmatchedMovementsSum: r.UnmatchedMovementsSum,
		ExternalBalance: r.ExternalBalance, LedgerBalance: r.LedgerBalance, Difference: r.Difference,
		UnmatchedLinesToEndSum: r.UnmatchedLinesToEnd, UnmatchedMovementsToEndSum: r.UnmatchedMovementsToEnd,
		MatchedDifference: r.MatchedDifference, MatchesByRule: r.MatchesByRule, Position: r.Position}, nil
}

// ListUnmatched lists unmatched lines, unmatched movements or matches.
func (s *ReconciliationServer) ListUnmatched(ctx context.Context, req *ledgerv1.ListUnmatchedRequest) (*ledgerv1.ListUnmatchedResponse, error) {
	period, err := periodOf(req.GetFromDate(), req.GetToDate())
	if err != nil {
		return nil, err
	}
	var side queries.ReconSide
	max := queries.ReconPageMax
	switch req.GetSide() {
	case ledgerv1.UnmatchedSide_UNMATCHED_SIDE_LINES:
		side = queries.ReconLines
	case ledgerv1.UnmatchedSide_UNMATCHED_SIDE_MOVEMENTS:
		side = queries.ReconMovements
	case ledgerv1.UnmatchedSide_UNMATCHED_SIDE_MATCHES:
		side, max = queries.ReconMatches, queries.ReconMatchesPageMax
	default:
		return nil, invalidArgument("side", "LINES, MOVEMENTS or MATCHES")
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = min(queries.ReconPageDefault, max)
	}
	if size > max {
		return nil, invalidArgument("page_size", fmt.Sprintf("at most %d", max))
	}
	page, err := s.q.ListUnmatched(ctx, req.GetLedger(), req.GetAccount(), side, period, size, req.GetPageToken(), req.GetMinPosition())
	if err != nil {
		return nil, statusOf(err)
	}
	out := &ledgerv1.ListUnmatchedResponse{NextPageToken: page.Next, Position: page.Position}
	for _, it := range page.Items {
		out.Items = append(out.Items, reconItem(it))
	}
	for _, m := range page.Matches {
		pm := &ledgerv1.ReconMatch{Id: m.ID, Rule: strings.ToUpper(m.Rule), Reason: m.Reason, Difference: m.Difference, Position: m.Position}
		for _, it := range m.Items {
			pm.Items = append(pm.Items, reconItem(it))
		}
		out.Matches = append(out.Matches, pm)
	}
	return out, nil
}

func reconItem(it queries.ReconItem) *ledgerv1.ReconItem {
	out := &ledgerv1.ReconItem{Kind: "movement", TransferId: it.TransferID, PostingIndex: it.PostingIndex, Amount: it.Amount,
		Date: it.Date, Reference: it.Reference, Description: it.Description, Position: it.Position, ManualOnly: it.ManualOnly}
	if it.Line {
		out.Kind, out.Source, out.ExternalId = "line", it.Source, it.ExternalID
	}
	return out
}

// GetDailyJournal returns the control totals per asset and day.
func (s *ReconciliationServer) GetDailyJournal(ctx context.Context, req *ledgerv1.GetDailyJournalRequest) (*ledgerv1.GetDailyJournalResponse, error) {
	period, err := periodOf(req.GetFromDate(), req.GetToDate())
	if err != nil {
		return nil, err
	}
	if a := req.GetAsset(); a != "" && !domain.ValidAssetCode(a) {
		return nil, invalidArgument("asset", "must match [A-Z][A-Z0-9_]{0,15}")
	}
	j, err := s.q.GetDailyJournal(ctx, req.GetLedger(), req.GetAsset(), period, req.GetMinPosition())
	if err != nil {
		return nil, statusOf(err)
	}
	out := &ledgerv1.GetDailyJournalResponse{Position: j.Position}
	for _, l := range j.Lines {
		out.Lines = append(out.Lines, &ledgerv1.DailyJournalLine{Asset: l.Asset, Date: l.Date, Postings: l.Postings, Amount: l.Amount})
	}
	for _, l := range j.Totals {
		out.Totals = append(out.Totals, &ledgerv1.DailyJournalLine{Asset: l.Asset, Postings: l.Postings, Amount: l.Amount})
	}
	return out, nil
}

// periodOf parses a period's dates.
func periodOf(from, to string) (queries.Period, error) {
	var p queries.Period
	for _, d := range []struct {
		field, value string
		into         *time.Time
	}{{"from_date", from, &p.From}, {"to_date", to, &p.To}} {
		if d.value == "" {
			continue
		}
		t, err := domain.ParseValueDate(d.value)
		if err != nil {
			return queries.Period{}, invalidArgument(d.field, err.Error())
		}
		*d.into = t
	}
	return p, nil
}
