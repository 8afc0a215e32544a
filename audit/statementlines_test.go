package audit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// statementsRead records the accounts whose statement Verify reads
// through ListStatement (account by account).
type statementsRead struct {
	ledgerv1.QueryServiceClient
	mu       sync.Mutex
	accounts []string
}

func (s *statementsRead) ListStatement(ctx context.Context, in *ledgerv1.ListStatementRequest,
	opts ...grpc.CallOption) (*ledgerv1.ListStatementResponse, error) {
	s.mu.Lock()
	if !slices.Contains(s.accounts, in.GetAccount()) {
		s.accounts = append(s.accounts, in.GetAccount())
	}
	s.mu.Unlock()
	return s.QueryServiceClient.ListStatement(ctx, in, opts...)
}

func (s *statementsRead) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.accounts
	s.accounts = nil
	slices.Sort(got)
	return got
}

// linesCounted counts the lines ReadStatementLines streams; endless, it
// then serves the last message again and again: a ledgerd that never ends
// its stream.
type linesCounted struct {
	ledgerv1.AuditServiceClient
	endless bool
	lines   atomic.Uint64
}

func (l *linesCounted) ReadStatementLines(ctx context.Context, in *ledgerv1.ReadStatementLinesRequest,
	opts ...grpc.CallOption) (grpc.ServerStreamingClient[ledgerv1.ReadStatementLinesResponse], error) {
	s, err := l.AuditServiceClient.ReadStatementLines(ctx, in, opts...)
	return &countedStream{ServerStreamingClient: s, of: l}, err
}

type countedStream struct {
	grpc.ServerStreamingClient[ledgerv1.ReadStatementLinesResponse]
	of   *linesCounted
	last any // a copy of the last message (audit.KeepLines)
}

// RecvMsg is what Verify calls, into a message of its own.
func (s *countedStream) RecvMsg(m any) error {
	err := s.ServerStreamingClient.RecvMsg(m)
	switch {
	case errors.Is(err, io.EOF) && s.of.endless && s.last != nil:
		audit.PutLines(m, s.last)
		err = nil
	case err == nil && s.of.endless:
		s.last = audit.KeepLines(m)
	}
	if err == nil {
		s.of.lines.Add(uint64(audit.LinesIn(m)))
	}
	return err
}

// noBulkLines is a ledgerd that does not serve ReadStatementLines.
type noBulkLines struct{}

func (noBulkLines) ReadStatementLines(context.Context, *ledgerv1.ReadStatementLinesRequest,
	...grpc.CallOption) (grpc.ServerStreamingClient[ledgerv1.ReadStatementLinesResponse], error) {
	return nil, status.Error(codes.Unimplemented, "unknown method ReadStatementLines")
}

// TestVerifyStatementsInBulk: Verify reads every statement line at once
// and reads no statement account by account when they all agree; when a
// line is edited, it reads that account's statement alone, and finds the
// line. Without the bulk read (an older ledgerd), it reads every account's.
func TestVerifyStatementsInBulk(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 6).run(80)
	proj := &statementsRead{QueryServiceClient: h.query}
	lines := &linesCounted{AuditServiceClient: h.audit}
	verify := func(opts audit.Options) *audit.Report {
		t.Helper()
		opts.Alerts = h.mon
		rep, err := audit.Verify(ctx(t), h.serviceLog(ledger), proj, opts)
		testenv.NoError(t, err)
		return rep
	}

	rep := verify(audit.Options{Lines: lines})
	mustClean(t, "in bulk", rep)
	if got := lines.lines.Swap(0); rep.StatementLines == 0 || got != rep.StatementLines {
		t.Errorf("%d lines streamed, the report counts %d: want them all, at once", got, rep.StatementLines)
	}
	if got := proj.take(); len(got) > 0 {
		t.Errorf("statements read account by account: %v, want none (every account agrees)", got)
	}

	const account = "usd:0"
	moved := h.movementPositions(t, ledger, account)
	pos := moved[len(moved)/2]
	edit := func(delta int) {
		h.exec(t, `UPDATE movements m SET credits_posted = credits_posted + $4 FROM movement_heads h
			WHERE h.ledger = $1 AND h.account = $2 AND `+lineOfHead+` AND m.position = $3`,
			ledger, account, int64(pos), delta)
	}
	edit(1)
	rep = verify(audit.Options{Lines: lines})
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindStatement, Position: pos, Account: account})
	if got := proj.take(); !slices.Equal(got, []string{account}) {
		t.Errorf("statements read account by account: %v, want %s's alone", got, account)
	}
	edit(-1)

	// Refused at the call, or on the stream's first message (as grpc-go
	// reports an unknown method of a server stream), by a ledgerd without
	// the call or with its streams all taken.
	for _, lines := range []audit.StatementLines{noBulkLines{}, refusedOnRecv{codes.Unimplemented},
		refusedOnRecv{codes.ResourceExhausted}} {
		rep = verify(audit.Options{Lines: lines})
		mustClean(t, "account by account", rep)
		if got := proj.take(); len(got) < 6 || !slices.Contains(got, account) {
			t.Errorf("%T: statements read account by account: %v, want every account's", lines, got)
		}
	}
}

