package audit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// transferOf joins a transfer t to its ledger l (projections 0024).
const transferOf = `t.ledger_no = l.ledger_no AND l.ledger = $1`

// TestVerifyCatchesEditedTransfer edits the transfers read model, one
// field at a time and put back, then removes a row: each edit is a
// transfer divergence at the transfer's position, naming the field.
func TestVerifyCatchesEditedTransfer(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	w := newWorkload(t, h, ledger, 7)
	w.run(150)
	w.expire(1)
	rep := h.verify(t, ledger, audit.Options{})
	mustClean(t, "before the edits", rep)
	if rep.Transfers == 0 {
		t.Fatal("no transfers compared")
	}

	// pick returns the id and position of a transfer matching where, in
	// the middle of those that do.
	pick := func(where string) (string, uint64) {
		t.Helper()
		rows, err := h.pool.Query(ctx(t), `SELECT t.id, t.position FROM transfers t, transfer_ledgers l
			WHERE `+transferOf+` AND `+where+` ORDER BY t.position`, ledger)
		testenv.NoError(t, err)
		var (
			ids       []string
			positions []uint64
		)
		for rows.Next() {
			var (
				id  string
				pos int64
			)
			testenv.NoError(t, rows.Scan(&id, &pos))
			ids, positions = append(ids, id), append(positions, uint64(pos))
		}
		testenv.NoError(t, rows.Err())
		if len(ids) == 0 {
			t.Fatalf("no transfer where %s", where)
		}
		return ids[len(ids)/2], positions[len(ids)/2]
	}
	for _, c := range []struct {
		name, where, column, cast, set, field string
	}{
		{"status", "t.kind = 'transfer' AND t.status = 'posted'", "status", "text", "'reversed'", "status"},
		{"remaining", "t.kind = 'pending' AND t.status <> 'pending'", "postings", "json",
			`jsonb_set(t.postings::jsonb, '{0,remaining}', '"1"')::json`, "postings[0].remaining"},
		{"amount", "t.kind = 'post'", "postings", "json", `jsonb_set(t.postings::jsonb, '{0,amount}', '"7"')::json`, "postings[0].amount"},
		{"reference", "t.kind = 'reversal'", "reference", "text", "'forged'", "reference"},
		{"reversals", "t.status = 'partially_reversed'", "reversed_by", "text[]", "'{}'", "reversed_by"},
		{"resolution", "t.kind = 'pending' AND t.status = 'voided'", "resolved_by", "text", "'someone-else'", "resolved_by"},
		{"expiry", "t.kind = 'pending' AND t.expires_at IS NOT NULL", "expires_at", "timestamptz",
			"t.expires_at + interval '1 second'", "expires_at"},
		// A client's hold made to look like a rule's (projections 0030).
		{"alert", "t.kind = 'pending'", "alert", "text", "'main:1:big:bob'", "alert"},
	} {
		id, pos := pick(c.where)
		var was *string
		testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT t.`+c.column+`::text FROM transfers t, transfer_ledgers l
			WHERE `+transferOf+` AND t.id = $2`, ledger, id).Scan(&was))
		h.exec(t, `UPDATE transfers t SET `+c.column+` = `+c.set+` FROM transfer_ledgers l
			WHERE `+transferOf+` AND t.id = $2`, ledger, id)
		rep := h.verify(t, ledger, audit.Options{})
		checkDivergence(t, rep, audit.Divergence{Kind: audit.KindTransfer, Position: pos, Field: c.field})
		h.exec(t, `UPDATE transfers t SET `+c.column+` = $3::text::`+c.cast+` FROM transfer_ledgers l
			WHERE `+transferOf+` AND t.id = $2`, ledger, id, was)
		mustClean(t, c.name+" put back", h.verify(t, ledger, audit.Options{}))
	}

	// A row gone: the transfer expected at its position is missing.
	id, pos := pick("t.kind = 'void'")
	h.exec(t, `DELETE FROM transfers t USING transfer_ledgers l WHERE `+transferOf+` AND t.id = $2`, ledger, id)
	rep = h.verify(t, ledger, audit.Options{})
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindTransfer, Position: pos, Field: "id"})
	if rep.Divergence.Expected != id {
		t.Errorf("expected %q, want the id %q", rep.Divergence.Expected, id)
	}
}

// changedAfterMiddle runs a workload of 120 steps on a new ledger, notes
// the middle of its log, then takes steps more: posts, voids and reversals
// among them change transfers from before the middle after it.
func changedAfterMiddle(t *testing.T, seed uint64, steps int) (*harness, string, *workload, uint64) {
	t.Helper()
	h := start(t)
	ledger := testenv.Name(t)
	w := newWorkload(t, h, ledger, seed)
	w.run(120)
	middle := h.head(t, ledger) / 2
	for range steps {
		w.step()
	}
	return h, ledger, w, middle
}

// TestVerifyTransfersBeyondOneRead: with buckets of four positions and one
// compared a read of the log, the transfers changed after the verified
// head make several buckets differ, each compared as of the position its
// page was served at and found clean, and an edit in a bucket after them is
// still found.
func TestVerifyTransfersBeyondOneRead(t *testing.T) {
	t.Parallel()
	h, ledger, _, to := changedAfterMiddle(t, 8, 120)
	opts := audit.WithTransferBuckets(audit.Options{To: to}, 4, 1)
	mustClean(t, "up to the middle, changed since", h.verify(t, ledger, opts))

	rows, err := h.pool.Query(ctx(t), `SELECT t.position FROM transfers t, transfer_ledgers l
		WHERE `+transferOf+` AND t.position <= $2 AND t.updated_position > $2 ORDER BY t.position`, ledger, int64(to))
	testenv.NoError(t, err)
	var changed []uint64
	for rows.Next() {
		var pos int64
		testenv.NoError(t, rows.Scan(&pos))
		if b := uint64(pos) / 4; len(changed) == 0 || changed[len(changed)-1] != b {
			changed = append(changed, b)
		}
	}
	testenv.NoError(t, rows.Err())
	if len(changed) < 2 {
		t.Fatalf("transfers changed after %d in buckets %v: want two at least, before the edit", to, changed)
	}
	var (
		id  string
		pos int64
	)
	testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT t.id, t.position FROM transfers t, transfer_ledgers l
		WHERE `+transferOf+` AND t.position <= $2 AND t.position >= $3 ORDER BY t.position DESC LIMIT 1`,
		ledger, int64(to), int64(changed[1]+1)*4).Scan(&id, &pos))
	h.exec(t, `UPDATE transfers t SET reference = 'forged' FROM transfer_ledgers l WHERE `+transferOf+` AND t.id = $2`, ledger, id)
	checkDivergence(t, h.verify(t, ledger, opts),
		audit.Divergence{Kind: audit.KindTransfer, Position: uint64(pos), Field: "reference"})
}

