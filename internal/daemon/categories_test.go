package daemon_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/queries"
)

// End-to-end tests of categories: DefineCategories, ListCategories,
// GetCategoryBalances and ledgerctl categories, on a real ledgerd.

// catLines are a roll-up's lines: "category asset dp cp dq cq accounts".
func catLines(resp *ledgerv1.GetCategoryBalancesResponse) []string {
	var out []string
	for _, b := range resp.GetBalances() {
		out = append(out, strings.Join([]string{b.GetCategory(), b.GetAsset(), b.GetDebitsPosted(), b.GetCreditsPosted(),
			b.GetDebitsPending(), b.GetCreditsPending(), fmt.Sprint(b.GetAccounts())}, " "))
	}
	return out
}

func (h *harness) defineCategories(t *testing.T, ledger string, cats ...*ledgerv1.Category) []*ledgerv1.ItemResult {
	t.Helper()
	resp, err := h.cmd.DefineCategories(ctx(t), &ledgerv1.DefineCategoriesRequest{Ledger: ledger, Categories: cats})
	testenv.NoError(t, err)
	return resp.GetResults()
}

func (h *harness) rollUp(t *testing.T, req *ledgerv1.GetCategoryBalancesRequest) []string {
	t.Helper()
	resp, err := h.query.GetCategoryBalances(ctx(t), req)
	testenv.NoError(t, err)
	return catLines(resp)
}

// categoryChart opens the accounts and defines the chart of the tests:
//
//	assets > assets:cash (bank:*)
//	liabilities > liabilities:wallets (users:*:wallet)
//	equity (equity)
//
// then moves money: it returns the position after the first three
// transfers and the head.
func categoryChart(t *testing.T, h *harness, ledger string) (early, head uint64) {
	t.Helper()
	h.setup(t, ledger)
	debit, credit := ledgerv1.NormalBalance_NORMAL_BALANCE_DEBIT, ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT
	mustCreated(t, h.open(t, ledger,
		&ledgerv1.Account{Id: "bank:acme", Asset: "USD", NormalBalance: debit},
		&ledgerv1.Account{Id: "bank:zen", Asset: "USD", NormalBalance: debit},
		&ledgerv1.Account{Id: "bank:eu", Asset: "EUR", NormalBalance: debit},
		&ledgerv1.Account{Id: "users:1:wallet", Asset: "USD", NormalBalance: credit},
		&ledgerv1.Account{Id: "users:2:wallet", Asset: "USD", NormalBalance: credit},
		&ledgerv1.Account{Id: "users:3:wallet", Asset: "EUR", NormalBalance: credit},
		&ledgerv1.Account{Id: "equity", Asset: "USD", NormalBalance: credit},
	)...)
	// Children after their parents, in one request.
	mustCreated(t, h.defineCategories(t, ledger,
		&ledgerv1.Category{Name: "assets"},
		&ledgerv1.Category{Name: "assets:cash", Parent: "assets", Patterns: []string{"bank:*"}, Description: "banks"},
		&ledgerv1.Category{Name: "liabilities"},
		&ledgerv1.Category{Name: "liabilities:wallets", Parent: "liabilities", Patterns: []string{"users:*:wallet"}},
		&ledgerv1.Category{Name: "equity", Patterns: []string{"equity"}},
	)...)
	h.transferOK(t, ledger, transfer("t1", "bank:acme", "equity", "1000.00", "USD"))
	h.transferOK(t, ledger, transfer("t2", "bank:zen", "users:1:wallet", "200.00", "USD"))
	early = h.transferOK(t, ledger, transfer("t3", "bank:acme", "users:2:wallet", "50.00", "USD"))
	h.transferOK(t, ledger, transfer("t4", "users:1:wallet", "users:2:wallet", "30.00", "USD"))
	h.transferOK(t, ledger, pendingTransfer("h1", "bank:zen", "users:2:wallet", "5.00", "USD", 0))
	head = h.transferOK(t, ledger, transfer("t5", "bank:eu", "users:3:wallet", "7.00", "EUR"))
	return early, head
}

