package daemon_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/queries"
)

// Transfer statuses, short.
const (
	tstatusPosted            = ledgerv1.TransferStatus_TRANSFER_STATUS_POSTED
	tstatusPending           = ledgerv1.TransferStatus_TRANSFER_STATUS_PENDING
	tstatusPendingPosted     = ledgerv1.TransferStatus_TRANSFER_STATUS_PENDING_POSTED
	tstatusVoided            = ledgerv1.TransferStatus_TRANSFER_STATUS_VOIDED
	tstatusReversed          = ledgerv1.TransferStatus_TRANSFER_STATUS_REVERSED
	tstatusPartiallyReversed = ledgerv1.TransferStatus_TRANSFER_STATUS_PARTIALLY_REVERSED
)

// getTransfers reads ids once the projection reached pos, by id.
func (h *harness) getTransfers(t *testing.T, ledger string, pos uint64, ids ...string) map[string]*ledgerv1.TransferView {
	t.Helper()
	resp, err := h.query.GetTransfers(ctx(t), &ledgerv1.GetTransfersRequest{Ledger: ledger, Ids: ids, MinPosition: pos})
	testenv.NoError(t, err)
	if resp.GetPosition() < pos {
		t.Fatalf("GetTransfers reflects position %d, asked for at least %d", resp.GetPosition(), pos)
	}
	out := make(map[string]*ledgerv1.TransferView, len(ids))
	for _, v := range resp.GetTransfers() {
		out[v.GetId()] = v
	}
	return out
}

// listIDs lists every page of req (from its cursor on) and returns the ids
// in order and the last page's position.
func (h *harness) listIDs(t *testing.T, req *ledgerv1.ListTransfersRequest) ([]string, uint64) {
	t.Helper()
	var (
		ids []string
		pos uint64
	)
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatalf("listing %v: over 1,000 pages", req)
		}
		resp, err := h.query.ListTransfers(ctx(t), req)
		testenv.NoError(t, err)
		for _, v := range resp.GetTransfers() {
			ids = append(ids, v.GetId())
		}
		pos = resp.GetPosition()
		if resp.GetNextCursor() == "" {
			return ids, pos
		}
		req.Cursor = resp.GetNextCursor()
	}
}

// transferState is a view's kind, status, links and postings in one line:
// "kind status | pending_id resolved_by | reverses reversed_by | postings",
// "-" for an empty field.
func transferState(v *ledgerv1.TransferView) string {
	if v == nil {
		return "absent"
	}
	var ps []string
	for _, p := range v.GetPostings() {
		s := fmt.Sprintf("%s>%s %s %s", p.GetDebitAccount(), p.GetCreditAccount(), p.GetAmount(), p.GetAsset())
		if p.GetRemaining() != "" {
			s += " remaining " + p.GetRemaining()
		}
		if p.GetReversed() != "" {
			s += " reversed " + p.GetReversed()
		}
		ps = append(ps, s)
	}
	kind := strings.ToLower(strings.TrimPrefix(v.GetKind().String(), "TRANSFER_KIND_"))
	st := strings.ToLower(strings.TrimPrefix(v.GetStatus().String(), "TRANSFER_STATUS_"))
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	return fmt.Sprintf("%s %s | %s %s | %s %s | %s", kind, st, dash(v.GetPendingId()), dash(v.GetResolvedBy()),
		dash(v.GetReverses()), dash(strings.Join(v.GetReversedBy(), ",")), strings.Join(ps, "; "))
}

