package daemon_test

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/queries"
)

// listedAccount is an account of the listing tests as the test opened and
// amended it: what the filters are checked against.
type listedAccount struct {
	id, asset string
	metadata  map[string]string
	closed    bool
}

// listingAccounts are opened by openListing beside setup's alice, bob,
// carol (USD) and eve:eur (EUR).
var listingAccounts = []listedAccount{
	{id: "users:1:wallet", asset: "USD", metadata: map[string]string{"tier": "gold", "region": "eu"}},
	{id: "users:2:wallet", asset: "USD", metadata: map[string]string{"tier": "gold"}, closed: true},
	{id: "users:3:wallet", asset: "EUR", metadata: map[string]string{"tier": "silver", "region": "eu"}},
	{id: "users:3:savings", asset: "EUR"},
	{id: "users:4:wallet", asset: "USD"},
	{id: "users:4:wallet:sub", asset: "USD", metadata: map[string]string{"tier": "gold"}},
	{id: "users:10:wallet", asset: "USD", metadata: map[string]string{"region": "us"}},
	{id: "users.x", asset: "USD"},
	{id: "merchants:1:wallet", asset: "USD", metadata: map[string]string{"tier": "gold", "region": "eu"}},
	{id: "merchants:2:fees", asset: "EUR", closed: true},
}

// openListing opens listingAccounts (metadata set after opening for half
// of them, to follow AccountMetadataSet too), closes the closed ones and
// returns the head and every account of the ledger.
func (h *harness) openListing(t *testing.T, ledger string) (uint64, []listedAccount) {
	t.Helper()
	var accounts []*ledgerv1.Account
	var later []*ledgerv1.AccountMetadata
	var closing []string
	for i, a := range listingAccounts {
		acc := &ledgerv1.Account{Id: a.id, Asset: a.asset, NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT}
		if i%2 == 0 {
			acc.Metadata = a.metadata
		} else if a.metadata != nil {
			later = append(later, &ledgerv1.AccountMetadata{AccountId: a.id, Metadata: a.metadata})
		}
		accounts = append(accounts, acc)
		if a.closed {
			closing = append(closing, a.id)
		}
	}
	mustCreated(t, h.open(t, ledger, accounts...)...)
	md, err := h.cmd.SetAccountMetadata(ctx(t), &ledgerv1.SetAccountMetadataRequest{Ledger: ledger, Accounts: later})
	testenv.NoError(t, err)
	mustCreated(t, md.GetResults()...)
	mustCreated(t, h.closeAccounts(t, ledger, closing...)...)
	all := append([]listedAccount{{id: "alice", asset: "USD"}, {id: "bob", asset: "USD"}, {id: "carol", asset: "USD"},
		{id: "eve:eur", asset: "EUR"}}, listingAccounts...)
	return h.head(t, ledger), all
}

// listAccountIDs lists every page of req and returns the ids in order,
// failing on a repeated id or one out of order.
func (h *harness) listAccountIDs(t *testing.T, req *ledgerv1.ListAccountsRequest) []string {
	t.Helper()
	var ids []string
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatalf("listing %v: over 1,000 pages", req)
		}
		resp, err := h.query.ListAccounts(ctx(t), req)
		testenv.NoError(t, err)
		for _, a := range resp.GetAccounts() {
			if n := len(ids); n > 0 && ids[n-1] >= a.GetId() {
				t.Fatalf("listing %v: %s after %s", req, a.GetId(), ids[n-1])
			}
			ids = append(ids, a.GetId())
		}
		if resp.GetNextCursor() == "" {
			return ids
		}
		req.Cursor = resp.GetNextCursor()
	}
}

