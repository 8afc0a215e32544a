package grpcapi

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/queries"
	"github.com/ledgerd/ledger/workflows"
)

// MonitoringServer serves ledger.v1.MonitoringService: rules and freezes
// through the ledger's writer, alerts and dry runs from the read side.
type MonitoringServer struct {
	ledgerv1.UnimplementedMonitoringServiceServer
	cmd *CommandServer
	q   *queries.Service
	log workflows.DryRunLog
}

// NewMonitoringServer returns a MonitoringServer submitting through cmd's
// writers, reading alerts through q and dry runs' events from log.
func NewMonitoringServer(cmd *CommandServer, q *queries.Service, log workflows.DryRunLog) *MonitoringServer {
	return &MonitoringServer{cmd: cmd, q: q, log: log}
}

// Bounds of the DryRunRule calls in progress: each may fold up to
// workflows.DryRunFoldMax events and evaluate DryRunEventsMax more, seconds
// of a core and a connection of the pool, so that a reader key cannot take
// the box's cores from the writers.
const (
	DryRunCallsMax       = 2
	DryRunCallsPerKeyMax = 1
)

// NewDryRunLimit bounds the DryRunRule calls in progress (DryRunCallsMax,
// DryRunCallsPerKeyMax).
func NewDryRunLimit() *CallsLimit {
	return &CallsLimit{method: ledgerv1.MonitoringService_DryRunRule_FullMethodName, max: DryRunCallsMax,
		perKeyMax: DryRunCallsPerKeyMax, perKey: map[string]int{}}
}

// DryRunRule evaluates a rule over the log with the alerts projection's
// evaluator and answers the alerts it would have raised, changing nothing:
// at most workflows.DryRunEventsMax events and DryRunAlertsMax alerts
// (truncated says the range was cut). NewDryRunLimit bounds the calls in
// progress.
func (s *MonitoringServer) DryRunRule(ctx context.Context, req *ledgerv1.DryRunRuleRequest) (*ledgerv1.DryRunRuleResponse, error) {
	if req.GetRule() == nil {
		return nil, invalidArgument("rule", "required")
	}
	c := DefineRuleOf(req.GetRule())
	if err := c.Validate(); err != nil {
		return nil, statusOf(err)
	}
	w, err := s.cmd.writers.Writer(req.GetLedger())
	if err != nil {
		return nil, statusOf(err)
	}
	var (
		rule    domain.Rule
		ruleErr error
	)
	if err := w.Read(ctx, func(st *domain.State) { rule, ruleErr = domain.DryRule(st, c) }); err != nil {
		return nil, statusOf(err)
	}
	if ruleErr != nil {
		return nil, statusOf(ruleErr)
	}
	r := workflows.DryRunRange{From: req.GetFromPosition(), To: req.GetToPosition()}
	if req.GetFromTime() != nil {
		r.FromTime = req.GetFromTime().AsTime()
	}
	if req.GetToTime() != nil {
		r.ToTime = req.GetToTime().AsTime()
	}
	res, err := workflows.DryRunRule(ctx, s.log, req.GetLedger(), rule, r)
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.DryRunRuleResponse{Events: res.Events, Truncated: res.Truncated, FromPosition: res.From, ToPosition: res.To}
	for i := range res.Alerts {
		resp.Alerts = append(resp.Alerts, AlertProto(&res.Alerts[i]))
	}
	return resp, nil
}

// ListAlerts lists alerts in position order, by rule or account, by pages.
func (s *MonitoringServer) ListAlerts(ctx context.Context, req *ledgerv1.ListAlertsRequest) (*ledgerv1.ListAlertsResponse, error) {
	page, err := s.q.ListAlerts(ctx, req.GetLedger(), queries.AlertFilter{RuleID: req.GetRuleId(), Account: req.GetAccount()},
		req.GetCursor(), int(req.GetLimit()), req.GetMinPosition())
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.ListAlertsResponse{NextCursor: page.NextCursor, Position: page.Position, RaisedPositionsServed: true}
	for i := range page.Alerts {
		a := AlertProto(&page.Alerts[i])
		a.RaisedPosition = page.Raised[i]
		resp.Alerts = append(resp.Alerts, a)
	}
	return resp, nil
}

