package domain_test

import (
	"bytes"
	"errors"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ledgerd/ledger/domain"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with the current output")

func usd(units int64) domain.Amount {
	return domain.Amount{Units: domain.UnitsFromInt64(units), Scale: 2}
}

func amountPtr(a domain.Amount) *domain.Amount { return &a }

// goldenEvents are the event contract: one golden file each, under
// testdata/events/<name>.json. Changing one is changing the public contract.
var goldenEvents = []struct {
	name  string
	event domain.Event
}{
	{"asset_defined", domain.AssetDefined{Code: "USD", Scale: 2}},
	{"asset_defined_scale_18", domain.AssetDefined{Code: "ETH", Scale: 18}},
	{"account_opened", domain.AccountOpened{ID: "users:42:wallet", Asset: "USD", Normal: domain.SideCredit}},
	{"account_opened_bounds_metadata", domain.AccountOpened{
		ID:         "merchants:7:settlement",
		Asset:      "USD",
		Normal:     domain.SideDebit,
		MinBalance: amountPtr(usd(-10_000)),
		MaxBalance: amountPtr(usd(500_000)),
		Metadata:   map[string]string{"owner": "merchant 7", "kind": "settlement", "tier": "gold"},
	}},
	{"account_opened_min_zero", domain.AccountOpened{
		ID: "users:43:wallet", Asset: "USD", Normal: domain.SideCredit, MinBalance: amountPtr(usd(0)),
	}},
	{"transfer_committed", domain.TransferCommitted{
		ID: "fx-2026-0001",
		Postings: []domain.Posting{
			{Debit: "users:42:wallet", Credit: "fx:usd", Asset: "USD", Amount: usd(10_050)},
			{Debit: "fx:btc", Credit: "users:42:btc", Asset: "BTC", Amount: domain.Amount{Units: domain.UnitsFromInt64(12_345), Scale: 8}},
		},
		Reference:   "quote 9f2c",
		Metadata:    map[string]string{"rate": "81400.00", "channel": "app", "b": "\"quoted\" <&>"},
		EffectiveAt: time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC),
	}},
	{"transfer_committed_minimal", domain.TransferCommitted{
		ID:          "t1",
		Postings:    []domain.Posting{{Debit: "world", Credit: "users:42:wallet", Asset: "JPY", Amount: domain.Amount{Units: domain.UnitsFromInt64(500), Scale: 0}}},
		EffectiveAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}},
	{"transfer_committed_38_digits", domain.TransferCommitted{
		ID: "big",
		Postings: []domain.Posting{{Debit: "a", Credit: "b", Asset: "ETH",
			Amount: domain.Amount{Units: unitsFromBig(unitsMaxBig), Scale: 18}}},
		EffectiveAt: time.Date(2026, 12, 31, 23, 59, 59, 999999000, time.UTC),
	}},
	{"transfer_pending", domain.TransferPending{
		ID:          "auth-2026-0001",
		Postings:    []domain.Posting{{Debit: "users:42:wallet", Credit: "merchants:7:settlement", Asset: "USD", Amount: usd(10_000)}},
		Reference:   "card auth 55a1",
		Metadata:    map[string]string{"mcc": "5411"},
		EffectiveAt: time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC),
	}},
	{"transfer_pending_expiry", domain.TransferPending{
		ID: "auth-2026-0002",
		Postings: []domain.Posting{
			{Debit: "users:42:wallet", Credit: "fx:usd", Asset: "USD", Amount: usd(10_050)},
			{Debit: "fx:btc", Credit: "users:42:btc", Asset: "BTC", Amount: btc(12_345)},
		},
		EffectiveAt:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		TimeoutSeconds: 3600,
		ExpiresAt:      timePtr(time.Date(2026, 1, 2, 4, 4, 5, 678901000, time.UTC)),
	}},
	{"pending_posted_partial", domain.PendingPosted{
		ID:        "capture-2026-0001",
		PendingID: "auth-2026-0002",
		Postings: []domain.HeldPosting{
			{Debit: "users:42:wallet", Credit: "fx:usd", Asset: "USD", Amount: usd(4_250), Held: usd(10_050)},
			{Debit: "fx:btc", Credit: "users:42:btc", Asset: "BTC", Amount: btc(0), Held: btc(12_345)},
		},
		Reference:   "partial capture",
		Metadata:    map[string]string{"order": "7"},
		EffectiveAt: time.Date(2026, 1, 2, 3, 30, 0, 1000, time.UTC),
	}},
	{"pending_voided", domain.PendingVoided{
		ID:        "void-2026-0001",
		PendingID: "auth-2026-0001",
		Postings:  []domain.Posting{{Debit: "users:42:wallet", Credit: "merchants:7:settlement", Asset: "USD", Amount: usd(10_000)}},
		Reference: "customer cancelled",
	}},
	{"pending_expired", domain.PendingExpired{
		PendingID: "auth-2026-0003",
		Postings:  []domain.Posting{{Debit: "users:43:wallet", Credit: "merchants:7:settlement", Asset: "JPY", Amount: domain.Amount{Units: domain.UnitsFromInt64(500), Scale: 0}}},
	}},
	{"transfer_reversed", domain.TransferReversed{
		ID:               "refund-2026-0001",
		TransferID:       "fx-2026-0001",
		TransferPosition: 1234,
		Postings: []domain.Posting{
			{Debit: "fx:usd", Credit: "users:42:wallet", Asset: "USD", Amount: usd(5_025)},
			{Debit: "users:42:btc", Credit: "fx:btc", Asset: "BTC", Amount: btc(0)},
		},
		Reference:   "partial refund",
		Metadata:    map[string]string{"ticket": "T-9"},
		EffectiveAt: time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC),
	}},
	{"account_bounds_changed", domain.AccountBoundsChanged{
		ID: "users:42:wallet", MinBalance: amountPtr(usd(-5_000)), MaxBalance: amountPtr(usd(100_000)),
	}},
	{"account_bounds_changed_none", domain.AccountBoundsChanged{ID: "users:42:wallet"}},
	{"account_metadata_set", domain.AccountMetadataSet{
		ID: "users:42:wallet", Metadata: map[string]string{"tier": "gold", "kyc": "verified <2026>"},
	}},
	{"account_metadata_set_cleared", domain.AccountMetadataSet{ID: "users:42:wallet"}},
	{"account_closed", domain.AccountClosed{ID: "users:42:wallet"}},
	{"statement_imported", domain.StatementImported{
		Account: "bank:acme:usd", Source: "acme-bank", ExternalID: "2026-01-02/000123", Amount: usd(125_000),
		Direction: domain.SideCredit, ValueDate: "2026-01-02", Reference: "INV-77", Description: "Wire from \"Globex\"",
	}},
	{"statement_imported_minimal", domain.StatementImported{
		Account: "bank:acme:usd", Source: "acme-bank", ExternalID: "l1", Amount: usd(1), Direction: domain.SideDebit, ValueDate: "2026-01-03",
	}},
	{"matching_rules_set", domain.MatchingRulesSet{Account: "bank:acme:usd", Rules: []domain.MatchingRule{
		{Kind: domain.RuleReference},
		{Kind: domain.RuleAmountDate, DateWindowDays: 3, AmountTolerance: amountPtr(usd(5))},
		{Kind: domain.RuleSplit, DateWindowDays: 2, GroupMax: 4},
	}}},
	{"matched_manually", domain.MatchedManually{ID: "m-1", Account: "bank:acme:usd",
		Lines:     []domain.LineRef{{Source: "acme-bank", ExternalID: "2026-01-02/000123"}},
		Movements: []domain.MovementRef{{TransferID: "t-9", PostingIndex: 0}, {TransferID: "t-10", PostingIndex: 1}},
		Reason:    "customer paid two invoices at once",
	}},
	{"unmatched_line", domain.Unmatched{Account: "bank:acme:usd", Line: &domain.LineRef{Source: "acme-bank", ExternalID: "l1"}, Reason: "wrong invoice"}},
	{"unmatched_movement", domain.Unmatched{Account: "bank:acme:usd", Movement: &domain.MovementRef{TransferID: "t-9", PostingIndex: 2}, Reason: "duplicate"}},
	{"period_closed_first", domain.PeriodClosed{
		End: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		TrialBalance: []domain.PeriodAssetTotal{
			{Asset: "BTC", DebitsPosted: "0.00012345", CreditsPosted: "0.00012345"},
			{Asset: "USD", DebitsPosted: "100.50", CreditsPosted: "100.50"},
		},
		Accounts:      4,
		ClosingDigest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
	}},
	{"period_closed", domain.PeriodClosed{
		Start:         timePtr(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)),
		End:           time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC),
		TrialBalance:  []domain.PeriodAssetTotal{{Asset: "USD", DebitsPosted: "0.00", CreditsPosted: "0.00"}},
		Accounts:      2,
		ClosingDigest: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	}},
	{"category_defined_root", domain.CategoryDefined{Name: "assets"}},
	{"category_defined", domain.CategoryDefined{Name: "assets:bank", Parent: "assets",
		Patterns: []string{"bank:*", "bank:acme:usd"}, Description: "Cash at banks, \"nostro\" accounts"}},
	{"account_frozen", domain.AccountFrozen{ID: "users:42:wallet", Reason: "card reported stolen"}},
	{"account_frozen_alert", domain.AccountFrozen{ID: "users:42:wallet", Reason: "rule big-debits",
		Alert: &domain.AlertMark{Position: 1234, ID: "main:1234:big-debits:users:42:wallet"}}},
	{"account_unfrozen", domain.AccountUnfrozen{ID: "users:42:wallet", Reason: "card found"}},
	{"rule_defined_threshold", domain.RuleDefined{Version: 1, Rule: domain.Rule{ID: "big-debits", Mode: domain.ModeAfterCommit,
		AccountPattern: "users:*:wallet", AccountMetadata: map[string]string{"tier": "basic"}, Asset: "USD",
		Threshold: &domain.ThresholdRule{Amount: usd(1000000), Side: domain.SideDebit}, Actions: []domain.RuleAction{domain.ActionFreeze}}}},
	{"rule_defined_velocity", domain.RuleDefined{Version: 3, Rule: domain.Rule{ID: "velocity", Description: "more than 10 or 5,000.00 an hour",
		Mode: domain.ModeBeforeCommit, Asset: "USD",
		Velocity: &domain.VelocityRule{Side: domain.SideDebit, WindowSeconds: 3600, MaxCount: 10, MaxSum: amountPtr(usd(500000))}}}},
	{"rule_defined_crossing", domain.RuleDefined{Version: 1, Rule: domain.Rule{ID: "low", Mode: domain.ModeAfterCommit, Asset: "USD",
		BalanceCrossing: &domain.BalanceCrossingRule{Level: usd(-2500), Crossing: domain.CrossingBelow}}}},
	{"rule_defined_counterparty", domain.RuleDefined{Version: 2, Rule: domain.Rule{ID: "new-payee", Mode: domain.ModeAfterCommit,
		Disabled: true, Asset: "USD", NewCounterparty: &domain.NewCounterpartyRule{}}}},
	{"rule_defined_dormant", domain.RuleDefined{Version: 1, Rule: domain.Rule{ID: "dormant", Mode: domain.ModeAfterCommit, Asset: "USD",
		DormantReactivated: &domain.DormantReactivatedRule{DormantSeconds: 180 * 86400}}}},
	{"alert_raised", domain.AlertRaised{ID: "main:1234:big-debits:users:42:wallet", Rule: "big-debits", RuleVersion: 1, Position: 1234,
		TransferID: "t-9", Account: "users:42:wallet", Counterparties: []string{"merchants:7"}, Asset: "USD",
		Figures: map[string]string{"amount": "12000.00", "threshold": "10000.00"}, Freeze: true,
		RecordedAt: time.Date(2026, 12, 7, 10, 0, 0, 123456000, time.UTC), EffectiveAt: timePtr(time.Date(2026, 12, 7, 9, 59, 0, 0, time.UTC))}},
	{"alert_raised_hold_refused", domain.AlertRaised{ID: "main:88:big-in:users:2", Rule: "big-in", RuleVersion: 1, Position: 88,
		TransferID: "t-4", Account: "users:2", Counterparties: []string{"world"}, Asset: "USD",
		Figures: map[string]string{"amount": "900.00", "hold": "900.00", "threshold": "500.00"}, HoldAccount: "suspense:review",
		HoldRefused: "postings[0].debit_account: account users:2 frozen at position 80: account frozen",
		RecordedAt:  time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}},
	{"transfer_pending_alert_hold", domain.TransferPending{ID: domain.AlertHoldID("main:88:big-in:users:2"),
		Postings:    []domain.Posting{{Debit: "users:2", Credit: "suspense:review", Asset: "USD", Amount: usd(90000)}},
		EffectiveAt: time.Date(2026, 12, 7, 10, 0, 1, 0, time.UTC), Alert: "main:88:big-in:users:2"}},
	{"rule_defined_hold", domain.RuleDefined{Version: 1, Rule: domain.Rule{ID: "big-in", Mode: domain.ModeAfterCommit, Asset: "USD",
		AccountPattern: "users:*", Threshold: &domain.ThresholdRule{Amount: usd(50000), Side: domain.SideCredit},
		Actions: []domain.RuleAction{domain.ActionHold}, HoldAccount: "suspense:review"}}},
	{"alert_raised_crossing", domain.AlertRaised{ID: "main:77:low:users:1", Rule: "low", RuleVersion: 2, Position: 77,
		TransferID: "t-3", Account: "users:1", Asset: "USD", Figures: map[string]string{"available": "-25.01", "crossing": "below", "level": "-25.00"},
		RecordedAt: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}},
}