// TestListAccountsFilters lists with each filter alone and combined, by
// pages of 1, 2 and 1,000: the ids are those the test's own record of the
// accounts selects, in byte order, each once.
func TestListAccountsFilters(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	head, all := h.openListing(t, ledger)

	gold := map[string]string{"tier": "gold"}
	goldEU := map[string]string{"tier": "gold", "region": "eu"}
	for _, c := range []struct {
		name string
		req  *ledgerv1.ListAccountsRequest
		keep func(a listedAccount) bool
	}{
		{"all", &ledgerv1.ListAccountsRequest{}, func(listedAccount) bool { return true }},
		{"prefix", &ledgerv1.ListAccountsRequest{Prefix: "users:"},
			func(a listedAccount) bool { return strings.HasPrefix(a.id, "users:") }},
		{"prefix without colon", &ledgerv1.ListAccountsRequest{Prefix: "users"},
			func(a listedAccount) bool { return strings.HasPrefix(a.id, "users") }},
		{"pattern", &ledgerv1.ListAccountsRequest{Pattern: "users:*:wallet"}, matching("users:*:wallet")},
		{"pattern leading wildcard", &ledgerv1.ListAccountsRequest{Pattern: "*:*:wallet"}, matching("*:*:wallet")},
		{"pattern trailing wildcard", &ledgerv1.ListAccountsRequest{Pattern: "users:4:*"}, matching("users:4:*")},
		{"pattern exact", &ledgerv1.ListAccountsRequest{Pattern: "users:3:savings"}, matching("users:3:savings")},
		{"asset", &ledgerv1.ListAccountsRequest{Asset: "EUR"}, func(a listedAccount) bool { return a.asset == "EUR" }},
		{"open", &ledgerv1.ListAccountsRequest{Status: ledgerv1.AccountStatus_ACCOUNT_STATUS_OPEN},
			func(a listedAccount) bool { return !a.closed }},
		{"closed", &ledgerv1.ListAccountsRequest{Status: ledgerv1.AccountStatus_ACCOUNT_STATUS_CLOSED},
			func(a listedAccount) bool { return a.closed }},
		{"metadata", &ledgerv1.ListAccountsRequest{Metadata: gold}, withMetadata(gold)},
		{"metadata pairs", &ledgerv1.ListAccountsRequest{Metadata: goldEU}, withMetadata(goldEU)},
		{"pattern asset open metadata", &ledgerv1.ListAccountsRequest{Pattern: "*:*:wallet", Asset: "USD",
			Status: ledgerv1.AccountStatus_ACCOUNT_STATUS_OPEN, Metadata: gold},
			func(a listedAccount) bool {
				return matching("*:*:wallet")(a) && a.asset == "USD" && !a.closed && withMetadata(gold)(a)
			}},
		{"prefix closed asset", &ledgerv1.ListAccountsRequest{Prefix: "merchants:", Asset: "EUR",
			Status: ledgerv1.AccountStatus_ACCOUNT_STATUS_CLOSED},
			func(a listedAccount) bool {
				return strings.HasPrefix(a.id, "merchants:") && a.asset == "EUR" && a.closed
			}},
		{"asset and closed", &ledgerv1.ListAccountsRequest{Asset: "USD", Status: ledgerv1.AccountStatus_ACCOUNT_STATUS_CLOSED},
			func(a listedAccount) bool { return a.asset == "USD" && a.closed }},
		{"nothing", &ledgerv1.ListAccountsRequest{Prefix: "nobody"}, func(listedAccount) bool { return false }},
	} {
		var want []string
		for _, a := range all {
			if c.keep(a) {
				want = append(want, a.id)
			}
		}
		slices.Sort(want) // byte order, as Go compares strings
		for _, limit := range []uint32{1, 2, 1000} {
			req := c.req
			req.Ledger, req.Limit, req.MinPosition, req.Cursor = ledger, limit, head, ""
			got := h.listAccountIDs(t, req)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s by %d (-want +got):\n%s", c.name, limit, diff)
			}
		}
	}

	// A page's views: status, metadata, opening, and balances when asked.
	mustCreated(t, h.transfers(t, ledger, transfer("t1", "alice", "users:1:wallet", "7.50", "USD"))...)
	pos := h.head(t, ledger)
	resp, err := h.query.ListAccounts(ctx(t), &ledgerv1.ListAccountsRequest{Ledger: ledger, Prefix: "users:1",
		IncludeBalances: true, MinPosition: pos})
	testenv.NoError(t, err)
	if resp.GetPosition() < pos || len(resp.GetAccounts()) != 2 {
		t.Fatalf("users:1 at %d: %v", pos, resp)
	}
	// Byte order: "users:10:wallet" < "users:1:wallet" ('0' < ':').
	v := resp.GetAccounts()[1]
	if v.GetId() != "users:1:wallet" || v.GetStatus() != ledgerv1.AccountStatus_ACCOUNT_STATUS_OPEN ||
		!maps.Equal(v.GetMetadata(), goldEU) || v.GetOpenedPosition() == 0 || v.GetOpenedAt() == nil ||
		v.GetBalance().GetBalance() != "7.50" || v.GetBalance().GetCreditsPosted() != "7.50" {
		t.Fatalf("users:1:wallet listed as %v", v)
	}
	resp, err = h.query.ListAccounts(ctx(t), &ledgerv1.ListAccountsRequest{Ledger: ledger, Pattern: "users:2:wallet"})
	testenv.NoError(t, err)
	if len(resp.GetAccounts()) != 1 || resp.GetAccounts()[0].GetStatus() != ledgerv1.AccountStatus_ACCOUNT_STATUS_CLOSED ||
		resp.GetAccounts()[0].GetBalance() != nil {
		t.Fatalf("users:2:wallet listed as %v, want closed, without a balance", resp.GetAccounts())
	}
}