func TestGetTransfersHoldsAndReversals(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)

	fx := pendingTransfer("p5", "alice", "bob", "6.00", "USD", 0)
	fx.Postings = append(fx.Postings, posting("eve:eur", "eve:hold", "2.50", "EUR"))
	mustCreated(t, h.open(t, ledger, &ledgerv1.Account{Id: "eve:hold", Asset: "EUR",
		NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT})...)
	p1 := pendingTransfer("p1", "alice", "bob", "10.00", "USD", 0)
	p1.Reference, p1.Metadata = "order-1", map[string]string{"cart": "42"}
	mustCreated(t, h.transfers(t, ledger, p1,
		pendingTransfer("p2", "alice", "bob", "5.00", "USD", 0),
		pendingTransfer("p3", "alice", "bob", "3.00", "USD", 1),
		pendingTransfer("p4", "alice", "bob", "2.00", "USD", 0),
		fx,
		transfer("t1", "alice", "bob", "10.00", "USD"),
	)...)
	mustCreated(t, h.post(t, ledger,
		&ledgerv1.PostPending{Id: "p1:post", PendingId: "p1", Amounts: []string{"4.00"}},
		&ledgerv1.PostPending{Id: "p5:post", PendingId: "p5"})...)
	mustCreated(t, h.void(t, ledger, &ledgerv1.VoidPending{Id: "p2:void", PendingId: "p2", Reference: "cancelled"})...)
	mustCreated(t, h.reverse(t, ledger, &ledgerv1.Reversal{Id: "t1:r1", TransferId: "t1", Amounts: []string{"3.00"}})...)
	rs := h.reverse(t, ledger,
		&ledgerv1.Reversal{Id: "t1:r2", TransferId: "t1"},
		&ledgerv1.Reversal{Id: "p1:post:r", TransferId: "p1:post", Amounts: []string{"1.50"}},
		&ledgerv1.Reversal{Id: "p5:post:r", TransferId: "p5:post", Amounts: []string{"0.00", "2.50"}})
	mustCreated(t, rs...)
	pos := rs[len(rs)-1].GetPosition()

	ids := []string{"t1", "nobody", "p1", "p1:post", "p1:post:r", "p2", "p2:void", "p4", "p5", "p5:post", "p5:post:r",
		"t1:r1", "t1:r2", "t1"}
	resp, err := h.query.GetTransfers(ctx(t), &ledgerv1.GetTransfersRequest{Ledger: ledger, Ids: ids, MinPosition: pos})
	testenv.NoError(t, err)
	if resp.GetPosition() < pos {
		t.Fatalf("GetTransfers reflects position %d, asked for %d", resp.GetPosition(), pos)
	}
	var order []string
	for _, v := range resp.GetTransfers() {
		order = append(order, v.GetId())
	}
	if want := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == "nobody" }); !slices.Equal(order, want) {
		t.Errorf("GetTransfers order %v, want %v (request order, unknown ids absent)", order, want)
	}
	got := h.getTransfers(t, ledger, pos, ids...)
	for id, want := range map[string]string{
		"p1":        "pending pending_posted | - p1:post | - - | alice>bob 10.00 USD remaining 0.00",
		"p1:post":   "post partially_reversed | p1 - | - p1:post:r | alice>bob 4.00 USD reversed 1.50",
		"p1:post:r": "reversal posted | - - | p1:post - | bob>alice 1.50 USD",
		"p2":        "pending voided | - p2:void | - - | alice>bob 5.00 USD remaining 0.00",
		"p2:void":   "void posted | p2 - | - - | alice>bob 5.00 USD",
		"p4":        "pending pending | - - | - - | alice>bob 2.00 USD remaining 2.00",
		"p5":        "pending pending_posted | - p5:post | - - | alice>bob 6.00 USD remaining 0.00; eve:eur>eve:hold 2.50 EUR remaining 0.00",
		"p5:post":   "post partially_reversed | p5 - | - p5:post:r | alice>bob 6.00 USD reversed 0.00; eve:eur>eve:hold 2.50 EUR reversed 2.50",
		"p5:post:r": "reversal posted | - - | p5:post - | bob>alice 0.00 USD; eve:hold>eve:eur 2.50 EUR",
		"t1":        "transfer reversed | - - | - t1:r1,t1:r2 | alice>bob 10.00 USD reversed 10.00",
		"t1:r1":     "reversal posted | - - | t1 - | bob>alice 3.00 USD",
		"t1:r2":     "reversal posted | - - | t1 - | bob>alice 7.00 USD",
	} {
		if s := transferState(got[id]); s != want {
			t.Errorf("%s:\n got %q\nwant %q", id, s, want)
		}
	}
	if v := got["p1"]; v.GetReference() != "order-1" || v.GetMetadata()["cart"] != "42" || v.GetExpiresAt() != nil ||
		v.GetPosition() == 0 || v.GetRecordedAt() == nil || !v.GetEffectiveAt().AsTime().Equal(v.GetRecordedAt().AsTime()) {
		t.Errorf("p1: reference %q metadata %v expires %v position %d recorded %v effective %v", v.GetReference(),
			v.GetMetadata(), v.GetExpiresAt(), v.GetPosition(), v.GetRecordedAt(), v.GetEffectiveAt())
	}
	if v := got["p2:void"]; v.GetReference() != "cancelled" || v.GetPosition() <= got["p2"].GetPosition() {
		t.Errorf("p2:void: reference %q at %d, hold at %d", v.GetReference(), v.GetPosition(), got["p2"].GetPosition())
	}

	// The hold with a timeout expires: by the ledger's own clock.
	testenv.Eventually(t, 10*time.Second, func() error {
		v := h.getTransfers(t, ledger, 0, "p3")["p3"]
		if s := transferState(v); s != "pending expired | - - | - - | alice>bob 3.00 USD remaining 0.00" {
			return fmt.Errorf("p3: %s", s)
		}
		if v.GetExpiresAt() == nil || !v.GetExpiresAt().AsTime().Equal(v.GetRecordedAt().AsTime().Add(time.Second)) {
			return fmt.Errorf("p3 expires at %v, recorded at %v", v.GetExpiresAt(), v.GetRecordedAt())
		}
		return nil
	})
}