// AlertProto is an alert on the wire.
func AlertProto(a *domain.Alert) *ledgerv1.Alert {
	out := &ledgerv1.Alert{Id: a.ID, RuleId: a.RuleID, RuleVersion: a.RuleVersion, Position: a.Position, TransferId: a.TransferID,
		Account: a.Account, Counterparties: a.Counterparties, Asset: a.Asset, Figures: a.Figures,
		RecordedAt: timestamppb.New(a.RecordedAt), HoldAccount: a.HoldAccount}
	if a.Freeze {
		out.Actions = append(out.Actions, ledgerv1.RuleAction_RULE_ACTION_FREEZE)
	}
	if a.HoldAccount != "" {
		out.Actions = append(out.Actions, ledgerv1.RuleAction_RULE_ACTION_HOLD)
	}
	if !a.EffectiveAt.IsZero() {
		out.EffectiveAt = timestamppb.New(a.EffectiveAt)
	}
	return out
}

// FreezeAccounts freezes up to 1,000 accounts, one result per account.
func (s *MonitoringServer) FreezeAccounts(ctx context.Context, req *ledgerv1.FreezeAccountsRequest) (*ledgerv1.FreezeAccountsResponse, error) {
	if n := len(req.GetAccountIds()); n == 0 || n > domain.FreezesPerRequestMax {
		return nil, invalidArgument("account_ids", fmt.Sprintf("%d accounts, want 1..%d", n, domain.FreezesPerRequestMax))
	}
	cmds := make([]domain.Command, len(req.GetAccountIds()))
	for i, id := range req.GetAccountIds() {
		cmds[i] = &domain.FreezeAccount{AccountID: id, Reason: req.GetReason()}
	}
	results, err := s.cmd.submit(ctx, req.GetLedger(), cmds, commands.SubmitOptions{})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.FreezeAccountsResponse{Results: results}, nil
}

// UnfreezeAccounts lifts freezes, one result per account.
func (s *MonitoringServer) UnfreezeAccounts(ctx context.Context, req *ledgerv1.UnfreezeAccountsRequest) (*ledgerv1.UnfreezeAccountsResponse, error) {
	if n := len(req.GetAccountIds()); n == 0 || n > domain.FreezesPerRequestMax {
		return nil, invalidArgument("account_ids", fmt.Sprintf("%d accounts, want 1..%d", n, domain.FreezesPerRequestMax))
	}
	cmds := make([]domain.Command, len(req.GetAccountIds()))
	for i, id := range req.GetAccountIds() {
		cmds[i] = &domain.UnfreezeAccount{AccountID: id, Reason: req.GetReason()}
	}
	results, err := s.cmd.submit(ctx, req.GetLedger(), cmds, commands.SubmitOptions{})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.UnfreezeAccountsResponse{Results: results}, nil
}

// DefineRules defines or changes up to 100 rules, one result per rule.
func (s *MonitoringServer) DefineRules(ctx context.Context, req *ledgerv1.DefineRulesRequest) (*ledgerv1.DefineRulesResponse, error) {
	if n := len(req.GetRules()); n == 0 || n > domain.RulesPerRequestMax {
		return nil, invalidArgument("rules", fmt.Sprintf("%d rules, want 1..%d", n, domain.RulesPerRequestMax))
	}
	cmds := make([]domain.Command, len(req.GetRules()))
	for i, r := range req.GetRules() {
		cmds[i] = DefineRuleOf(r)
	}
	results, err := s.cmd.submit(ctx, req.GetLedger(), cmds, commands.SubmitOptions{})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.DefineRulesResponse{Results: results}, nil
}