// pagedTransfers serves ListTransfers in pages of seven, each as of the
// log's head at its call, and reverses the posted transfers of each page of
// a second listing once the page is served: the pages after it reflect
// later positions than it.
type pagedTransfers struct {
	ledgerv1.QueryServiceClient
	h        *harness
	w        *workload
	ledger   string
	listings int
	reversed int
}

func (p *pagedTransfers) ListTransfers(ctx context.Context, in *ledgerv1.ListTransfersRequest,
	opts ...grpc.CallOption) (*ledgerv1.ListTransfersResponse, error) {
	// Errors are returned, not failed on: Verify calls this from a
	// goroutine of its own.
	var head int64
	if err := p.h.pool.QueryRow(ctx, `SELECT position FROM ledger_heads WHERE ledger = $1`, p.ledger).Scan(&head); err != nil {
		return nil, err
	}
	req := proto.Clone(in).(*ledgerv1.ListTransfersRequest)
	req.Limit, req.MinPosition = 7, max(in.GetMinPosition(), uint64(head))
	resp, err := p.QueryServiceClient.ListTransfers(ctx, req, opts...)
	if in.GetCursor() == "" {
		p.listings++
	}
	if err != nil || p.listings < 2 {
		return resp, err
	}
	for _, tr := range resp.GetTransfers() {
		if tr.GetPosition() <= in.GetMinPosition() && tr.GetKind() == ledgerv1.TransferKind_TRANSFER_KIND_TRANSFER &&
			tr.GetStatus() == ledgerv1.TransferStatus_TRANSFER_STATUS_POSTED {
			r, err := p.h.cmd.ReverseTransfers(ctx, &ledgerv1.ReverseTransfersRequest{Ledger: p.ledger,
				Reversals: []*ledgerv1.Reversal{{Id: p.w.id("late"), TransferId: tr.GetId()}}})
			if err != nil {
				return nil, err
			}
			if created(r.GetResults()[0]) { // not when an account was closed since
				p.reversed++
			}
		}
	}
	return resp, nil
}