// filterLedger records transfers to filter: references, metadata, several
// accounts, holds in every state, business times in the past. It returns
// the position of the last.
func (h *harness) filterLedger(t *testing.T, ledger string, now time.Time) uint64 {
	t.Helper()
	h.setup(t, ledger)
	mustCreated(t, h.open(t, ledger, usdAccount("dave", nil, nil))...)
	var ts []*ledgerv1.Transfer
	for i := range 12 {
		from, to := []string{"alice", "bob", "dave"}[i%3], []string{"bob", "dave", "alice"}[i%3]
		tr := transfer(fmt.Sprintf("t%d", i), from, to, fmt.Sprintf("%d.00", i+1), "USD")
		tr.Reference = fmt.Sprintf("inv-%d", i%4)
		switch i % 3 {
		case 0:
			tr.Metadata = map[string]string{"channel": "web"}
		case 1:
			tr.Metadata = map[string]string{"channel": "app", "promo": "spring"}
		}
		if i >= 9 {
			tr.EffectiveAt = timestamppb.New(now.Add(-time.Duration(i-8) * time.Hour)) // 1h, 2h, 3h ago
		}
		ts = append(ts, tr)
	}
	ts = append(ts, pendingTransfer("hold-open", "alice", "dave", "1.00", "USD", 0),
		pendingTransfer("hold-posted", "alice", "dave", "2.00", "USD", 0),
		pendingTransfer("hold-voided", "alice", "dave", "3.00", "USD", 0))
	// One request per transfer: each in its own batch, with its own recorded time.
	for _, tr := range ts {
		h.transferOK(t, ledger, tr)
	}
	mustCreated(t, h.post(t, ledger, &ledgerv1.PostPending{Id: "hold-posted:post", PendingId: "hold-posted"})...)
	mustCreated(t, h.void(t, ledger, &ledgerv1.VoidPending{Id: "hold-voided:void", PendingId: "hold-voided"})...)
	rs := h.reverse(t, ledger, &ledgerv1.Reversal{Id: "t0:r", TransferId: "t0"},
		&ledgerv1.Reversal{Id: "t1:r", TransferId: "t1", Amounts: []string{"1.00"}})
	mustCreated(t, rs...)
	return rs[len(rs)-1].GetPosition()
}