func matching(pattern string) func(listedAccount) bool {
	if err := domain.CheckAccountPattern(pattern); err != nil {
		panic(err)
	}
	return func(a listedAccount) bool { return domain.MatchAccountPattern(pattern, a.id) }
}

func withMetadata(want map[string]string) func(listedAccount) bool {
	return func(a listedAccount) bool {
		for k, v := range want {
			if got, ok := a.metadata[k]; !ok || got != v {
				return false
			}
		}
		return true
	}
}

// TestListAccountsScanBound: a pattern that matches only the last of more
// than queries.AccountsScanMax accounts answers a first page that is empty
// but has a cursor (it examined AccountsScanMax accounts), then the match.
func TestListAccountsScanBound(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	n := queries.AccountsScanMax + 50
	for from := 0; from < n; from += 5000 {
		var batch []*ledgerv1.Account
		for i := from; i < min(from+5000, n); i++ {
			a := &ledgerv1.Account{Id: fmt.Sprintf("bulk:%05d", i), Asset: "USD",
				NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT}
			if i == 0 {
				a.Metadata = map[string]string{"rare": "1"}
			}
			batch = append(batch, a)
		}
		mustCreated(t, h.open(t, ledger, batch...)...)
	}
	mustCreated(t, h.open(t, ledger, &ledgerv1.Account{Id: "zz:x", Asset: "USD",
		NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT}, &ledgerv1.Account{Id: "zz:y", Asset: "USD",
		NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT, Metadata: map[string]string{"rare": "1"}})...)
	head := h.head(t, ledger)

	req := &ledgerv1.ListAccountsRequest{Ledger: ledger, Pattern: "*:x", MinPosition: head}
	first, err := h.query.ListAccounts(ctx(t), req)
	testenv.NoError(t, err)
	if len(first.GetAccounts()) != 0 || first.GetNextCursor() == "" {
		t.Fatalf("first page: %d accounts, cursor %q; want none and a cursor (the scan bound)",
			len(first.GetAccounts()), first.GetNextCursor())
	}
	if got := h.listAccountIDs(t, req); !slices.Equal(got, []string{"zz:x"}) {
		t.Fatalf("pattern *:x over %d accounts: %v, want [zz:x]", n, got)
	}
	// A rare metadata pair: the id-ordered scan finds bulk:00000 in its
	// 10,000 rows, the metadata index zz:y past them, in the same page.
	md, err := h.query.ListAccounts(ctx(t), &ledgerv1.ListAccountsRequest{Ledger: ledger, MinPosition: head,
		Metadata: map[string]string{"rare": "1"}})
	testenv.NoError(t, err)
	var mdIDs []string
	for _, a := range md.GetAccounts() {
		mdIDs = append(mdIDs, a.GetId())
	}
	if !slices.Equal(mdIDs, []string{"bulk:00000", "zz:y"}) || md.GetNextCursor() != "" {
		t.Fatalf("metadata rare=1: %v (cursor %q), want bulk:00000 and zz:y in one page", mdIDs, md.GetNextCursor())
	}
	byPages := h.listAccountIDs(t, &ledgerv1.ListAccountsRequest{Ledger: ledger, MinPosition: head, Limit: 1,
		Metadata: map[string]string{"rare": "1"}})
	if !slices.Equal(byPages, mdIDs) {
		t.Fatalf("metadata rare=1 by pages of 1: %v, want %v", byPages, mdIDs)
	}
	// Served by an index, the same rare match comes in one page.
	got, err := h.query.ListAccounts(ctx(t), &ledgerv1.ListAccountsRequest{Ledger: ledger, Prefix: "zz:", MinPosition: head})
	testenv.NoError(t, err)
	if len(got.GetAccounts()) != 2 || got.GetNextCursor() != "" {
		t.Fatalf("prefix zz: answered %v", got)
	}
}