func timePtr(t time.Time) *time.Time { return &t }

func TestEventGolden(t *testing.T) {
	for _, tc := range goldenEvents {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "events", tc.name+".json")
			got, err := domain.MarshalEvent(tc.event)
			if err != nil {
				t.Fatalf("MarshalEvent: %v", err)
			}
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("MarshalEvent differs from %s (run with -update if the change is intended)\ngot:  %s\nwant: %s", path, got, want)
			}

			decoded, err := domain.UnmarshalEvent(tc.event.EventType(), domain.SchemaVersion, want)
			if err != nil {
				t.Fatalf("UnmarshalEvent of %s: %v", path, err)
			}
			// cmp compares time.Time with its Equal method, Units by value.
			if diff := cmp.Diff(tc.event, decoded, unitsEqual); diff != "" {
				t.Errorf("decoded %s differs (-want +got):\n%s", path, diff)
			}
			again, err := domain.MarshalEvent(decoded)
			if err != nil {
				t.Fatalf("MarshalEvent of decoded: %v", err)
			}
			if !bytes.Equal(again, want) {
				t.Errorf("re-encoded %s differs\ngot:  %s\nwant: %s", path, again, want)
			}
		})
	}
}

func TestUnmarshalEventRefuses(t *testing.T) {
	valid := []byte(`{"code":"USD","scale":2}`)
	for _, tc := range []struct {
		name    string
		typ     string
		version int
		data    []byte
		unknown bool // want ErrUnknownEvent; otherwise any decode error
	}{
		{"unknown type", "AssetDeleted", domain.SchemaVersion, valid, true},
		{"empty type", "", domain.SchemaVersion, valid, true},
		{"future version", domain.TypeAssetDefined, domain.SchemaVersion + 1, valid, true},
		{"version zero", domain.TypeAssetDefined, 0, valid, true},
		{"malformed json", domain.TypeAssetDefined, domain.SchemaVersion, []byte(`{"code":`), false},
		{"scale not a number", domain.TypeAssetDefined, domain.SchemaVersion, []byte(`{"code":"USD","scale":"2"}`), false},
		{"unknown side", domain.TypeAccountOpened, domain.SchemaVersion, []byte(`{"id":"a","asset":"USD","normal_balance":"both"}`), false},
		{"amount as number", domain.TypeTransferCommitted, domain.SchemaVersion,
			[]byte(`{"id":"t","postings":[{"debit":"a","credit":"b","asset":"USD","amount":10.5}],"effective_at":"2026-01-02T03:04:05Z"}`), false},
		{"amount with exponent", domain.TypeTransferCommitted, domain.SchemaVersion,
			[]byte(`{"id":"t","postings":[{"debit":"a","credit":"b","asset":"USD","amount":"1e3"}],"effective_at":"2026-01-02T03:04:05Z"}`), false},
		{"bad time", domain.TypeTransferCommitted, domain.SchemaVersion, []byte(`{"id":"t","postings":[],"effective_at":"yesterday"}`), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := domain.UnmarshalEvent(tc.typ, tc.version, tc.data)
			if err == nil {
				t.Fatalf("UnmarshalEvent = %+v, want an error", e)
			}
			if got := errors.Is(err, domain.ErrUnknownEvent); got != tc.unknown {
				t.Errorf("errors.Is(%v, ErrUnknownEvent) = %v, want %v", err, got, tc.unknown)
			}
		})
	}
}