func TestListTransfersFilters(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	now := time.Now()
	pos := h.filterLedger(t, ledger, now)
	all := []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10", "t11",
		"hold-open", "hold-posted", "hold-voided", "hold-posted:post", "hold-voided:void", "t0:r", "t1:r"}
	views := h.getTransfers(t, ledger, pos, all...)
	if len(views) != len(all) {
		t.Fatalf("GetTransfers found %d of %d transfers", len(views), len(all))
	}
	// byPosition is the ids that satisfy keep, in position order: what a
	// listing must answer.
	byPosition := func(keep func(v *ledgerv1.TransferView) bool) []string {
		var out []*ledgerv1.TransferView
		for _, v := range views {
			if keep(v) {
				out = append(out, v)
			}
		}
		slices.SortFunc(out, func(a, b *ledgerv1.TransferView) int { return int(a.GetPosition()) - int(b.GetPosition()) })
		ids := make([]string, len(out))
		for i, v := range out {
			ids[i] = v.GetId()
		}
		return ids
	}
	within := func(ts *timestamppb.Timestamp, from, to time.Time) bool {
		at := ts.AsTime()
		return !at.Before(from) && !at.After(to)
	}
	recordedFrom, recordedTo := views["t3"].GetRecordedAt().AsTime(), views["t7"].GetRecordedAt().AsTime()
	effectiveFrom, effectiveTo := now.Add(-150*time.Minute), now.Add(-30*time.Minute)

	for _, c := range []struct {
		name string
		req  *ledgerv1.ListTransfersRequest
		want []string
	}{
		{"everything", &ledgerv1.ListTransfersRequest{}, byPosition(func(*ledgerv1.TransferView) bool { return true })},
		{"account", &ledgerv1.ListTransfersRequest{Account: "dave"}, []string{"t1", "t2", "t4", "t5", "t7", "t8", "t10", "t11",
			"hold-open", "hold-posted", "hold-voided", "hold-posted:post", "hold-voided:void", "t1:r"}},
		{"account with no transfer", &ledgerv1.ListTransfersRequest{Account: "carol"}, nil},
		{"unknown account", &ledgerv1.ListTransfersRequest{Account: "nobody"}, nil},
		{"reference", &ledgerv1.ListTransfersRequest{Reference: "inv-1"}, []string{"t1", "t5", "t9"}},
		{"metadata key", &ledgerv1.ListTransfersRequest{MetadataKey: "promo"}, []string{"t1", "t4", "t7", "t10"}},
		{"metadata key and value", &ledgerv1.ListTransfersRequest{MetadataKey: "channel", MetadataValue: "web"},
			[]string{"t0", "t3", "t6", "t9"}},
		{"metadata value of another key", &ledgerv1.ListTransfersRequest{MetadataKey: "promo", MetadataValue: "web"}, nil},
		{"status pending", &ledgerv1.ListTransfersRequest{Status: tstatusPending}, []string{"hold-open"}},
		{"status pending_posted", &ledgerv1.ListTransfersRequest{Status: tstatusPendingPosted}, []string{"hold-posted"}},
		{"status voided", &ledgerv1.ListTransfersRequest{Status: tstatusVoided}, []string{"hold-voided"}},
		{"status reversed", &ledgerv1.ListTransfersRequest{Status: tstatusReversed}, []string{"t0"}},
		{"status partially reversed", &ledgerv1.ListTransfersRequest{Status: tstatusPartiallyReversed}, []string{"t1"}},
		{"account and status", &ledgerv1.ListTransfersRequest{Account: "dave", Status: tstatusPosted},
			[]string{"t2", "t4", "t5", "t7", "t8", "t10", "t11", "hold-posted:post", "hold-voided:void", "t1:r"}},
		{"recorded time", &ledgerv1.ListTransfersRequest{FromTime: timestamppb.New(recordedFrom), ToTime: timestamppb.New(recordedTo)},
			byPosition(func(v *ledgerv1.TransferView) bool { return within(v.GetRecordedAt(), recordedFrom, recordedTo) })},
		{"recorded time, open end", &ledgerv1.ListTransfersRequest{FromTime: timestamppb.New(recordedTo)},
			byPosition(func(v *ledgerv1.TransferView) bool { return !v.GetRecordedAt().AsTime().Before(recordedTo) })},
		{"effective time", &ledgerv1.ListTransfersRequest{TimeBasis: ledgerv1.TimeBasis_TIME_BASIS_EFFECTIVE,
			FromTime: timestamppb.New(effectiveFrom), ToTime: timestamppb.New(effectiveTo)}, []string{"t9", "t10"}},
		{"effective time, open start", &ledgerv1.ListTransfersRequest{TimeBasis: ledgerv1.TimeBasis_TIME_BASIS_EFFECTIVE,
			ToTime: timestamppb.New(effectiveTo)}, []string{"t9", "t10", "t11"}},
		{"reference and time", &ledgerv1.ListTransfersRequest{Reference: "inv-3", FromTime: timestamppb.New(recordedFrom),
			ToTime: timestamppb.New(recordedTo)}, []string{"t3", "t7"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, limit := range []uint32{0, 1, 4} {
				req := c.req
				req.Ledger, req.MinPosition, req.Limit, req.Cursor = ledger, pos, limit, ""
				got, at := h.listIDs(t, req)
				if !slices.Equal(got, c.want) || at < pos {
					t.Errorf("limit %d: %v at %d, want %v at %d or later", limit, got, at, c.want, pos)
				}
			}
		})
	}
	if want := []string{"t3", "t4", "t5", "t6", "t7"}; !slices.Equal(byPosition(func(v *ledgerv1.TransferView) bool {
		return within(v.GetRecordedAt(), recordedFrom, recordedTo)
	}), want) {
		t.Errorf("recorded between t3 and t7: the transfers did not get a recorded time each")
	}
}