// TestListAssets lists the ledger's assets in code order, by pages.
func TestListAssets(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger) // USD, EUR
	for _, a := range []struct {
		code  string
		scale uint32
	}{{"BTC", 8}, {"ETH", 18}, {"JPY", 0}, {"USD_X", 2}} {
		d, err := h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: a.code, Scale: a.scale})
		testenv.NoError(t, err)
		mustCreated(t, d.GetResult())
	}
	head := h.head(t, ledger)
	want := []string{"BTC/8", "ETH/18", "EUR/2", "JPY/0", "USD/2", "USD_X/2"}
	for _, limit := range []uint32{1, 4, 0} {
		var got []string
		req := &ledgerv1.ListAssetsRequest{Ledger: ledger, Limit: limit, MinPosition: head}
		for page := 0; ; page++ {
			if page > len(want) {
				t.Fatalf("limit %d: more pages than assets", limit)
			}
			resp, err := h.query.ListAssets(ctx(t), req)
			testenv.NoError(t, err)
			if resp.GetPosition() < head {
				t.Fatalf("position %d, want at least %d", resp.GetPosition(), head)
			}
			for _, a := range resp.GetAssets() {
				if a.GetPosition() == 0 {
					t.Errorf("asset %s without its position", a.GetCode())
				}
				got = append(got, fmt.Sprintf("%s/%d", a.GetCode(), a.GetScale()))
			}
			if req.Cursor = resp.GetNextCursor(); req.Cursor == "" {
				break
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("limit %d (-want +got):\n%s", limit, diff)
		}
	}
	_, err := h.query.ListAssets(ctx(t), &ledgerv1.ListAssetsRequest{Ledger: "no-such-ledger"})
	if status.Code(err) != codes.NotFound && status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown ledger: %v", err)
	}
}