// TestListAccountsByCategory: ListAccounts' category filter lists the
// accounts of the category and its descendants, alone, with a prefix or a
// pattern, and by pages of one; a category without patterns lists none.
func TestListAccountsByCategory(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	_, head := categoryChart(t, h, ledger)
	list := func(req *ledgerv1.ListAccountsRequest) []string {
		t.Helper()
		req.Ledger, req.MinPosition = ledger, max(req.MinPosition, head)
		var ids []string
		for range 20 {
			page, err := h.query.ListAccounts(ctx(t), req)
			testenv.NoError(t, err)
			for _, a := range page.GetAccounts() {
				ids = append(ids, a.GetId())
			}
			if req.Cursor = page.GetNextCursor(); req.Cursor == "" {
				return ids
			}
		}
		t.Fatalf("ListAccounts %v: more than 20 pages", req)
		return nil
	}
	for _, c := range []struct {
		req  *ledgerv1.ListAccountsRequest
		want []string
	}{
		{&ledgerv1.ListAccountsRequest{Category: "assets"}, []string{"bank:acme", "bank:eu", "bank:zen"}},
		{&ledgerv1.ListAccountsRequest{Category: "assets", Limit: 1}, []string{"bank:acme", "bank:eu", "bank:zen"}},
		{&ledgerv1.ListAccountsRequest{Category: "liabilities:wallets", Asset: "USD"}, []string{"users:1:wallet", "users:2:wallet"}},
		{&ledgerv1.ListAccountsRequest{Category: "liabilities", Prefix: "users:2"}, []string{"users:2:wallet"}},
		{&ledgerv1.ListAccountsRequest{Category: "liabilities", Pattern: "users:*:wallet", IncludeBalances: true},
			[]string{"users:1:wallet", "users:2:wallet", "users:3:wallet"}},
		{&ledgerv1.ListAccountsRequest{Category: "assets", Prefix: "users"}, nil},
		{&ledgerv1.ListAccountsRequest{Category: "equity"}, []string{"equity"}},
	} {
		if got := list(c.req); !slices.Equal(got, c.want) {
			t.Errorf("ListAccounts %v: %v, want %v", c.req, got, c.want)
		}
	}
	mustCreated(t, h.defineCategories(t, ledger, &ledgerv1.Category{Name: "empty"})...)
	if got := list(&ledgerv1.ListAccountsRequest{Category: "empty", MinPosition: h.head(t, ledger)}); len(got) != 0 {
		t.Errorf("ListAccounts of a category without patterns: %v, want none", got)
	}
	// A category wider than a listing tests is refused, naming the bound.
	wide := []*ledgerv1.Category{{Name: "wide"}}
	for i := range queries.AccountsCategoryPatternsMax / 32 {
		var ps []string
		for j := range 32 {
			ps = append(ps, fmt.Sprintf("w:%d:%d", i, j))
		}
		wide = append(wide, &ledgerv1.Category{Name: fmt.Sprintf("wide:%d", i), Parent: "wide", Patterns: ps})
	}
	wide[0].Patterns = []string{"w:extra"} // one more than the bound
	mustCreated(t, h.defineCategories(t, ledger, wide...)...)
	_, err := h.query.ListAccounts(ctx(t), &ledgerv1.ListAccountsRequest{Ledger: ledger, Category: "wide", MinPosition: h.head(t, ledger)})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "at most") {
		t.Errorf("ListAccounts of a category of %d patterns: %v, want ResourceExhausted", queries.AccountsCategoryPatternsMax+1, err)
	}
	if got := list(&ledgerv1.ListAccountsRequest{Category: "wide:0", MinPosition: h.head(t, ledger)}); len(got) != 0 {
		t.Errorf("ListAccounts of a subcategory at the bound: %v, want none (no such accounts)", got)
	}
}