func TestListTransfersPagesWhileWritesContinue(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	n := 0
	// write records three transfers on alice and one that is not: each page
	// below is read while the listing grows.
	positions := map[string]uint64{}
	write := func() {
		var ts []*ledgerv1.Transfer
		for range 3 {
			ts = append(ts, transfer(fmt.Sprintf("w%d", n), "alice", "bob", "1.00", "USD"))
			n++
		}
		ts = append(ts, transfer(fmt.Sprintf("x%d", n), "bob", "carol", "1.00", "USD"))
		for i, r := range h.transfers(t, ledger, ts...) {
			mustCreated(t, r)
			positions[ts[i].GetId()] = r.GetPosition()
		}
	}
	for range 10 {
		write()
	}
	// The first page waits for the first writes; the others read what the
	// projection has.
	req := &ledgerv1.ListTransfersRequest{Ledger: ledger, Account: "alice", Limit: 4, MinPosition: h.head(t, ledger)}
	var (
		seen []string
		pos  uint64
	)
	for page := 0; ; page++ {
		if page > 200 {
			t.Fatalf("over 200 pages")
		}
		resp, err := h.query.ListTransfers(ctx(t), req)
		testenv.NoError(t, err)
		for _, v := range resp.GetTransfers() {
			seen = append(seen, v.GetId())
		}
		if page < 15 {
			write()
		}
		if resp.GetNextCursor() == "" {
			pos = resp.GetPosition()
			break
		}
		req.Cursor, req.MinPosition = resp.GetNextCursor(), 0
	}
	var want []string
	for i := range n {
		if id := fmt.Sprintf("w%d", i); positions[id] <= pos {
			want = append(want, id)
		}
	}
	if !slices.Equal(seen, want) {
		t.Errorf("pages listed %v, want %v: each transfer on alice up to position %d, once, in order", seen, want, pos)
	}
	if len(want) < 30 {
		t.Errorf("listing ended at position %d with %d transfers: the pages did not see the writes", pos, len(want))
	}
}