// TestListTransfersAmountsAndTimes: the asset, amount and [from, to) time
// filters, alone and with the others, over multi-leg transfers, by pages.
func TestListTransfersAmountsAndTimes(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	mustCreated(t, h.open(t, ledger, &ledgerv1.Account{Id: "eve:hold", Asset: "EUR",
		NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT})...)
	// Whole seconds: the times compare equal after PostgreSQL's microseconds.
	now := time.Now().UTC().Truncate(time.Second)
	at := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }
	fx := func(id, usd, eur string, eff time.Duration) *ledgerv1.Transfer {
		tr := transfer(id, "alice", "bob", usd, "USD")
		tr.Postings = append(tr.Postings, posting("eve:eur", "eve:hold", eur, "EUR"))
		tr.EffectiveAt = at(eff)
		return tr
	}
	small := transfer("usd-small", "alice", "bob", "1.00", "USD")
	small.EffectiveAt = at(-3 * time.Hour)
	big := transfer("usd-big", "bob", "alice", "500.00", "USD")
	big.EffectiveAt = at(-2 * time.Hour)
	mustCreated(t, h.transfers(t, ledger, small, big,
		fx("fx-1", "10.00", "9.00", -time.Hour),
		fx("fx-2", "200.00", "0.50", -30*time.Minute),
		fx("fx-3", "0.10", "100.00", -10*time.Minute))...)
	mustCreated(t, h.transfers(t, ledger, transfer("eur-late", "eve:eur", "eve:hold", "50.00", "EUR"))...)
	head := h.head(t, ledger)
	tr, err := h.query.GetTransfers(ctx(t), &ledgerv1.GetTransfersRequest{Ledger: ledger, Ids: []string{"eur-late"}, MinPosition: head})
	testenv.NoError(t, err)
	lateRecorded := tr.GetTransfers()[0].GetRecordedAt()

	for _, c := range []struct {
		name string
		req  *ledgerv1.ListTransfersRequest
		want []string
	}{
		{"asset", &ledgerv1.ListTransfersRequest{Asset: "EUR"}, []string{"fx-1", "fx-2", "fx-3", "eur-late"}},
		{"min", &ledgerv1.ListTransfersRequest{Asset: "USD", MinAmount: "10"}, []string{"usd-big", "fx-1", "fx-2"}},
		{"max", &ledgerv1.ListTransfersRequest{Asset: "EUR", MaxAmount: "9.00"}, []string{"fx-1", "fx-2"}},
		// One posting must hold both bounds: fx-3 has USD 0.10 and EUR 100.
		{"range in one posting", &ledgerv1.ListTransfersRequest{Asset: "USD", MinAmount: "0.05", MaxAmount: "0.20"}, []string{"fx-3"}},
		{"range inclusive", &ledgerv1.ListTransfersRequest{Asset: "USD", MinAmount: "1", MaxAmount: "10.00"}, []string{"usd-small", "fx-1"}},
		{"with account", &ledgerv1.ListTransfersRequest{Account: "bob", Asset: "USD", MinAmount: "100"}, []string{"usd-big", "fx-2"}},
		{"effective range", &ledgerv1.ListTransfersRequest{EffectiveFrom: at(-150 * time.Minute), EffectiveTo: at(-10 * time.Minute)},
			[]string{"usd-big", "fx-1", "fx-2"}},
		{"effective from", &ledgerv1.ListTransfersRequest{EffectiveFrom: at(-10 * time.Minute), Asset: "EUR"},
			[]string{"fx-3", "eur-late"}},
		{"recorded to", &ledgerv1.ListTransfersRequest{RecordedTo: lateRecorded}, []string{"usd-small", "usd-big", "fx-1", "fx-2", "fx-3"}},
		{"recorded from", &ledgerv1.ListTransfersRequest{RecordedFrom: lateRecorded}, []string{"eur-late"}},
		{"with status and amounts", &ledgerv1.ListTransfersRequest{Status: tstatusPosted, Asset: "EUR", MinAmount: "1",
			EffectiveTo: at(0)}, []string{"fx-1", "fx-3"}},
		{"no match", &ledgerv1.ListTransfersRequest{Asset: "EUR", MinAmount: "1000"}, nil},
	} {
		for _, limit := range []uint32{1, 2, 100} {
			req := c.req
			req.Ledger, req.Limit, req.MinPosition, req.Cursor = ledger, limit, head, ""
			got, _ := h.listIDs(t, req)
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("%s by %d (-want +got):\n%s", c.name, limit, diff)
			}
		}
	}
}