// ListRules lists the rules in force, in id order, from the ledger's writer
// (its state holds them): the answer reflects the head.
func (s *MonitoringServer) ListRules(ctx context.Context, req *ledgerv1.ListRulesRequest) (*ledgerv1.ListRulesResponse, error) {
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = domain.RulesMax
	}
	if limit > domain.RulesMax {
		return nil, invalidArgument("limit", fmt.Sprintf("%d, at most %d", limit, domain.RulesMax))
	}
	w, err := s.cmd.writers.Writer(req.GetLedger())
	if err != nil {
		return nil, statusOf(err)
	}
	var (
		rules []domain.RuleVersion
		head  uint64
	)
	if err := w.Read(ctx, func(st *domain.State) { rules, head = st.Rules(), st.Position() }); err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.ListRulesResponse{Position: head}
	for _, r := range rules {
		if r.Rule.ID <= req.GetCursor() {
			continue
		}
		if len(resp.Rules) == limit {
			resp.NextCursor = resp.Rules[len(resp.Rules)-1].GetRule().GetId()
			break
		}
		resp.Rules = append(resp.Rules, &ledgerv1.RuleView{Rule: RuleProto(&r.Rule), Version: r.Version, Position: r.Position})
	}
	return resp, nil
}

// DefineRuleOf is the command defining r. Enum values the domain does not
// know become values its validation refuses, naming the field.
func DefineRuleOf(r *ledgerv1.Rule) *domain.DefineRule {
	c := &domain.DefineRule{Rule: domain.Rule{ID: r.GetId(), Description: r.GetDescription(), Disabled: r.GetDisabled(),
		AccountPattern: r.GetAccountPattern(), AccountMetadata: r.GetAccountMetadata(), Asset: r.GetAsset()}}
	switch r.GetMode() {
	case ledgerv1.RuleMode_RULE_MODE_UNSPECIFIED, ledgerv1.RuleMode_RULE_MODE_AFTER_COMMIT:
		c.Rule.Mode = domain.ModeAfterCommit
	case ledgerv1.RuleMode_RULE_MODE_BEFORE_COMMIT:
		c.Rule.Mode = domain.ModeBeforeCommit
	default:
		c.Rule.Mode = domain.RuleMode("mode " + strconv.Itoa(int(r.GetMode())))
	}
	switch k := r.GetKind().(type) {
	case *ledgerv1.Rule_Threshold:
		c.Rule.Threshold = &domain.ThresholdRule{Side: sideOf(k.Threshold.GetSide())}
		c.ThresholdAmount = k.Threshold.GetAmount()
	case *ledgerv1.Rule_Velocity:
		c.Rule.Velocity = &domain.VelocityRule{Side: sideOf(k.Velocity.GetSide()), WindowSeconds: k.Velocity.GetWindowSeconds(),
			MaxCount: k.Velocity.GetMaxCount()}
		c.MaxSum = k.Velocity.GetMaxSum()
	case *ledgerv1.Rule_BalanceCrossing:
		b := &domain.BalanceCrossingRule{}
		switch k.BalanceCrossing.GetCrossing() {
		case ledgerv1.Crossing_CROSSING_BELOW:
			b.Crossing = domain.CrossingBelow
		case ledgerv1.Crossing_CROSSING_ABOVE:
			b.Crossing = domain.CrossingAbove
		}
		c.Rule.BalanceCrossing = b
		c.Level = k.BalanceCrossing.GetLevel()
	case *ledgerv1.Rule_NewCounterparty:
		c.Rule.NewCounterparty = &domain.NewCounterpartyRule{}
	case *ledgerv1.Rule_DormantReactivated:
		c.Rule.DormantReactivated = &domain.DormantReactivatedRule{DormantSeconds: k.DormantReactivated.GetDormantSeconds()}
	}
	for _, a := range r.GetActions() {
		switch a {
		case ledgerv1.RuleAction_RULE_ACTION_FREEZE:
			c.Rule.Actions = append(c.Rule.Actions, domain.ActionFreeze)
		case ledgerv1.RuleAction_RULE_ACTION_HOLD:
			c.Rule.Actions = append(c.Rule.Actions, domain.ActionHold)
		default:
			c.Rule.Actions = append(c.Rule.Actions, domain.RuleAction(a.String()))
		}
	}
	c.Rule.HoldAccount = r.GetHoldAccount()
	return c
}