// TestCategoryRollUps: the roll-ups now and as of an earlier position are
// the sums computed by hand (alice, bob, carol and eve:eur are in no
// category); the roots, which hold every account in a category, sum to the
// trial balance less the uncategorised accounts; a redefinition moves
// accounts between categories, now and in the past (history is rolled up
// under today's chart).
func TestCategoryRollUps(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	early, head := categoryChart(t, h, ledger)

	now := h.rollUp(t, &ledgerv1.GetCategoryBalancesRequest{Ledger: ledger, MinPosition: head})
	want := []string{
		"assets EUR 7.00 0.00 0.00 0.00 1",
		"assets USD 1250.00 0.00 5.00 0.00 2",
		"assets:cash EUR 7.00 0.00 0.00 0.00 1",
		"assets:cash USD 1250.00 0.00 5.00 0.00 2",
		"equity USD 0.00 1000.00 0.00 0.00 1",
		"liabilities EUR 0.00 7.00 0.00 0.00 1",
		"liabilities USD 30.00 280.00 0.00 5.00 2",
		"liabilities:wallets EUR 0.00 7.00 0.00 0.00 1",
		"liabilities:wallets USD 30.00 280.00 0.00 5.00 2",
	}
	if diff := cmp.Diff(want, now); diff != "" {
		t.Errorf("roll-up now (-want +got):\n%s", diff)
	}
	// Every account is in one root: their sums are the trial balance.
	uncategorised := []string{"alice", "bob", "carol", "eve:eur"}
	mustCreated(t, h.defineCategories(t, ledger, &ledgerv1.Category{Name: "other", Patterns: uncategorised})...)
	h.transferOK(t, ledger, transfer("t6", "alice", "bob", "3.00", "USD"))
	head = h.head(t, ledger)
	checkRootsAreTheTrialBalance(t, h, ledger, head, []string{"assets", "equity", "liabilities", "other"})

	past := h.rollUp(t, &ledgerv1.GetCategoryBalancesRequest{Ledger: ledger, AsOfPosition: early, Category: "assets"})
	want = []string{
		"assets EUR 0.00 0.00 0.00 0.00 1",
		"assets USD 1250.00 0.00 0.00 0.00 2",
		"assets:cash EUR 0.00 0.00 0.00 0.00 1",
		"assets:cash USD 1250.00 0.00 0.00 0.00 2",
	}
	if diff := cmp.Diff(want, past); diff != "" {
		t.Errorf("roll-up of assets as of %d (-want +got):\n%s", early, diff)
	}
	// As of the recorded time now: the head's totals, from the movements.
	resp, err := h.query.GetCategoryBalances(ctx(t), &ledgerv1.GetCategoryBalancesRequest{Ledger: ledger,
		Category: "liabilities", AsOfTime: timestamppb.New(time.Now().Add(time.Minute)), MinPosition: head})
	testenv.NoError(t, err)
	if got := catLines(resp); resp.GetPosition() != head || !cmp.Equal(got, now[5:]) {
		t.Errorf("roll-up of liabilities as of now: %v at %d, want %v at %d", got, resp.GetPosition(), now[5:], head)
	}

	// Wallets move under assets; cash keeps bank:acme only.
	mustCreated(t, h.defineCategories(t, ledger,
		&ledgerv1.Category{Name: "liabilities:wallets", Parent: "assets", Patterns: []string{"users:*:wallet"}},
		&ledgerv1.Category{Name: "assets:cash", Parent: "assets", Patterns: []string{"bank:acme"}},
	)...)
	head = h.head(t, ledger)
	moved := h.rollUp(t, &ledgerv1.GetCategoryBalancesRequest{Ledger: ledger, MinPosition: head})
	want = []string{
		"assets EUR 0.00 7.00 0.00 0.00 1",
		"assets USD 1080.00 280.00 0.00 5.00 3",
		"assets:cash USD 1050.00 0.00 0.00 0.00 1",
		"equity USD 0.00 1000.00 0.00 0.00 1",
		"liabilities:wallets EUR 0.00 7.00 0.00 0.00 1",
		"liabilities:wallets USD 30.00 280.00 0.00 5.00 2",
		"other EUR 0.00 0.00 0.00 0.00 1",
		"other USD 3.00 3.00 0.00 0.00 3",
	}
	if diff := cmp.Diff(want, moved); diff != "" {
		t.Errorf("roll-up after the move (-want +got):\n%s", diff)
	}
	past = h.rollUp(t, &ledgerv1.GetCategoryBalancesRequest{Ledger: ledger, AsOfPosition: early, Category: "assets"})
	want = []string{
		"assets EUR 0.00 0.00 0.00 0.00 1",
		"assets USD 1050.00 250.00 0.00 0.00 3",
		"assets:cash USD 1050.00 0.00 0.00 0.00 1",
		"liabilities:wallets EUR 0.00 0.00 0.00 0.00 1",
		"liabilities:wallets USD 0.00 250.00 0.00 0.00 2",
	}
	if diff := cmp.Diff(want, past); diff != "" {
		t.Errorf("roll-up of assets as of %d under today's chart (-want +got):\n%s", early, diff)
	}
}

