package audit

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
)

// Alerts is what Verify asks of ledgerd's MonitoringService: a
// ledgerv1.MonitoringServiceClient is one.
type Alerts interface {
	ListAlerts(ctx context.Context, in *ledgerv1.ListAlertsRequest, opts ...grpc.CallOption) (*ledgerv1.ListAlertsResponse, error)
}

// alertsReplayMax bounds the alerts a verification replays and compares:
// each is kept (about 300 bytes) until the comparison. Beyond it the report
// says the rest were not compared.
const alertsReplayMax = 1_000_000

// alertsPage is the page size of the comparison's ListAlerts (its most).
const alertsPage = 1000

// alertReplay folds the log through domain.Evaluator, the alerts
// projection's own evaluator, and keeps each alert as compared.
type alertReplay struct {
	ev        *domain.Evaluator
	alerts    []alertLine
	truncated bool
	// raised is how many of alerts the log's AlertRaised events raised:
	// they raise them in order, each once, without a gap.
	raised int
	// diverged is the first AlertRaised that does not raise the next alert
	// as the replay has it. (Where a rule's hold stands, and whether one
	// said refused is, the import's checks tell: domain.CheckAlertHolds,
	// CheckRaised.)
	diverged *Divergence
	// compare says the alerts are compared with the read model's after the
	// replay; else those raised are let go as the log raises them.
	compare bool
	// freezing are the alerts of rules that freeze not acted on yet, in
	// alert order. A freeze for an alert must be for one of them, on its
	// account (the writer takes the alert from the read model); freezes act
	// in alert order, so those before it were passed over.
	freezing []freezingAlert
}

// freezingAlert is an alert of a rule that freezes.
type freezingAlert struct {
	mark    domain.AlertMark
	account string
}

// alertLine is an alert as compared: its position, id and the rest of its
// fields by name.
type alertLine struct {
	position uint64
	id       string
	fields   []field // expected values only
	// raisedAt is the position of the alert's AlertRaised, 0 for none.
	raisedAt uint64
}

// apply folds the event at pos of ledger's log. The evaluator is made at
// the first event: a file names its ledger only once read.
func (a *alertReplay) apply(ledger string, pos uint64, recordedAt time.Time, e domain.Event) {
	if a.ev == nil {
		a.ev = domain.NewEvaluator(ledger, nil)
	}
	switch e := e.(type) {
	case domain.AlertRaised:
		a.checkRaised(pos, &e)
		return
	case domain.AccountFrozen:
		if e.Alert != nil {
			a.checkFreeze(pos, &e)
		}
	}
	fired := a.ev.Apply(pos, recordedAt, e)
	slices.SortFunc(fired, func(x, y domain.Alert) int { return strings.Compare(x.ID, y.ID) })
	for i := range fired {
		if len(a.alerts) >= alertsReplayMax {
			a.truncated = true
			return
		}
		a.alerts = append(a.alerts, lineOfAlert(&fired[i]))
		if fired[i].Freeze {
			a.freezing = append(a.freezing, freezingAlert{domain.AlertMark{Position: fired[i].Position, ID: fired[i].ID}, fired[i].Account})
		}
	}
}

// checkFreeze checks a freeze for an alert against the replay: a freezing
// rule's alert raised before it, not acted on yet, on the account frozen.
// Freezes act in alert order: those passed over (an account closed since)
// are let go.
func (a *alertReplay) checkFreeze(pos uint64, e *domain.AccountFrozen) {
	if a.diverged != nil || a.truncated {
		return
	}
	next := 0
	for next < len(a.freezing) && e.Alert.After(a.freezing[next].mark) {
		next++ // passed over
	}
	if next == len(a.freezing) || a.freezing[next].mark.After(*e.Alert) || a.freezing[next].account != e.ID {
		a.diverged = &Divergence{Kind: KindAlert, Position: pos, Field: "freeze", Expected: "a freeze for an alert of a rule that freezes, on its account",
			Found: fmt.Sprintf("account %s frozen for alert %s", e.ID, e.Alert.ID), Detail: "AccountFrozen for alert " + e.Alert.ID + " (the log)"}
		return
	}
	a.freezing = a.freezing[next+1:]
}

// lineOfAlert is al as compared.
// Times are compared to the microsecond, as the read model keeps them (an
// imported log may hold an effective time with nanoseconds).
func lineOfAlert(al *domain.Alert) alertLine {
	var effective string
	if !al.EffectiveAt.IsZero() {
		effective = alertTime(al.EffectiveAt)
	}
	return alertLine{position: al.Position, id: al.ID, fields: alertFields(al.RuleID, al.RuleVersion, al.TransferID, al.Account,
		al.Counterparties, al.Asset, al.Figures, al.Freeze, al.HoldAccount, alertTime(al.RecordedAt), effective)}
}

// alertTime is t as alerts are compared: to the microsecond, in UTC.
func alertTime(t time.Time) string {
	return t.Truncate(time.Microsecond).UTC().Format(time.RFC3339Nano)
}