func TestMarshalEventRefusesBadSide(t *testing.T) {
	_, err := domain.MarshalEvent(domain.AccountOpened{ID: "a", Asset: "USD"})
	if !errors.Is(err, domain.ErrInvalidField) {
		t.Errorf("MarshalEvent with no normal_balance: got %v, want ErrInvalidField", err)
	}
}

func TestAmountJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   domain.Amount
		want string
	}{
		{"cents", usd(1050), `"10.50"`},
		{"zero at scale 2", usd(0), `"0.00"`},
		{"negative", usd(-5), `"-0.05"`},
		{"scale 0", domain.Amount{Units: domain.UnitsFromInt64(7), Scale: 0}, `"7"`},
		{"one wei", domain.Amount{Units: domain.UnitsFromInt64(1), Scale: 18}, `"0.000000000000000001"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.in.MarshalJSON()
			if err != nil || string(b) != tc.want {
				t.Fatalf("MarshalJSON = %s, %v; want %s", b, err, tc.want)
			}
			var back domain.Amount
			if err := back.UnmarshalJSON(b); err != nil {
				t.Fatalf("UnmarshalJSON(%s): %v", b, err)
			}
			if back != tc.in {
				t.Errorf("UnmarshalJSON(%s) = %+v, want %+v", b, back, tc.in)
			}
		})
	}
}

// TestEventGoldenCoversEveryType: every event type of the contract has a
// golden file, and decodes by its name.
func TestEventGoldenCoversEveryType(t *testing.T) {
	have := map[string]bool{}
	for _, tc := range goldenEvents {
		have[tc.event.EventType()] = true
	}
	for _, typ := range domain.EventTypes() {
		if !have[typ] {
			t.Errorf("no golden file for %s", typ)
		}
	}
}

// TestEventTypeNamesBounded: every event type's name fits EventTypeLenMax,
// which readers of the log hold a record's type to.
func TestEventTypeNamesBounded(t *testing.T) {
	for _, typ := range domain.EventTypes() {
		if len(typ) > domain.EventTypeLenMax {
			t.Errorf("%s: %d bytes, EventTypeLenMax is %d", typ, len(typ), domain.EventTypeLenMax)
		}
	}
}

// TestEventTypesListsEveryEvent holds domain.EventTypes to the package's
// source: every type with an EventType method returning a Type constant is
// listed, and nothing else; and UnmarshalEvent knows each.
func TestEventTypesListsEveryEvent(t *testing.T) {
	fset := token.NewFileSet()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{} // name → string value
	var returned []string         // the constants EventType methods return
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					v, ok := spec.(*ast.ValueSpec)
					if !ok || d.Tok != token.CONST {
						continue
					}
					for i, name := range v.Names {
						if i < len(v.Values) {
							if lit, ok := v.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
								consts[name.Name], _ = strconv.Unquote(lit.Value)
							}
						}
					}
				}
			case *ast.FuncDecl:
				if d.Recv == nil || d.Name.Name != "EventType" || d.Body == nil || len(d.Body.List) != 1 {
					continue
				}
				ret, ok := d.Body.List[0].(*ast.ReturnStmt)
				if !ok || len(ret.Results) != 1 {
					t.Errorf("%s: an EventType method that is not one return of a constant", fset.Position(d.Pos()))
					continue
				}
				id, ok := ret.Results[0].(*ast.Ident)
				if !ok {
					t.Errorf("%s: an EventType method that does not return a named constant", fset.Position(d.Pos()))
					continue
				}
				returned = append(returned, id.Name)
			}
		}
	}
	var want []string
	for _, name := range returned {
		v, ok := consts[name]
		if !ok {
			t.Errorf("EventType returns %s, not a string constant of the package", name)
		}
		want = append(want, v)
	}
	got := domain.EventTypes()
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("EventTypes differs from the package's event types (-source +EventTypes):\n%s", diff)
	}
	for _, typ := range got {
		if _, err := domain.UnmarshalEvent(typ, domain.SchemaVersion, []byte(`{}`)); errors.Is(err, domain.ErrUnknownEvent) {
			t.Errorf("UnmarshalEvent does not know %s", typ)
		}
	}
}
