package projections_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/projections/projectortest"
)

// Shape of the alerts contract's log.
const (
	alertUsers     = 6
	alertSteps     = 150
	alertStepBatch = 3 // commands per submit: several events per append
)

// alertRules are after-commit rules of every kind, one with the freeze
// action, one disabled; fresh commands each call (Validate writes to them).
func alertRules() []domain.Command {
	return []domain.Command{
		&domain.DefineRule{Rule: domain.Rule{ID: "big", Asset: "USD", AccountPattern: "users:*",
			Threshold: &domain.ThresholdRule{Side: domain.SideDebit}}, ThresholdAmount: "500"},
		&domain.DefineRule{Rule: domain.Rule{ID: "busy", Asset: "USD", AccountPattern: "users:*",
			Velocity: &domain.VelocityRule{Side: domain.SideDebit, WindowSeconds: 1800, MaxCount: 4}}, MaxSum: "1000"},
		&domain.DefineRule{Rule: domain.Rule{ID: "low", Asset: "USD", AccountPattern: "users:*",
			BalanceCrossing: &domain.BalanceCrossingRule{Crossing: domain.CrossingBelow}, Actions: []domain.RuleAction{domain.ActionFreeze}}, Level: "100"},
		&domain.DefineRule{Rule: domain.Rule{ID: "new-cp", Asset: "USD", AccountMetadata: map[string]string{"tier": "gold"},
			NewCounterparty: &domain.NewCounterpartyRule{}}},
		&domain.DefineRule{Rule: domain.Rule{ID: "dormant", Asset: "USD", AccountPattern: "users:*",
			DormantReactivated: &domain.DormantReactivatedRule{DormantSeconds: 3600}}},
		&domain.DefineRule{Rule: domain.Rule{ID: "off", Asset: "USD", Disabled: true,
			Threshold: &domain.ThresholdRule{}}, ThresholdAmount: "0.01"},
	}
}