// sideOf maps a rule's side; an unknown value becomes one the domain refuses.
func sideOf(s ledgerv1.Side) domain.Side {
	switch s {
	case ledgerv1.Side_SIDE_UNSPECIFIED:
		return 0
	case ledgerv1.Side_SIDE_DEBIT:
		return domain.SideDebit
	case ledgerv1.Side_SIDE_CREDIT:
		return domain.SideCredit
	}
	return domain.Side(255)
}

func sideProto(s domain.Side) ledgerv1.Side {
	switch s {
	case domain.SideDebit:
		return ledgerv1.Side_SIDE_DEBIT
	case domain.SideCredit:
		return ledgerv1.Side_SIDE_CREDIT
	}
	return ledgerv1.Side_SIDE_UNSPECIFIED
}

// RuleProto is a rule on the wire.
func RuleProto(r *domain.Rule) *ledgerv1.Rule {
	out := &ledgerv1.Rule{Id: r.ID, Description: r.Description, Disabled: r.Disabled, AccountPattern: r.AccountPattern,
		AccountMetadata: r.AccountMetadata, Asset: r.Asset, Mode: ledgerv1.RuleMode_RULE_MODE_AFTER_COMMIT}
	if r.Mode == domain.ModeBeforeCommit {
		out.Mode = ledgerv1.RuleMode_RULE_MODE_BEFORE_COMMIT
	}
	switch {
	case r.Threshold != nil:
		out.Kind = &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: r.Threshold.Amount.String(),
			Side: sideProto(r.Threshold.Side)}}
	case r.Velocity != nil:
		v := &ledgerv1.VelocityRule{Side: sideProto(r.Velocity.Side), WindowSeconds: r.Velocity.WindowSeconds,
			MaxCount: r.Velocity.MaxCount}
		if r.Velocity.MaxSum != nil {
			v.MaxSum = r.Velocity.MaxSum.String()
		}
		out.Kind = &ledgerv1.Rule_Velocity{Velocity: v}
	case r.BalanceCrossing != nil:
		c := ledgerv1.Crossing_CROSSING_BELOW
		if r.BalanceCrossing.Crossing == domain.CrossingAbove {
			c = ledgerv1.Crossing_CROSSING_ABOVE
		}
		out.Kind = &ledgerv1.Rule_BalanceCrossing{BalanceCrossing: &ledgerv1.BalanceCrossingRule{
			Level: r.BalanceCrossing.Level.String(), Crossing: c}}
	case r.NewCounterparty != nil:
		out.Kind = &ledgerv1.Rule_NewCounterparty{NewCounterparty: &ledgerv1.NewCounterpartyRule{}}
	case r.DormantReactivated != nil:
		out.Kind = &ledgerv1.Rule_DormantReactivated{DormantReactivated: &ledgerv1.DormantReactivatedRule{
			DormantSeconds: r.DormantReactivated.DormantSeconds}}
	}
	for _, a := range r.Actions {
		if a == domain.ActionHold {
			out.Actions = append(out.Actions, ledgerv1.RuleAction_RULE_ACTION_HOLD)
		} else {
			out.Actions = append(out.Actions, ledgerv1.RuleAction_RULE_ACTION_FREEZE)
		}
	}
	out.HoldAccount = r.HoldAccount
	return out
}