// TestVerifyTransfersAsOfTheirPage: transfers reversed while Verify lists
// them (after the verified head, between its pages) are compared as of the
// page that served each, not as of the last: the verification is clean.
func TestVerifyTransfersAsOfTheirPage(t *testing.T) {
	t.Parallel()
	h, ledger, w, to := changedAfterMiddle(t, 9, 60)
	paged := &pagedTransfers{QueryServiceClient: h.query, h: h, w: w, ledger: ledger}
	rep, err := audit.Verify(ctx(t), h.serviceLog(ledger), paged,
		audit.WithTransferBuckets(audit.Options{To: to, Alerts: h.mon}, 4, 64))
	testenv.NoError(t, err)
	mustClean(t, "pages served at different positions", rep)
	if paged.listings < 2 || paged.reversed == 0 {
		t.Fatalf("%d listings, %d transfers reversed between pages: the pages did not differ", paged.listings, paged.reversed)
	}
}

// forgetfulLog is a Log whose reads from position 1 after the first leave
// out the events at positions gone.
type forgetfulLog struct {
	audit.Log
	gone  []uint64
	reads int
}

func (l *forgetfulLog) Read(ctx context.Context, from, to uint64, fn func([]eventstore.Record) error) error {
	if from <= 1 {
		l.reads++
	}
	if from > 1 || l.reads == 1 {
		return l.Log.Read(ctx, from, to, fn)
	}
	return l.Log.Read(ctx, from, to, func(recs []eventstore.Record) error {
		return fn(slices.DeleteFunc(recs, func(r eventstore.Record) bool { return slices.Contains(l.gone, r.Position) }))
	})
}

// TestVerifyTransfersSecondReadGap: a log that lost the verified head's
// event, and the one after next, between the two reads, while the second
// reads past the head (transfers changed after it), is a gap at the head:
// the lowest.
func TestVerifyTransfersSecondReadGap(t *testing.T) {
	t.Parallel()
	h, ledger, _, to := changedAfterMiddle(t, 11, 60)
	l := &forgetfulLog{Log: h.serviceLog(ledger), gone: []uint64{to, to + 2}}
	rep, err := audit.Verify(ctx(t), l, h.query, audit.Options{To: to, Alerts: h.mon})
	testenv.NoError(t, err)
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindGap, Position: to})
	if want := fmt.Sprintf("position %d", to+1); rep.Divergence.Found != want {
		t.Errorf("found %q, want %q", rep.Divergence.Found, want)
	}
	if !strings.Contains(rep.Divergence.Detail, "changed while it was verified") || l.reads < 2 {
		t.Errorf("detail %q after %d reads, want the log changed while verified, found by a second read",
			rep.Divergence.Detail, l.reads)
	}
}

// stuckTransfers serves the first page of ListTransfers again whatever the
// cursor, with a cursor to go on: a listing that never ends.
type stuckTransfers struct{ ledgerv1.QueryServiceClient }

func (s stuckTransfers) ListTransfers(ctx context.Context, in *ledgerv1.ListTransfersRequest,
	opts ...grpc.CallOption) (*ledgerv1.ListTransfersResponse, error) {
	req := proto.Clone(in).(*ledgerv1.ListTransfersRequest)
	req.Cursor, req.Limit = "", 7
	resp, err := s.QueryServiceClient.ListTransfers(ctx, req, opts...)
	if err != nil {
		return nil, err
	}
	if resp.GetNextCursor() == "" {
		return nil, fmt.Errorf("one page holds every transfer: the test needs more")
	}
	return resp, nil
}

// TestVerifyRefusesTransfersOutOfOrder: a listing whose positions do not
// go up (the same page again) ends with an error, not a loop.
func TestVerifyRefusesTransfersOutOfOrder(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 12).run(40)
	_, err := audit.Verify(ctx(t), h.serviceLog(ledger), stuckTransfers{h.query}, audit.Options{})
	if !errors.Is(err, audit.ErrOutOfOrder) {
		t.Fatalf("verify: %v, want a listing out of order", err)
	}
	// The accounts' listing too, by id.
	_, err = audit.Verify(ctx(t), h.serviceLog(ledger), stuckAccounts{h.query}, audit.Options{})
	if !errors.Is(err, audit.ErrOutOfOrder) {
		t.Fatalf("verify with the accounts listed again: %v, want a listing out of order", err)
	}
}

// stuckAccounts serves the first page of ListAccounts again whatever the
// cursor, with a cursor to go on.
type stuckAccounts struct{ ledgerv1.QueryServiceClient }

func (s stuckAccounts) ListAccounts(ctx context.Context, in *ledgerv1.ListAccountsRequest,
	opts ...grpc.CallOption) (*ledgerv1.ListAccountsResponse, error) {
	req := proto.Clone(in).(*ledgerv1.ListAccountsRequest)
	req.Cursor, req.Limit = "", 4
	resp, err := s.QueryServiceClient.ListAccounts(ctx, req, opts...)
	if err != nil {
		return nil, err
	}
	if resp.GetNextCursor() == "" {
		return nil, fmt.Errorf("one page holds every account: the test needs more")
	}
	return resp, nil
}