// TestListingBadInput: each bad field is refused with InvalidArgument
// naming it; an unknown category is NotFound.
func TestListingBadInput(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	head := h.head(t, ledger)
	nine := map[string]string{}
	for i := range queries.AccountsMetadataPairsMax + 1 {
		nine[fmt.Sprintf("k%d", i)] = "v"
	}
	accounts := []struct {
		name, field string
		req         *ledgerv1.ListAccountsRequest
	}{
		{"bad prefix", "prefix", &ledgerv1.ListAccountsRequest{Prefix: "a b"}},
		{"bad pattern", "pattern", &ledgerv1.ListAccountsRequest{Pattern: "users:4*"}},
		{"prefix and pattern", "pattern", &ledgerv1.ListAccountsRequest{Prefix: "a", Pattern: "a:*"}},
		{"bad asset", "asset", &ledgerv1.ListAccountsRequest{Asset: "usd"}},
		{"bad status", "status", &ledgerv1.ListAccountsRequest{Status: 7}},
		{"too many pairs", "metadata", &ledgerv1.ListAccountsRequest{Metadata: nine}},
		{"empty key", "metadata", &ledgerv1.ListAccountsRequest{Metadata: map[string]string{"": "v"}}},
		{"limit", "limit", &ledgerv1.ListAccountsRequest{Limit: queries.AccountsPageMax + 1}},
		{"cursor", "cursor", &ledgerv1.ListAccountsRequest{Cursor: "garbage"}},
		{"bad category", "category", &ledgerv1.ListAccountsRequest{Category: "assets cash"}},
	}
	for _, c := range accounts {
		c.req.Ledger = ledger
		_, err := h.query.ListAccounts(ctx(t), c.req)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || fieldOf(st) != c.field {
			t.Errorf("ListAccounts %s: %v, want InvalidArgument naming %s", c.name, err, c.field)
		}
	}
	// Another listing's cursor.
	page, err := h.query.ListAccounts(ctx(t), &ledgerv1.ListAccountsRequest{Ledger: ledger, Limit: 1, MinPosition: head})
	testenv.NoError(t, err)
	_, err = h.query.ListAccounts(ctx(t), &ledgerv1.ListAccountsRequest{Ledger: ledger, Asset: "EUR", Cursor: page.GetNextCursor()})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "cursor" {
		t.Errorf("ListAccounts with another listing's cursor: %v, want InvalidArgument naming cursor", err)
	}
	_, err = h.query.ListAccounts(ctx(t), &ledgerv1.ListAccountsRequest{Ledger: ledger, Category: "assets:cash"})
	if st := status.Convert(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), "category") {
		t.Errorf("ListAccounts by an unknown category: %v, want NotFound naming category", err)
	}

	transfers := []struct {
		name, field string
		req         *ledgerv1.ListTransfersRequest
	}{
		{"min without asset", "min_amount", &ledgerv1.ListTransfersRequest{MinAmount: "1"}},
		{"max without asset", "max_amount", &ledgerv1.ListTransfersRequest{MaxAmount: "1"}},
		{"bad asset", "asset", &ledgerv1.ListTransfersRequest{Asset: "usd"}},
		{"min not a decimal", "min_amount", &ledgerv1.ListTransfersRequest{Asset: "USD", MinAmount: "1e3"}},
		{"max negative", "max_amount", &ledgerv1.ListTransfersRequest{Asset: "USD", MaxAmount: "-1"}},
		{"min over scale", "min_amount", &ledgerv1.ListTransfersRequest{Asset: "USD", MinAmount: "1.001"}},
		{"max over scale", "max_amount", &ledgerv1.ListTransfersRequest{Asset: "USD", MaxAmount: "0.125"}},
		{"min above max", "min_amount", &ledgerv1.ListTransfersRequest{Asset: "USD", MinAmount: "2", MaxAmount: "1.50"}},
		{"unknown asset", "asset", &ledgerv1.ListTransfersRequest{Asset: "XAU", MinAmount: "1"}},
		{"effective range empty", "effective_from", &ledgerv1.ListTransfersRequest{
			EffectiveFrom: timestamppb.New(time.Unix(100, 0)), EffectiveTo: timestamppb.New(time.Unix(100, 0))}},
		{"recorded range backwards", "recorded_from", &ledgerv1.ListTransfersRequest{
			RecordedFrom: timestamppb.New(time.Unix(200, 0)), RecordedTo: timestamppb.New(time.Unix(100, 0))}},
		{"bad timestamp", "recorded_to", &ledgerv1.ListTransfersRequest{RecordedTo: &timestamppb.Timestamp{Nanos: -1}}},
	}
	// At the head: the amount bounds' scale is read from the assets, which
	// the balances projection writes.
	head = h.head(t, ledger)
	for _, c := range transfers {
		c.req.Ledger, c.req.MinPosition = ledger, head
		_, err := h.query.ListTransfers(ctx(t), c.req)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || fieldOf(st) != c.field {
			t.Errorf("ListTransfers %s: %v, want InvalidArgument naming %s", c.name, err, c.field)
		}
	}
	for _, c := range []struct {
		name, field string
		req         *ledgerv1.ListAssetsRequest
	}{
		{"limit", "limit", &ledgerv1.ListAssetsRequest{Limit: queries.AssetsPageMax + 1}},
		{"cursor", "cursor", &ledgerv1.ListAssetsRequest{Cursor: "AXVzZA"}},
	} {
		c.req.Ledger = ledger
		_, err := h.query.ListAssets(ctx(t), c.req)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || fieldOf(st) != c.field {
			t.Errorf("ListAssets %s: %v, want InvalidArgument naming %s", c.name, err, c.field)
		}
	}
}