// alertsContract: after-commit rules of every kind (a threshold redefined
// halfway), transfers between users and the world, holds posted and voided,
// hours of quiet, on a clock the test moves, projected live beside the
// writer in small batches. The alerts table equals a replay of the log
// through domain.Evaluator, and every enabled rule fired.
func alertsContract(t *testing.T) (projectortest.Log, projectortest.Case) {
	clock := newMvClock(time.Now().UTC().Truncate(time.Microsecond).Add(-48 * time.Hour))
	e := newClockedEnv(t, clock)
	runner := e.startRunner(t.Context(), projections.NewAlerts(), batches{src: e.natsSource(), size: 7})
	users := make([]string, alertUsers)
	setup := []domain.Command{&domain.DefineAsset{Code: "USD", Scale: 2},
		&domain.OpenAccount{ID: "world", Asset: "USD", Normal: domain.SideCredit}}
	for i := range users {
		users[i] = fmt.Sprintf("users:%d", i)
		var meta map[string]string
		if i < 2 {
			meta = map[string]string{"tier": "gold"}
		}
		setup = append(setup, &domain.OpenAccount{ID: users[i], Asset: "USD", Normal: domain.SideCredit, Metadata: meta})
	}
	// Some transfers before any rule: the projector starts its evaluator
	// at the first RuleDefined from the log before it.
	for i, u := range users {
		setup = append(setup, &domain.CreateTransfer{ID: fmt.Sprintf("fund-%d", i),
			Postings: []domain.PostingInput{{Debit: "world", Credit: u, Asset: "USD", Amount: "300.00"}}})
	}
	e.submit(setup)
	e.submit(alertRules())
	raiser := &alertRaiser{e: e, ev: domain.NewEvaluator(e.ledger, nil)}

	rng := rand.New(rand.NewPCG(14, 1))
	var (
		cmds []domain.Command
		hold string
	)
	for i := range alertSteps {
		clock.advance(time.Duration(1+rng.IntN(10)) * time.Minute)
		if i%40 == 39 {
			clock.advance(2 * time.Hour) // everyone dormant
		}
		from, to := "world", users[rng.IntN(alertUsers)]
		switch rng.IntN(3) {
		case 0:
			from, to = to, "world"
		case 1:
			from = users[rng.IntN(alertUsers)]
			if from == to {
				from = "world"
			}
		}
		posting := []domain.PostingInput{{Debit: from, Credit: to, Asset: "USD",
			Amount: domain.UnitsFromInt64(100 + rng.Int64N(70_000)).Format(2)}}
		switch {
		case hold != "" && i%2 == 0:
			cmds = append(cmds, &domain.PostPending{ID: fmt.Sprintf("post-%d", i), PendingID: hold})
			hold = ""
		case hold != "":
			cmds = append(cmds, &domain.VoidPending{ID: fmt.Sprintf("void-%d", i), PendingID: hold})
			hold = ""
		case i%10 == 5:
			hold = fmt.Sprintf("hold-%d", i)
			cmds = append(cmds, &domain.CreateTransfer{ID: hold, Postings: posting, Pending: true, TimeoutSeconds: 86_400})
		default:
			cmds = append(cmds, &domain.CreateTransfer{ID: fmt.Sprintf("t-%d", i), Postings: posting})
		}
		if i == alertSteps/2 {
			cmds = append(cmds, &domain.DefineRule{Rule: domain.Rule{ID: "big", Asset: "USD", AccountPattern: "users:*",
				Threshold: &domain.ThresholdRule{}}, ThresholdAmount: "600"})
		}
		if len(cmds) >= alertStepBatch {
			e.submit(cmds)
			cmds = nil
			// The alerts of the first two thirds are raised right after
			// their transfers (one batch of the projector may hold both),
			// the last third's are not.
			raiser.raiseNew(i < alertSteps*2/3)
		}
	}
	e.submit(cmds)
	head, _, err := e.store.Head(t.Context(), e.ledger)
	testenv.NoError(t, err)
	waitFor(t, runner, head)
	return projectortest.Log{Pool: e.pool, Ledger: e.ledger, Head: head}, projectortest.Case{
		New:            func() projections.Projector { return projections.NewAlerts() },
		BatchDependent: batchDependent,
		Check: func(t *testing.T) {
			e := e.in(t)
			// Sorted alike: the evaluator's order within a position is not
			// the ids'.
			want, got := e.replayAlerts(head), e.readAlerts()
			slices.Sort(want)
			slices.Sort(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("alerts differ from a replay (-replay +read model):\n%s", diff)
			}
			fired, unraised := map[string]int{}, 0
			for _, a := range got {
				fired[strings.Fields(a)[1]]++
				if strings.HasSuffix(a, " raised=0") {
					unraised++
				}
			}
			if unraised == 0 || unraised == len(got) {
				t.Errorf("%d of %d alerts not raised: the log should raise some and leave some", unraised, len(got))
			}
			t.Logf("%d events, alerts by rule: %v", head, fired)
			for _, r := range []string{"rule=big/1", "rule=big/2", "rule=busy/1", "rule=low/1", "rule=new-cp/1", "rule=dormant/1"} {
				if fired[r] == 0 {
					t.Errorf("no alert of %s: the log should fire every enabled rule", r)
				}
			}
			if fired["rule=off/1"] != 0 {
				t.Errorf("the disabled rule fired %d times", fired["rule=off/1"])
			}
		},
	}
}

// alertRaiser raises a log's alerts as ledgerd's alerter does (RaiseAlert,
// in order), so that the log holds AlertRaised events after their alerts.
type alertRaiser struct {
	e   *env
	ev  *domain.Evaluator
	pos uint64
}