func TestTransferQueriesRefuseBadRequests(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	for i := range 3 {
		h.transferOK(t, ledger, transfer(fmt.Sprintf("t%d", i), "alice", "bob", "1.00", "USD"))
	}
	first, err := h.query.ListTransfers(ctx(t), &ledgerv1.ListTransfersRequest{Ledger: ledger, Limit: 1, MinPosition: h.head(t, ledger)})
	testenv.NoError(t, err)
	if first.GetNextCursor() == "" {
		t.Fatalf("no cursor after 1 of 3 transfers")
	}
	tooMany := make([]string, 1001)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("id-%d", i)
	}
	now := time.Now()
	list := func(r *ledgerv1.ListTransfersRequest) func() error {
		return func() error {
			if r.Ledger == "" {
				r.Ledger = ledger
			}
			_, err := h.query.ListTransfers(ctx(t), r)
			return err
		}
	}
	get := func(r *ledgerv1.GetTransfersRequest) func() error {
		return func() error {
			_, err := h.query.GetTransfers(ctx(t), r)
			return err
		}
	}
	for _, c := range []struct {
		name, field string
		call        func() error
	}{
		{"get: bad ledger", "ledger", get(&ledgerv1.GetTransfersRequest{Ledger: "Bad Ledger", Ids: []string{"t0"}})},
		{"get: unknown ledger", "ledger", get(&ledgerv1.GetTransfersRequest{Ledger: "no-such-ledger", Ids: []string{"t0"}})},
		{"get: unknown ledger waiting", "ledger", get(&ledgerv1.GetTransfersRequest{Ledger: "no-such-ledger", Ids: []string{"t0"},
			MinPosition: 1 << 40})},
		{"get: no ids", "ids", get(&ledgerv1.GetTransfersRequest{Ledger: ledger})},
		{"get: 1,001 ids", "ids", get(&ledgerv1.GetTransfersRequest{Ledger: ledger, Ids: tooMany})},
		{"get: malformed id", "ids", get(&ledgerv1.GetTransfersRequest{Ledger: ledger, Ids: []string{"t0", "a b"}})},
		{"list: bad ledger", "ledger", list(&ledgerv1.ListTransfersRequest{Ledger: "-bad"})},
		{"list: unknown ledger", "ledger", list(&ledgerv1.ListTransfersRequest{Ledger: "no-such-ledger"})},
		{"list: limit over 1,000", "limit", list(&ledgerv1.ListTransfersRequest{Limit: 1001})},
		{"list: cursor not base64", "cursor", list(&ledgerv1.ListTransfersRequest{Cursor: "!!!"})},
		{"list: cursor too short", "cursor", list(&ledgerv1.ListTransfersRequest{Cursor: "AQ"})},
		{"list: cursor of another listing", "cursor", list(&ledgerv1.ListTransfersRequest{Cursor: first.GetNextCursor(), Account: "alice"})},
		{"list: from after to", "from_time", list(&ledgerv1.ListTransfersRequest{FromTime: timestamppb.New(now),
			ToTime: timestamppb.New(now.Add(-time.Second))})},
		{"list: malformed from", "from_time", list(&ledgerv1.ListTransfersRequest{FromTime: &timestamppb.Timestamp{Nanos: -1}})},
		{"list: malformed to", "to_time", list(&ledgerv1.ListTransfersRequest{ToTime: &timestamppb.Timestamp{Seconds: 1 << 62}})},
		{"list: malformed account", "account", list(&ledgerv1.ListTransfersRequest{Account: "a b"})},
		{"list: reference too long", "reference", list(&ledgerv1.ListTransfersRequest{Reference: strings.Repeat("r", 257)})},
		{"list: reference with NUL", "reference", list(&ledgerv1.ListTransfersRequest{Reference: "a\x00"})},
		{"list: value without key", "metadata_key", list(&ledgerv1.ListTransfersRequest{MetadataValue: "web"})},
		{"list: key too long", "metadata_key", list(&ledgerv1.ListTransfersRequest{MetadataKey: strings.Repeat("k", 65)})},
		{"list: unknown status", "status", list(&ledgerv1.ListTransfersRequest{Status: 99})},
		{"list: unknown time basis", "time_basis", list(&ledgerv1.ListTransfersRequest{TimeBasis: 7})},
	} {
		err := c.call()
		st, _ := status.FromError(err)
		if st.Code() != codes.InvalidArgument || fieldOf(st) != c.field {
			t.Errorf("%s: %v (field %q), want InvalidArgument naming %q", c.name, err, fieldOf(st), c.field)
		}
	}

	// The cursor continues its own listing.
	next, err := h.query.ListTransfers(ctx(t), &ledgerv1.ListTransfersRequest{Ledger: ledger, Limit: 1, Cursor: first.GetNextCursor()})
	testenv.NoError(t, err)
	if got := transferIDs(next.GetTransfers()); !slices.Equal(got, []string{"t1"}) {
		t.Errorf("second page %v, want [t1]", got)
	}

	// min_position past the head: refused at once, naming the field, as
	// as_of_position is. The deadline is a guard past the server's 10 s
	// wait: a wait would end in DeadlineExceeded, not InvalidArgument.
	c, cancel := context.WithTimeout(context.Background(), queries.WaitMax+5*time.Second)
	defer cancel()
	_, err = h.query.GetTransfers(c, &ledgerv1.GetTransfersRequest{Ledger: ledger, Ids: []string{"t0"}, MinPosition: 1 << 40})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "min_position" {
		t.Errorf("GetTransfers past the head: %v, want InvalidArgument on min_position", err)
	}
}

func transferIDs(vs []*ledgerv1.TransferView) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.GetId()
	}
	return out
}