// refusedOnRecv is a ReadStatementLines stream whose first message is a
// refusal with code.
type refusedOnRecv struct{ code codes.Code }

func (r refusedOnRecv) ReadStatementLines(context.Context, *ledgerv1.ReadStatementLinesRequest,
	...grpc.CallOption) (grpc.ServerStreamingClient[ledgerv1.ReadStatementLinesResponse], error) {
	return refusedStream{err: status.Error(r.code, "refused")}, nil
}

type refusedStream struct {
	grpc.ServerStreamingClient[ledgerv1.ReadStatementLinesResponse] // nil: only RecvMsg is called
	err                                                             error
}

func (s refusedStream) RecvMsg(any) error { return s.err }

// TestVerifyCatchesSwappedLines: two lines of one account at one position
// (a hold posted: its release, then the posting) swapped in the read
// model are the same lines in another order, which ListStatement serves,
// and the running balance between them is wrong. The bulk read keys each
// line by its rank (seq), so the account is read again and the line found.
func TestVerifyCatchesSwappedLines(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 6).run(120)
	h.caughtUp(t, ledger)
	var (
		account string
		pos     int64
	)
	err := h.pool.QueryRow(ctx(t), `SELECT h.account, m.position FROM movements m JOIN movement_heads h ON `+lineOfHead+`
		WHERE h.ledger = $1 AND m.seq = 1 ORDER BY m.position LIMIT 1`, ledger).Scan(&account, &pos)
	testenv.NoError(t, err)
	swap := func(from, to int) {
		h.exec(t, `UPDATE movements m SET seq = $4 FROM movement_heads h
			WHERE h.ledger = $1 AND h.account = $2 AND `+lineOfHead+` AND m.position = $3 AND m.seq = $5`,
			ledger, account, pos, to, from)
	}
	swap(0, 100)
	swap(1, 0)
	swap(100, 1)
	rep := h.verify(t, ledger, audit.Options{})
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindStatement, Position: uint64(pos), Account: account})
}

// TestVerifyCatchesLinesOfAnAccountNeverOpened: a head and a line forged
// for an account the log never opens (its amounts zero: no balance or
// trial balance moves) are in no statement the replay expects; the bulk
// read finds the line.
func TestVerifyCatchesLinesOfAnAccountNeverOpened(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 6).run(40)
	h.caughtUp(t, ledger)
	const ghost, opened = "ghost", 1 << 40
	h.exec(t, `INSERT INTO movement_heads (ledger, ledger_no, account, asset, scale, normal_balance, opened_position)
		SELECT ledger, ledger_no, $2, asset, scale, normal_balance, $3 FROM movement_heads WHERE ledger = $1 AND account = 'usd:0'`,
		ledger, ghost, int64(opened))
	var pos int64
	testenv.NoError(t, h.pool.QueryRow(ctx(t), `WITH src AS (SELECT m.* FROM movements m JOIN movement_heads h ON `+lineOfHead+`
			WHERE h.ledger = $1 AND h.account = 'usd:0' ORDER BY m.position LIMIT 1)
		INSERT INTO movements SELECT (jsonb_populate_record(NULL::movements, to_jsonb(src) || jsonb_build_object(
			'account_no', $2::bigint, 'amount', 0, 'debits_posted', 0, 'credits_posted', 0, 'debits_pending', 0,
			'credits_pending', 0))).* FROM src RETURNING position`, ledger, int64(opened)).Scan(&pos))
	rep := h.verify(t, ledger, audit.Options{})
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindStatement, Position: uint64(pos), Account: ghost})
	if rep.Divergence.Field != "account" {
		t.Errorf("field %q, want account", rep.Divergence.Field)
	}
}

// TestReadStatementLinesInMessages: ReadStatementLines sends every line up
// to its position, each once, in messages of at most 1,000 lines.
func TestReadStatementLinesInMessages(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	c := ctx(t)
	_, err := h.cmd.DefineAsset(c, &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	testenv.NoError(t, err)
	credit := ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT
	_, err = h.cmd.OpenAccounts(c, &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: []*ledgerv1.Account{
		{Id: "a", Asset: "USD", NormalBalance: credit}, {Id: "b", Asset: "USD", NormalBalance: credit}}})
	testenv.NoError(t, err)
	ts := make([]*ledgerv1.Transfer, 1200)
	for i := range ts {
		ts[i] = &ledgerv1.Transfer{Id: fmt.Sprintf("t%d", i), Postings: []*ledgerv1.Posting{{DebitAccount: "a",
			CreditAccount: "b", Amount: "1.00", Asset: "USD"}}}
	}
	resp, err := h.cmd.CreateTransfers(c, &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: ts})
	testenv.NoError(t, err)
	to := resp.GetResults()[len(ts)-1].GetPosition()
	stream, err := h.audit.ReadStatementLines(c, &ledgerv1.ReadStatementLinesRequest{Ledger: ledger, ToPosition: to})
	testenv.NoError(t, err)
	seen := map[string]bool{}
	messages := 0
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		testenv.NoError(t, err)
		messages++
		if n := len(msg.GetLines()); n == 0 || n > 1000 {
			t.Errorf("message %d holds %d lines, want 1..1000", messages, n)
		}
		for _, l := range msg.GetLines() {
			key := fmt.Sprintf("%s@%d/%d", l.GetAccount(), l.GetLine().GetPosition(), l.GetSeq())
			if seen[key] {
				t.Errorf("line %s sent twice", key)
			}
			seen[key] = true
		}
	}
	if want := 2 * len(ts); len(seen) != want || messages < 3 {
		t.Errorf("%d lines in %d messages, want %d in at least 3", len(seen), messages, want)
	}
}