// raiseNew folds the log's new events and, if raise, raises their alerts.
func (r *alertRaiser) raiseNew(raise bool) {
	t := r.e.t
	var cmds []domain.Command
	for {
		recs, err := r.e.store.Read(t.Context(), r.e.ledger, r.pos+1, 1000)
		testenv.NoError(t, err)
		if len(recs) == 0 {
			break
		}
		for _, rec := range recs {
			de, err := domain.UnmarshalEvent(rec.Type, rec.SchemaVersion, rec.Payload)
			testenv.NoError(t, err)
			for _, a := range r.ev.Apply(rec.Position, rec.RecordedAt, de) {
				cmds = append(cmds, &domain.RaiseAlert{Alert: domain.AlertRaisedOf(&a)})
			}
			r.pos = rec.Position
		}
	}
	if raise && len(cmds) > 0 {
		r.e.submit(cmds)
	}
}

// formatAlert is an alert as the contract compares it; raised is the
// position of its AlertRaised, 0 for none.
func formatAlert(id, rule string, version uint32, transfer, account string, cps []string, asset string,
	figures map[string]string, freeze bool, recorded, effective time.Time, raised uint64) string {
	f, _ := json.Marshal(figures) // sorted keys
	return fmt.Sprintf("%s rule=%s/%d transfer=%s account=%s counterparties=%v asset=%s figures=%s freeze=%t recorded=%s effective=%s raised=%d",
		id, rule, version, transfer, account, cps, asset, f, freeze, recorded.UTC().Format(time.RFC3339Nano), effective.UTC().Format(time.RFC3339Nano),
		raised)
}

// replayAlerts folds the log through upTo through a fresh domain.Evaluator.
func (e *env) replayAlerts(upTo uint64) []string {
	t := e.t
	t.Helper()
	ev := domain.NewEvaluator(e.ledger, nil)
	var alerts []domain.Alert
	raised := map[string]uint64{}
	for pos := uint64(0); pos < upTo; {
		recs, err := e.store.Read(t.Context(), e.ledger, pos+1, int(upTo-pos))
		testenv.NoError(t, err)
		if len(recs) == 0 {
			t.Fatalf("log ends at %d, want %d", pos, upTo)
		}
		for _, rec := range recs {
			de, err := domain.UnmarshalEvent(rec.Type, rec.SchemaVersion, rec.Payload)
			testenv.NoError(t, err)
			alerts = append(alerts, ev.Apply(rec.Position, rec.RecordedAt, de)...)
			if r, ok := de.(domain.AlertRaised); ok {
				raised[r.ID] = rec.Position
			}
			pos = rec.Position
		}
	}
	out := make([]string, 0, len(alerts))
	for _, a := range alerts {
		out = append(out, formatAlert(a.ID, a.RuleID, a.RuleVersion, a.TransferID, a.Account, a.Counterparties, a.Asset,
			a.Figures, a.Freeze, a.RecordedAt, a.EffectiveAt, raised[a.ID]))
	}
	return out
}

// readAlerts reads the alerts table in position and id order.
func (e *env) readAlerts() []string {
	t := e.t
	t.Helper()
	rows, err := e.pool.Query(t.Context(), `SELECT id, rule_id, rule_version, transfer_id, account, counterparties, asset,
			figures::text, freezes, recorded_at, coalesce(effective_at, 'epoch'::timestamptz), coalesce(raised, 0) FROM alerts
		WHERE ledger = $1 ORDER BY position, id`, e.ledger)
	testenv.NoError(t, err)
	var (
		out                                []string
		id, rule, transfer, account, asset string
		figuresText                        string
		version                            int32
		cps                                []string
		freeze                             bool
		recorded, effective                time.Time
		raised                             int64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &rule, &version, &transfer, &account, &cps, &asset, &figuresText, &freeze,
		&recorded, &effective, &raised}, func() error {
		var figures map[string]string
		if err := json.Unmarshal([]byte(figuresText), &figures); err != nil {
			return err
		}
		if effective.Equal(time.Unix(0, 0)) {
			effective = time.Time{}
		}
		if len(cps) == 0 {
			cps = nil
		}
		out = append(out, formatAlert(id, rule, uint32(version), transfer, account, slices.Clone(cps), asset, figures, freeze,
			recorded, effective, uint64(raised)))
		return nil
	})
	testenv.NoError(t, err)
	return out
}