// checkRaised checks the AlertRaised at pos against the replay: it must
// raise the next alert not raised yet, field for field. The writer checks
// only its form, its order and what it names: what the alert says is the
// alerts projection's, and is trusted only once it agrees with the replay.
func (a *alertReplay) checkRaised(pos uint64, r *domain.AlertRaised) {
	if a.diverged != nil || a.truncated {
		return
	}
	diverge := func(f, expected, found string) {
		a.diverged = &Divergence{Kind: KindAlert, Position: pos, Field: f, Expected: expected, Found: found,
			Detail: "AlertRaised of alert " + r.ID + " (the log)"}
	}
	if a.raised == len(a.alerts) {
		diverge("id", "no alert to raise", r.ID)
		return
	}
	// An alert raised in a log imported under another name names that
	// ledger: the same alert by its key.
	w := &a.alerts[a.raised]
	if domain.AlertKey(w.id) != domain.AlertKey(r.ID) {
		diverge("id", w.id, r.ID)
		return
	}
	al := r.Alert()
	got := lineOfAlert(&al)
	for i := range got.fields {
		got.fields[i].expected, got.fields[i].found = w.fields[i].expected, got.fields[i].expected
	}
	if f := firstDiff(got.fields); f != nil {
		diverge(f.name, f.expected, f.found)
		return
	}
	w.raisedAt = pos
	a.raised++
	if !a.compare && a.raised >= 1024 && a.raised*2 >= len(a.alerts) {
		n := copy(a.alerts, a.alerts[a.raised:])
		clear(a.alerts[n:])
		a.alerts, a.raised = a.alerts[:n], 0
	}
}

// alertFields are an alert's compared fields, in a fixed order.
func alertFields(rule string, version uint32, transfer, account string, cps []string, asset string,
	figures map[string]string, freeze bool, hold, recorded, effective string) []field {
	var fig []string
	for _, k := range slices.Sorted(maps.Keys(figures)) {
		fig = append(fig, k+"="+figures[k])
	}
	return []field{
		{name: "rule_id", expected: rule},
		{name: "rule_version", expected: fmt.Sprint(version)},
		{name: "transfer_id", expected: transfer},
		{name: "account", expected: account},
		{name: "counterparties", expected: strings.Join(cps, ",")},
		{name: "asset", expected: asset},
		{name: "figures", expected: strings.Join(fig, " ")},
		{name: "freeze", expected: fmt.Sprint(freeze)},
		{name: "hold_account", expected: hold},
		{name: "recorded_at", expected: recorded},
		{name: "effective_at", expected: effective},
	}
}

func servedFields(a *ledgerv1.Alert) []field {
	var effective string
	if a.GetEffectiveAt() != nil {
		effective = alertTime(a.GetEffectiveAt().AsTime())
	}
	return alertFields(a.GetRuleId(), a.GetRuleVersion(), a.GetTransferId(), a.GetAccount(), a.GetCounterparties(), a.GetAsset(),
		a.GetFigures(), slices.Contains(a.GetActions(), ledgerv1.RuleAction_RULE_ACTION_FREEZE), a.GetHoldAccount(),
		alertTime(a.GetRecordedAt().AsTime()), effective)
}

// alerts compares the alerts served up to the verified head To with the
// replay's, in position then id order: the first alert missing, extra or
// different is the divergence, at its position.
func (v *verifier) alerts(ctx context.Context) (*Divergence, error) {
	if v.alertReplay == nil || v.opts.Alerts == nil {
		return nil, nil
	}
	want := v.alertReplay.alerts
	at := v.rep.To
	next := 0
	req := &ledgerv1.ListAlertsRequest{Ledger: v.rep.Ledger, MinPosition: at, Limit: alertsPage}
	diverge := func(pos uint64, id, f, expected, found string) *Divergence {
		return &Divergence{Kind: KindAlert, Position: pos, Field: f, Expected: expected, Found: found,
			Detail: "alert " + id + " (alerts projection)"}
	}
	for {
		resp, err := v.listAlerts(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, got := range resp.GetAlerts() {
			if got.GetPosition() > at || (v.alertReplay.truncated && next == len(want)) {
				return nil, nil // after the verified head, or past the replay's bound
			}
			if next == len(want) {
				return diverge(got.GetPosition(), got.GetId(), "id", "no alert", got.GetId()), nil
			}
			w := &want[next]
			if w.id != got.GetId() {
				// The first of the two in alert order is the one missing
				// on the other side.
				if w.position < got.GetPosition() || w.position == got.GetPosition() && w.id < got.GetId() {
					return diverge(w.position, w.id, "id", w.id, cmp.Or(got.GetId(), "no alert")), nil
				}
				return diverge(got.GetPosition(), got.GetId(), "id", "no alert", got.GetId()), nil
			}
			fields := servedFields(got)
			for i := range fields {
				fields[i].expected, fields[i].found = w.fields[i].expected, fields[i].expected
			}
			if f := firstDiff(fields); f != nil {
				return diverge(w.position, w.id, f.name, f.expected, f.found), nil
			}
			// Where the alert was raised: an AlertRaised after the
			// verified head is not yet, for the replay; past the replay's
			// bound its AlertRaised events are not checked, nor this; a
			// server before raised_position serves none.
			raised := got.GetRaisedPosition()
			if resp.GetRaisedPositionsServed() && !v.alertReplay.truncated && w.raisedAt != raised && (raised <= at || w.raisedAt != 0) {
				return diverge(w.position, w.id, "raised_position", fmt.Sprint(w.raisedAt), fmt.Sprint(raised)), nil
			}
			next++
		}
		v.progress("alerts", uint64(next), uint64(len(want)))
		if resp.GetNextCursor() == "" {
			break
		}
		req.Cursor = resp.GetNextCursor()
	}
	if next < len(want) {
		w := &want[next]
		return diverge(w.position, w.id, "id", w.id, "no alert"), nil
	}
	return nil, nil
}

func (v *verifier) listAlerts(ctx context.Context, req *ledgerv1.ListAlertsRequest) (*ledgerv1.ListAlertsResponse, error) {
	return unary(ctx, fmt.Sprintf("alerts from %q", req.GetCursor()), v.opts.Alerts.ListAlerts, req)
}