// TestVerifyBoundsTheLinesRead: from a stream of lines that never ends,
// Verify, once its replay is over, reads at most a page more than the
// replay's lines (it reads the lines beside the replay, before it knows how
// many there are), and finds statements that differ.
func TestVerifyBoundsTheLinesRead(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 6).run(40)
	lines := &linesCounted{AuditServiceClient: h.audit, endless: true}
	var replayed atomic.Int64 // lines read when the replay was over; -1: not yet
	replayed.Store(-1)
	rep := h.verify(t, ledger, audit.Options{Lines: lines, Progress: func(p audit.Progress) {
		if p.Phase != "log" && replayed.Load() < 0 {
			replayed.Store(int64(lines.lines.Load()))
		}
	}})
	if rep.Clean() || rep.Divergence.Kind != audit.KindStatement {
		t.Errorf("verify: %v, want a statement divergence", rep.Divergence)
	}
	if sent, bound := int64(lines.lines.Load()), max(replayed.Load(), int64(rep.StatementLines))+2*1000; sent > bound {
		t.Errorf("%d lines read (%d when the replay was over), want at most %d (the replay's %d and a page, "+
			"a message past it)", sent, replayed.Load(), bound, rep.StatementLines)
	}
}

// readsBeside fails the first bulk read of the lines and the first
// listing of the transfers (as a ledgerd whose projections had not reached
// To in time), and holds the log's first read until both were asked for:
// they run beside the replay, or the replay waits in vain.
type readsBeside struct {
	audit.Log
	ledgerv1.QueryServiceClient
	ledgerv1.AuditServiceClient
	linesCalls, listCalls atomic.Int32
	lines, list           chan struct{} // closed at the first call
	replay                sync.Once
}

func (r *readsBeside) ReadStatementLines(ctx context.Context, in *ledgerv1.ReadStatementLinesRequest,
	opts ...grpc.CallOption) (grpc.ServerStreamingClient[ledgerv1.ReadStatementLinesResponse], error) {
	if r.linesCalls.Add(1) == 1 {
		close(r.lines)
		return nil, status.Error(codes.Unavailable, "the movements projection did not reach the position in time")
	}
	return r.AuditServiceClient.ReadStatementLines(ctx, in, opts...)
}

func (r *readsBeside) ListTransfers(ctx context.Context, in *ledgerv1.ListTransfersRequest,
	opts ...grpc.CallOption) (*ledgerv1.ListTransfersResponse, error) {
	if r.listCalls.Add(1) == 1 {
		close(r.list)
		return nil, status.Error(codes.Unavailable, "the transfers projection did not reach the position in time")
	}
	return r.QueryServiceClient.ListTransfers(ctx, in, opts...)
}

func (r *readsBeside) Read(ctx context.Context, from, to uint64, fn func([]eventstore.Record) error) error {
	var err error
	r.replay.Do(func() {
		for _, asked := range []chan struct{}{r.lines, r.list} {
			select {
			case <-asked:
			case <-time.After(30 * time.Second):
				err = errors.New("the replay began, and the served lines and transfers were not asked for beside it")
			}
		}
	})
	if err != nil {
		return err
	}
	return r.Log.Read(ctx, from, to, fn)
}

// TestVerifyReadsBesideTheReplay: Verify asks ledgerd for the statement
// lines and the transfers up to the head before its replay reads the log,
// and a read that failed then is made again after the replay.
func TestVerifyReadsBesideTheReplay(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 6).run(60)
	r := &readsBeside{Log: h.serviceLog(ledger), QueryServiceClient: h.query, AuditServiceClient: h.audit,
		lines: make(chan struct{}), list: make(chan struct{})}
	rep, err := audit.Verify(ctx(t), r, r, audit.Options{Lines: r, Alerts: h.mon})
	testenv.NoError(t, err)
	mustClean(t, "beside the replay", rep)
	if rep.StatementLines == 0 || rep.Transfers == 0 {
		t.Errorf("%d lines and %d transfers compared, want some of each", rep.StatementLines, rep.Transfers)
	}
	if got := r.linesCalls.Load(); got != 2 {
		t.Errorf("%d bulk reads of the lines, want 2 (the failed one made again)", got)
	}
}