// checkRootsAreTheTrialBalance sums the roots' lines per asset and compares
// them with GetTrialBalance.
func checkRootsAreTheTrialBalance(t *testing.T, h *harness, ledger string, head uint64, roots []string) {
	t.Helper()
	resp, err := h.query.GetCategoryBalances(ctx(t), &ledgerv1.GetCategoryBalancesRequest{Ledger: ledger, MinPosition: head})
	testenv.NoError(t, err)
	isRoot := map[string]bool{}
	for _, r := range roots {
		isRoot[r] = true
	}
	type sums struct {
		dp, cp, dq, cq int64
		accounts       uint64
	}
	got := map[string]sums{}
	for _, b := range resp.GetBalances() {
		if !isRoot[b.GetCategory()] {
			continue
		}
		s := got[b.GetAsset()]
		s.dp += cents(t, b.GetDebitsPosted())
		s.cp += cents(t, b.GetCreditsPosted())
		s.dq += cents(t, b.GetDebitsPending())
		s.cq += cents(t, b.GetCreditsPending())
		s.accounts += b.GetAccounts()
		got[b.GetAsset()] = s
	}
	tb, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: ledger, MinPosition: head})
	testenv.NoError(t, err)
	want := map[string]sums{}
	for _, l := range tb.GetLines() {
		want[l.GetAsset()] = sums{cents(t, l.GetDebitsPosted()), cents(t, l.GetCreditsPosted()), cents(t, l.GetDebitsPending()),
			cents(t, l.GetCreditsPending()), l.GetAccounts() + l.GetAccountsClosed()}
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(sums{})); diff != "" {
		t.Errorf("the roots' sums differ from the trial balance (-trial balance +roots):\n%s", diff)
	}
}

// TestDefineCategoriesRefuses: each refused item names its field, and the
// request's own faults are InvalidArgument naming theirs.
func TestDefineCategoriesRefuses(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	categoryChart(t, h, ledger)
	cash := h.defineCategories(t, ledger,
		&ledgerv1.Category{Name: "assets:cash", Parent: "assets", Patterns: []string{"bank:*"}, Description: "banks"})
	if cash[0].GetCode() != codeExists || cash[0].GetPosition() == 0 {
		t.Errorf("the same definition again: %s at %d, want EXISTS at its position", cash[0].GetCode(), cash[0].GetPosition())
	}
	checkResults(t, "bad definitions", h.defineCategories(t, ledger,
		&ledgerv1.Category{Name: "assets", Parent: "assets:cash"},
		&ledgerv1.Category{Name: "x", Parent: "nowhere"},
		&ledgerv1.Category{Name: "y", Patterns: []string{"bank:*", "bank:a*"}},
		&ledgerv1.Category{Name: "bad name"},
		&ledgerv1.Category{Name: "z", Description: strings.Repeat("d", 1025)},
		&ledgerv1.Category{Name: "z", Parent: "x"}, // x was refused above
	),
		want{codeInvalidField, "parent"}, want{codeInvalidField, "parent"}, want{codeInvalidField, "patterns[1]"},
		want{codeInvalidField, "name"}, want{codeInvalidField, "description"}, want{codeInvalidField, "parent"})

	many := make([]*ledgerv1.Category, 1001)
	for i := range many {
		many[i] = &ledgerv1.Category{Name: fmt.Sprintf("c%d", i)}
	}
	for _, tc := range []struct {
		name  string
		req   *ledgerv1.DefineCategoriesRequest
		field string
	}{
		{"none", &ledgerv1.DefineCategoriesRequest{Ledger: ledger}, "categories"},
		{"over 1000", &ledgerv1.DefineCategoriesRequest{Ledger: ledger, Categories: many}, "categories"},
	} {
		_, err := h.cmd.DefineCategories(ctx(t), tc.req)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tc.field+":") {
			t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
	}
	for _, tc := range []struct {
		name string
		req  *ledgerv1.GetCategoryBalancesRequest
		code codes.Code
		msg  string
	}{
		{"unknown category", &ledgerv1.GetCategoryBalancesRequest{Ledger: ledger, Category: "nowhere"}, codes.NotFound, ""},
		{"bad category", &ledgerv1.GetCategoryBalancesRequest{Ledger: ledger, Category: "a b"}, codes.InvalidArgument, "category:"},
		{"both as-ofs", &ledgerv1.GetCategoryBalancesRequest{Ledger: ledger, AsOfPosition: 1, AsOfTime: timestamppb.Now()},
			codes.InvalidArgument, "as_of_time:"},
		{"beyond the head", &ledgerv1.GetCategoryBalancesRequest{Ledger: ledger, AsOfPosition: 1 << 40}, codes.InvalidArgument, "as_of_position:"},
		{"unknown ledger", &ledgerv1.GetCategoryBalancesRequest{Ledger: "no-such-ledger"}, codes.InvalidArgument, "ledger:"},
	} {
		_, err := h.query.GetCategoryBalances(ctx(t), tc.req)
		if st := status.Convert(err); st.Code() != tc.code || !strings.HasPrefix(st.Message(), tc.msg) {
			t.Errorf("%s: %v, want %s %q", tc.name, err, tc.code, tc.msg)
		}
	}
}