// TestRebuildKeepsAccountsListing: the accounts listing (with balances) is
// the same after the balances projection is rebuilt from the log.
func TestRebuildKeepsAccountsListing(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	h.openListing(t, ledger)
	zero, limit := "-100.00", "1000.00"
	mustCreated(t, h.setBounds(t, ledger, &ledgerv1.AccountBounds{AccountId: "users:4:wallet", MinBalance: &zero, MaxBalance: &limit})...)
	mustCreated(t, h.transfers(t, ledger, transfer("t1", "alice", "users:4:wallet", "3.25", "USD"))...)
	head := h.head(t, ledger)
	list := func() []*ledgerv1.AccountView {
		var out []*ledgerv1.AccountView
		req := &ledgerv1.ListAccountsRequest{Ledger: ledger, IncludeBalances: true, Limit: 3, MinPosition: head}
		for {
			resp, err := h.query.ListAccounts(ctx(t), req)
			testenv.NoError(t, err)
			out = append(out, resp.GetAccounts()...)
			if req.Cursor = resp.GetNextCursor(); req.Cursor == "" {
				return out
			}
		}
	}
	before := list()
	if len(before) != 4+len(listingAccounts) {
		t.Fatalf("%d accounts listed, want %d", len(before), 4+len(listingAccounts))
	}
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	rebuild(t, ledgerv1.NewAdminServiceClient(conn), ledger, "balances")
	after := list()
	if diff := cmp.Diff(before, after, protocmp.Transform()); diff != "" {
		t.Fatalf("accounts listing after the rebuild (-before +after):\n%s", diff)
	}
	var found bool
	for _, v := range after {
		if v.GetId() == "users:4:wallet" {
			found = v.GetMinBalance() == zero && v.GetMaxBalance() == limit && v.GetBalance().GetBalance() == "3.25"
		}
	}
	if !found {
		t.Fatalf("users:4:wallet lost its bounds or balance: %v", after)
	}
}

// TestRESTListings: the listings on the gateway's GET routes, with query
// parameters and metadata as metadata[key]=value.
func TestRESTListings(t *testing.T) {
	t.Parallel()
	h := start(t)
	name := testenv.Name(t)
	h.setup(t, name)
	head, _ := h.openListing(t, name)
	ledger := fmt.Sprintf("/v1/ledgers/%s", name)
	var accounts struct {
		Accounts []struct {
			ID       string            `json:"id"`
			Status   string            `json:"status"`
			Metadata map[string]string `json:"metadata"`
			Balance  *struct{ Balance string }
		}
		NextCursor string `json:"next_cursor"`
	}
	h.rest(t, "GET", fmt.Sprintf("%s/accounts?pattern=*:*:wallet&metadata[tier]=gold&status=ACCOUNT_STATUS_OPEN&include_balances=true&min_position=%d",
		ledger, head), "", http.StatusOK, &accounts)
	var got []string
	for _, a := range accounts.Accounts {
		if a.Balance == nil || a.Balance.Balance != "0.00" || a.Metadata["tier"] != "gold" || a.Status != "ACCOUNT_STATUS_OPEN" {
			t.Errorf("REST account %+v", a)
		}
		got = append(got, a.ID)
	}
	if want := []string{"merchants:1:wallet", "users:1:wallet"}; !slices.Equal(got, want) || accounts.NextCursor != "" {
		t.Fatalf("REST accounts %v (cursor %q), want %v", got, accounts.NextCursor, want)
	}
	var assets struct {
		Assets []struct {
			Code  string `json:"code"`
			Scale int    `json:"scale"`
		}
	}
	// The assets are the balances projection's, which the accounts' wait
	// above does not cover: this one waits for it too.
	h.rest(t, "GET", fmt.Sprintf("%s/assets?limit=10&min_position=%d", ledger, head), "", http.StatusOK, &assets)
	if len(assets.Assets) != 2 || assets.Assets[0].Code != "EUR" || assets.Assets[1].Code != "USD" || assets.Assets[1].Scale != 2 {
		t.Fatalf("REST assets %+v", assets.Assets)
	}
	var refused restError
	h.rest(t, "GET", ledger+"/transfers?min_amount=1", "", http.StatusBadRequest, &refused)
	if len(refused.Details) == 0 || len(refused.Details[0].FieldViolations) == 0 ||
		refused.Details[0].FieldViolations[0].Field != "min_amount" {
		t.Fatalf("REST transfers with min_amount alone: %+v, want a violation of min_amount", refused)
	}
}