// TestListCategories: pages in name order, each category as last defined
// with its position; ledgerctl defines from a file and lists and rolls up
// in every output.
func TestListCategories(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	_, head := categoryChart(t, h, ledger)
	var names []string
	var cash *ledgerv1.CategoryView
	cursor := ""
	for range 5 {
		resp, err := h.query.ListCategories(ctx(t), &ledgerv1.ListCategoriesRequest{Ledger: ledger, Limit: 2,
			Cursor: cursor, MinPosition: head})
		testenv.NoError(t, err)
		for _, c := range resp.GetCategories() {
			names = append(names, c.GetCategory().GetName())
			if c.GetCategory().GetName() == "assets:cash" {
				cash = c
			}
		}
		if cursor = resp.GetNextCursor(); cursor == "" {
			break
		}
	}
	if want := []string{"assets", "assets:cash", "equity", "liabilities", "liabilities:wallets"}; !cmp.Equal(names, want) {
		t.Errorf("categories by pages of 2: %v, want %v", names, want)
	}
	if c := cash.GetCategory(); c.GetParent() != "assets" || !cmp.Equal(c.GetPatterns(), []string{"bank:*"}) ||
		c.GetDescription() != "banks" || cash.GetPosition() == 0 {
		t.Errorf("assets:cash listed as %v", cash)
	}
	_, err := h.query.ListCategories(ctx(t), &ledgerv1.ListCategoriesRequest{Ledger: ledger, Limit: 1001})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "limit:") {
		t.Errorf("ListCategories limit 1001: %v, want InvalidArgument naming limit", err)
	}

	file := filepath.Join(t.TempDir(), "chart.yaml")
	testenv.NoError(t, os.WriteFile(file, []byte(`categories:
  - name: revenue
    description: income
  - name: revenue:fees
    parent: revenue
    patterns: ["*:fees", "fees"]
`), 0o600))
	out := h.runCtlOK(t, ledger, "categories", "define", "-f", file, "-o", "json")
	var defined ledgerv1.DefineCategoriesResponse
	testenv.NoError(t, protojson.Unmarshal([]byte(out), &defined))
	mustCreated(t, defined.GetResults()...)
	h.runCtlOK(t, ledger, "categories", "define", "--name", "assets:cash", "--parent", "assets", "--pattern", "bank:*",
		"--pattern", "bank:eu", "--description", "banks")
	if code, _, _ := h.runCtl(t, ledger, "categories", "define", "--name", "q", "--pattern", "a*"); code != 1 {
		t.Errorf("ledgerctl categories define with a bad pattern: exit %d, want 1", code)
	}
	head = h.head(t, ledger)
	table := h.runCtlOK(t, ledger, "categories", "list", "--min-position", fmt.Sprint(head))
	for _, s := range []string{"revenue:fees", "*:fees fees", "bank:* bank:eu"} {
		if !strings.Contains(table, s) {
			t.Errorf("ledgerctl categories list lacks %q:\n%s", s, table)
		}
	}
	var listed map[string]any
	testenv.NoError(t, json.Unmarshal([]byte(h.runCtlOK(t, ledger, "categories", "list", "-o", "json")), &listed))
	if n := len(listed["categories"].([]any)); n != 7 {
		t.Errorf("ledgerctl categories list -o json: %d categories, want 7", n)
	}
	yaml := h.runCtlOK(t, ledger, "categories", "balances", "--category", "assets:cash", "--as-of-position",
		fmt.Sprint(head), "-o", "yaml")
	if !strings.Contains(yaml, "category: assets:cash") || !strings.Contains(yaml, "debits_posted: \"1250.00\"") {
		t.Errorf("ledgerctl categories balances -o yaml:\n%s", yaml)
	}
	table = h.runCtlOK(t, ledger, "categories", "balances", "--category", "equity")
	if !strings.Contains(table, "1000.00") || !strings.Contains(table, "as of position") {
		t.Errorf("ledgerctl categories balances:\n%s", table)
	}
}
