package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/ctl"
	"github.com/ledgerd/ledger/internal/testenv"
)

// End-to-end tests of AuditService.ImportEvents and ledgerctl log import:
// a random workload's log, exported as JSON Lines, goes into a new ledger
// through gRPC and through ledgerctl; tampered logs are refused at their
// first bad event and leave nothing behind.

func (h *harness) importClient(t *testing.T) ledgerv1.AuditServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return ledgerv1.NewAuditServiceClient(conn)
}

func (h *harness) importStore(t *testing.T) *eventstore.Store {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), h.pgURL)
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	return eventstore.New(pool)
}

// importExport reads a ledger's whole log, as the export does.
func importExport(t *testing.T, st *eventstore.Store, ledger string) []eventstore.Record {
	t.Helper()
	var out []eventstore.Record
	for {
		recs, err := st.Read(ctx(t), ledger, uint64(len(out))+1, eventstore.ReadMax)
		testenv.NoError(t, err)
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
	}
}

// importJSONLines is recs as an export file.
func importJSONLines(recs []eventstore.Record) []byte {
	b, err := audit.AppendExport(nil, recs)
	if err != nil {
		panic(err)
	}
	return b
}

func importLogEvent(r *eventstore.Record) *ledgerv1.LogEvent {
	return &ledgerv1.LogEvent{Ledger: r.Ledger, Position: r.Position, Type: r.Type, SchemaVersion: uint32(r.SchemaVersion),
		RecordedAt: timestamppb.New(r.RecordedAt), CommandId: r.CommandID, Payload: string(r.Payload),
		PrevHash: fmt.Sprintf("%x", r.PrevHash[:]), Hash: fmt.Sprintf("%x", r.Hash[:])}
}

// importStream streams recs into target, perMessage events a message.
func importStream(t *testing.T, c ledgerv1.AuditServiceClient, target string, recs []eventstore.Record, perMessage int) (*ledgerv1.ImportEventsResponse, error) {
	t.Helper()
	return importStreamCtx(ctx(t), c, target, recs, perMessage)
}

// importStreamCtx is importStream for any goroutine.
func importStreamCtx(ctx context.Context, c ledgerv1.AuditServiceClient, target string, recs []eventstore.Record, perMessage int) (*ledgerv1.ImportEventsResponse, error) {
	stream, err := c.ImportEvents(ctx)
	if err != nil {
		return nil, err
	}
	msg := &ledgerv1.ImportEventsRequest{Ledger: target}
	for i := range recs {
		msg.Events = append(msg.Events, importLogEvent(&recs[i]))
		if len(msg.Events) == perMessage || i == len(recs)-1 {
			if err := stream.Send(msg); err != nil {
				break // refused: CloseAndRecv says why
			}
			msg = &ledgerv1.ImportEventsRequest{}
		}
	}
	return stream.CloseAndRecv()
}

// importCheckChain reads target's events from the table and recomputes its chain
// under its own name; it returns the records.
func (h *harness) importCheckChain(t *testing.T, ledger string) []eventstore.Record {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx(t), `SELECT ledger, position, type, schema_version, recorded_at, command_id, payload, prev_hash, hash
		FROM events WHERE ledger = $1 ORDER BY position`, ledger)
	testenv.NoError(t, err)
	var (
		out        []eventstore.Record
		r          eventstore.Record
		pos        int64
		version    int16
		prev, hash []byte
		last       eventstore.Hash
	)
	_, err = pgx.ForEachRow(rows, []any{&r.Ledger, &pos, &r.Type, &version, &r.RecordedAt, &r.CommandID, &r.Payload, &prev, &hash}, func() error {
		r.Position, r.SchemaVersion, r.RecordedAt = uint64(pos), int(version), r.RecordedAt.UTC()
		copy(r.PrevHash[:], prev)
		copy(r.Hash[:], hash)
		r.Payload = slices.Clone(r.Payload)
		switch {
		case r.Ledger != ledger || r.Position != uint64(len(out))+1:
			return fmt.Errorf("row %d: %s@%d", len(out)+1, r.Ledger, r.Position)
		case r.PrevHash != last:
			return fmt.Errorf("position %d: prev_hash does not link", r.Position)
		case !r.VerifyHash():
			return fmt.Errorf("position %d: hash does not match", r.Position)
		}
		last = r.Hash
		out = append(out, r)
		return nil
	})
	testenv.NoError(t, err)
	return out
}

// importAccountIDs are the accounts a log opens.
func importAccountIDs(recs []eventstore.Record) []string {
	var ids []string
	for i := range recs {
		if recs[i].Type == domain.TypeAccountOpened {
			ids = append(ids, recs[i].CommandID)
		}
	}
	return ids
}

// importView is what the read models serve of a ledger at a position: every
// balance, with the position it last moved, and the trial balance.
func (h *harness) importView(t *testing.T, ledger string, pos uint64, accounts []string) map[string]string {
	t.Helper()
	h.waitProjections(t, ledger, pos)
	out := map[string]string{}
	for ids := range slices.Chunk(accounts, 1000) {
		for id, b := range h.balances(t, ledger, pos, ids...) {
			out[id] = fmt.Sprintf("%s @%d", summary(b), b.GetPosition())
		}
	}
	tb, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: ledger, MinPosition: pos})
	testenv.NoError(t, err)
	for asset, l := range tbLinesOf(tb.GetLines()) {
		out["trial balance "+asset] = fmt.Sprintf("%+v", l)
	}
	return out
}

// importCheckCopy checks that target holds source's log, sealed under its name,
// and that its read models equal source's.
func (h *harness) importCheckCopy(t *testing.T, st *eventstore.Store, source, target string, resp *ledgerv1.ImportEventsResponse) {
	t.Helper()
	src := importExport(t, st, source)
	n := uint64(len(src))
	got := h.importCheckChain(t, target)
	if uint64(len(got)) != n {
		t.Fatalf("%s holds %d events, %s %d", target, len(got), source, n)
	}
	for i := range got {
		g, s := &got[i], &src[i]
		if g.Type != s.Type || g.CommandID != s.CommandID || !g.RecordedAt.Equal(s.RecordedAt) || !bytes.Equal(g.Payload, s.Payload) {
			t.Fatalf("position %d: %s %s %s differs from the source's %s %s %s", i+1, g.Type, g.CommandID, g.Payload, s.Type, s.CommandID, s.Payload)
		}
	}
	head, hash, err := st.Head(ctx(t), target)
	testenv.NoError(t, err)
	last := got[len(got)-1].Hash
	if resp.GetLedger() != target || resp.GetEvents() != n || resp.GetPosition() != n || resp.GetHash() != fmt.Sprintf("%x", last[:]) ||
		head != n || hash != last {
		t.Errorf("response %v, head %d %x; want %s, %d events, head %d %x", resp, head, hash[:4], target, n, n, last[:4])
	}
	accounts := importAccountIDs(src)
	want := h.importView(t, source, n, accounts)
	if gotView := h.importView(t, target, n, accounts); !importSameMap(gotView, want) {
		t.Errorf("%s serves %v, want %v (the source's)", target, gotView, want)
	}
}

func importSameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// importWorkload runs the random trial-balance workload on a new ledger.
func (h *harness) importWorkload(t *testing.T, ledger string, seed uint64, steps int) {
	t.Helper()
	w := newTBWorkload(t, h, ledger, seed)
	for range steps {
		w.step(t)
	}
}

func TestImportEventsIntoANewLedger(t *testing.T) {
	t.Parallel()
	h := start(t)
	st, audit := h.importStore(t), h.importClient(t)
	source := testenv.Name(t)
	h.importWorkload(t, source, 21, 150)
	log := importExport(t, st, source)
	n := uint64(len(log))

	target := testenv.Name(t)
	resp, err := importStream(t, audit, target, log, 7) // many messages, one not full
	testenv.NoError(t, err)
	h.importCheckCopy(t, st, source, target, resp)

	// The imported ledger is a ledger like any other: its writer loaded it.
	pos := h.transferOK(t, target, transfer("after-import", "alice", "bob", "1.00", "USD"))
	if pos != n+1 {
		t.Errorf("first transfer after the import at %d, want %d", pos, n+1)
	}
	// And an auditor's verify of the copy is clean: its chain, a replay, and
	// every projection built from it agree.
	testenv.Eventually(t, 30*time.Second, func() error {
		var out, errOut bytes.Buffer
		env := map[string]string{"LEDGER_ADDR": h.m.GRPCAddr(), "LEDGER_LEDGER": target, "LEDGER_API_KEY": h.key}
		if code := ctl.Run(ctx(t), []string{"audit", "verify"}, func(k string) string { return env[k] }, &out, &errOut); code != 0 {
			return fmt.Errorf("audit verify of the imported ledger: exit %d\n%s%s", code, out.String(), errOut.String())
		}
		return nil
	})

	// Into an existing ledger, the log's own or the copy: refused, unchanged.
	for _, name := range []string{source, target} {
		before, _, err := st.Head(ctx(t), name)
		testenv.NoError(t, err)
		_, err = importStream(t, audit, name, log, 8192)
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("import into %s (existing): %v, want FailedPrecondition", name, err)
		}
		if after, _, _ := st.Head(ctx(t), name); after != before {
			t.Errorf("%s head moved from %d to %d", name, before, after)
		}
	}
}

// TestImportEventsUnderItsOwnName restores a ledger into a new installation
// (another database) under its own name: the chain is kept as it is.
func TestImportEventsUnderItsOwnName(t *testing.T) {
	t.Parallel()
	h := start(t)
	source := testenv.Name(t)
	h.importWorkload(t, source, 22, 60)
	log := importExport(t, h.importStore(t), source)

	// The second installation shares the package's NATS server, where the
	// ledger's stream holds the very same events.
	h2 := start(t)
	st2 := h2.importStore(t)
	resp, err := importStream(t, h2.importClient(t), source, log, 8192)
	testenv.NoError(t, err)
	got := h2.importCheckChain(t, source)
	if len(got) != len(log) {
		t.Fatalf("%d events imported, want %d", len(got), len(log))
	}
	for i := range got {
		if got[i].Hash != log[i].Hash {
			t.Fatalf("position %d: hash %x, the original's %x", i+1, got[i].Hash[:4], log[i].Hash[:4])
		}
	}
	if resp.GetHash() != fmt.Sprintf("%x", log[len(log)-1].Hash[:]) {
		t.Errorf("head hash %s, want the original's %x", resp.GetHash(), log[len(log)-1].Hash[:])
	}
	n := uint64(len(log))
	accounts := importAccountIDs(log)
	if got, want := h2.importView(t, source, n, accounts), h.importView(t, source, n, accounts); !importSameMap(got, want) {
		t.Errorf("restored ledger serves %v, want %v", got, want)
	}
	if head, _, _ := st2.Head(ctx(t), source); head != n {
		t.Errorf("head %d, want %d", head, n)
	}
}

// importTamper is a damaged log: what to do to a copy of the records (or
// of the file's lines), and where and why it must be refused.
type importTamper struct {
	name string
	// records, when set, damages the records; lines, the file's lines.
	records func(recs []eventstore.Record) []eventstore.Record
	lines   func(lines [][]byte) [][]byte
	line    int    // the first bad line
	pos     uint64 // the position the refusal names
	reason  string
}

// importTamperAt is where the tamper cases strike: a transfer's position, well
// inside the log.
func importTamperAt(t *testing.T, log []eventstore.Record) int {
	t.Helper()
	for i := len(log) / 2; i < len(log); i++ {
		if log[i].Type == domain.TypeTransferCommitted {
			return i
		}
	}
	t.Fatal("no transfer in the second half of the log")
	return 0
}

// importResealFrom recomputes positions and the chain from index i on, as a
// forger would.
func importResealFrom(recs []eventstore.Record, i int) {
	var prev eventstore.Hash
	if i > 0 {
		prev = recs[i-1].Hash
	}
	for ; i < len(recs); i++ {
		recs[i].Position = uint64(i + 1)
		recs[i].Seal(prev)
		prev = recs[i].Hash
	}
}

func importTamperCases(k int) []importTamper {
	p := uint64(k + 1) // the position of record k
	return []importTamper{
		{name: "one byte changed in a payload", records: func(r []eventstore.Record) []eventstore.Record {
			i := bytes.Index(r[k].Payload, []byte(`"amount":"`)) + len(`"amount":"`)
			r[k].Payload[i] = '0' + (r[k].Payload[i]-'0'+1)%10
			return r
		}, line: k + 1, pos: p, reason: "hash does not match the event at position " + fmt.Sprint(p)},
		{name: "a line deleted", records: func(r []eventstore.Record) []eventstore.Record {
			return slices.Delete(r, k, k+1)
		}, line: k + 1, pos: p + 1, reason: fmt.Sprintf("position out of order at position %d: expected position %d", p+1, p)},
		{name: "two lines swapped", records: func(r []eventstore.Record) []eventstore.Record {
			r[k], r[k+1] = r[k+1], r[k]
			return r
		}, line: k + 1, pos: p + 1, reason: fmt.Sprintf("position out of order at position %d", p+1)},
		{name: "a transfer to an unknown account, chain recomputed", records: func(r []eventstore.Record) []eventstore.Record {
			e := domain.TransferCommitted{ID: "forged", EffectiveAt: r[k].RecordedAt, Postings: []domain.Posting{{Debit: "alice",
				Credit: "nobody", Asset: "USD", Amount: domain.Amount{Units: domain.UnitsFromInt64(100), Scale: 2}}}}
			forged := r[k]
			forged.CommandID, forged.Payload = "forged", domain.AppendEvent(nil, e)
			r = slices.Insert(r, k, forged)
			importResealFrom(r, k)
			return r
		}, line: k + 1, pos: p, reason: fmt.Sprintf("invariant broken at position %d: domain: event at %d names missing account nobody", p, p)},
	}
}

// importDamaged returns a deep copy of log with a case's damage done.
func importDamaged(log []eventstore.Record, tc importTamper) []eventstore.Record {
	recs := slices.Clone(log)
	for i := range recs {
		recs[i].Payload = slices.Clone(recs[i].Payload)
	}
	return tc.records(recs)
}

func TestImportEventsRefusesATamperedLog(t *testing.T) {
	t.Parallel()
	h := start(t)
	st, audit := h.importStore(t), h.importClient(t)
	source := testenv.Name(t)
	h.importWorkload(t, source, 23, 80)
	log := importExport(t, st, source)
	k := importTamperAt(t, log)

	var targets []string
	for _, tc := range importTamperCases(k) {
		t.Run(tc.name, func(t *testing.T) {
			target := testenv.Name(t)
			targets = append(targets, target)
			_, err := importStream(t, audit, target, importDamaged(log, tc), 5)
			st, _ := status.FromError(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.reason) || fieldOf(st) != "events" {
				t.Errorf("got %v (field %q), want InvalidArgument on events with %q", err, fieldOf(st), tc.reason)
			}
			h.importCheckEmpty(t, target)
		})
	}

	// Nothing stayed: the good log goes into a name a bad one was refused.
	resp, err := importStream(t, audit, targets[0], log, 8192)
	testenv.NoError(t, err)
	h.importCheckCopy(t, st, source, targets[0], resp)
}

// importCheckEmpty checks that a ledger has no head and no events.
func (h *harness) importCheckEmpty(t *testing.T, ledger string) {
	t.Helper()
	if head := h.head(t, ledger); head != 0 {
		t.Errorf("%s holds events up to %d, want none", ledger, head)
	}
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	var heads int
	testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT count(*) FROM ledger_heads WHERE ledger = $1`, ledger).Scan(&heads))
	if heads != 0 {
		t.Errorf("%s has a head row", ledger)
	}
}

func TestImportEventsRefusesBadRequests(t *testing.T) {
	t.Parallel()
	h := start(t)
	st, audit := h.importStore(t), h.importClient(t)
	source := testenv.Name(t)
	h.setup(t, source)
	log := importExport(t, st, source)
	target := testenv.Name(t)

	over := make([]eventstore.Record, 8193)
	for i := range over {
		over[i] = log[i%len(log)]
	}
	cases := []struct {
		name   string
		call   func() error
		code   codes.Code
		field  string
		reason string
	}{
		{"malformed ledger", func() error { _, err := importStream(t, audit, "Bad Ledger", log, 8192); return err },
			codes.InvalidArgument, "ledger", ""},
		{"no message", func() error {
			stream, err := audit.ImportEvents(ctx(t))
			testenv.NoError(t, err)
			_, err = stream.CloseAndRecv()
			return err
		}, codes.InvalidArgument, "ledger", "first message"},
		{"no events", func() error {
			stream, err := audit.ImportEvents(ctx(t))
			testenv.NoError(t, err)
			_ = stream.Send(&ledgerv1.ImportEventsRequest{Ledger: target})
			_, err = stream.CloseAndRecv()
			return err
		},
			codes.InvalidArgument, "events", "empty"},
		{"over 8,192 events in a message", func() error { _, err := importStream(t, audit, target, over, 8193); return err },
			codes.InvalidArgument, "events", "8193 items, want at most 8192"},
		{"a later message names another ledger", func() error {
			stream, err := audit.ImportEvents(ctx(t))
			testenv.NoError(t, err)
			_ = stream.Send(&ledgerv1.ImportEventsRequest{Ledger: target, Events: []*ledgerv1.LogEvent{importLogEvent(&log[0])}})
			_ = stream.Send(&ledgerv1.ImportEventsRequest{Ledger: "other", Events: []*ledgerv1.LogEvent{importLogEvent(&log[1])}})
			_, err = stream.CloseAndRecv()
			return err
		}, codes.InvalidArgument, "ledger", "later message"},
		{"malformed hash", func() error {
			stream, err := audit.ImportEvents(ctx(t))
			testenv.NoError(t, err)
			e := importLogEvent(&log[0])
			e.Hash = "xyz"
			_ = stream.Send(&ledgerv1.ImportEventsRequest{Ledger: target, Events: []*ledgerv1.LogEvent{e}})
			_, err = stream.CloseAndRecv()
			return err
		}, codes.InvalidArgument, "events", "malformed event at position 1: hash"},
	}
	for _, tc := range cases {
		err := tc.call()
		s, _ := status.FromError(err)
		if s.Code() != tc.code || fieldOf(s) != tc.field || !strings.Contains(s.Message(), tc.reason) {
			t.Errorf("%s: %v (field %q), want %s on %q with %q", tc.name, err, fieldOf(s), tc.code, tc.field, tc.reason)
		}
	}
	h.importCheckEmpty(t, target)

	// 8,192 events in a message is the bound, not over it.
	resp, err := importStream(t, audit, target, log, 8192)
	testenv.NoError(t, err)
	if resp.GetEvents() != uint64(len(log)) {
		t.Errorf("%d events imported, want %d", resp.GetEvents(), len(log))
	}
}

// TestImportEventsResumesAnInterruptedImport: an import that stopped between
// chunks left a prefix of the log in its target; the same log sent again
// completes it, and another log is refused.
func TestImportEventsResumesAnInterruptedImport(t *testing.T) {
	t.Parallel()
	h := start(t)
	st, audit := h.importStore(t), h.importClient(t)
	source := testenv.Name(t)
	h.importWorkload(t, source, 24, 60)
	log := importExport(t, st, source)

	// What an interrupted import leaves: a prefix, sealed under the target.
	target := testenv.Name(t)
	k := len(log) / 2
	prefix := slices.Clone(log[:k])
	var prev eventstore.Hash
	for i := range prefix {
		prefix[i].Ledger = target
		prefix[i].Seal(prev)
		prev = prefix[i].Hash
	}
	importPrefix(t, st, target, prefix)

	// Another log (its first events differ) is refused; so is a shorter one.
	other := testenv.Name(t)
	h.importWorkload(t, other, 25, 5)
	otherLog := importExport(t, st, other)
	for name, recs := range map[string][]eventstore.Record{"another log": otherLog, "a shorter prefix": log[:k-1]} {
		_, err := importStream(t, audit, target, recs, 8192)
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("%s into the interrupted import: %v, want FailedPrecondition", name, err)
		}
	}
	if head, _, _ := st.Head(ctx(t), target); head != uint64(k) {
		t.Fatalf("head %d after refusals, want %d", head, k)
	}

	resp, err := importStream(t, audit, target, log, 8192)
	testenv.NoError(t, err)
	h.importCheckCopy(t, st, source, target, resp)

	// Sent once more, it is refused: the ledger holds the whole log.
	_, err = importStream(t, audit, target, log, 8192)
	if s, _ := status.FromError(err); s.Code() != codes.FailedPrecondition || !strings.Contains(s.Message(), "already holds this log") {
		t.Errorf("the same log again: %v, want FailedPrecondition: already holds this log", err)
	}
}

// importPrefix leaves in target what an import that stopped after its first
// chunk leaves: the ledger marked importing, holding prefix.
func importPrefix(t *testing.T, st *eventstore.Store, target string, prefix []eventstore.Record) {
	t.Helper()
	testenv.NoError(t, st.BeginImport(ctx(t), target, 0))
	testenv.NoError(t, st.AppendImport(ctx(t), target, 0, eventstore.Hash{}, prefix, false))
}

// importCtl runs ledgerctl against h.
// importCtlTimeout bounds one ledgerctl run: an import of 16,000 events
// takes seconds, but several times longer under the race detector on a busy
// machine (make test runs with -race); it took over 30 s there once.
const importCtlTimeout = 2 * time.Minute

func (h *harness) importCtl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), importCtlTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := ctl.Run(c, append([]string{"--addr", h.m.GRPCAddr()}, args...), func(k string) string {
		return map[string]string{"LEDGER_API_KEY": h.key}[k]
	}, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func importWriteFile(t *testing.T, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.jsonl")
	testenv.NoError(t, os.WriteFile(path, b, 0o600))
	return path
}

func TestLogImportCommand(t *testing.T) {
	t.Parallel()
	h := start(t)
	st := h.importStore(t)
	source := testenv.Name(t)
	h.importWorkload(t, source, 26, 100)
	// Enough accounts that the import takes several messages of 8,192.
	var many []*ledgerv1.Account
	for i := range 8192 {
		many = append(many, usdAccount(fmt.Sprintf("bulk:%d", i), nil, nil))
	}
	mustCreated(t, h.open(t, source, many...)...)
	log := importExport(t, st, source)
	file := importWriteFile(t, importJSONLines(log))

	target := testenv.Name(t)
	code, stdout, stderr := h.importCtl(t, "log", "import", "--in", file, "--ledger", target)
	if code != 0 {
		t.Fatalf("log import: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{fmt.Sprintf("checked %d events of ledger %s", len(log), source),
		fmt.Sprintf("sent %d of %d events", len(log), len(log)),
		fmt.Sprintf("imported %d events into %s: head %d", len(log), target, len(log))} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout %q lacks %q", stdout, want)
		}
	}
	resp := &ledgerv1.ImportEventsResponse{Ledger: target, Events: uint64(len(log)), Position: uint64(len(log))}
	got := h.importCheckChain(t, target)
	resp.Hash = fmt.Sprintf("%x", got[len(got)-1].Hash[:])
	h.importCheckCopy(t, st, source, target, resp)

	// Without --ledger, into the log's own ledger: it exists.
	code, _, stderr = h.importCtl(t, "log", "import", "--in", file)
	if code != 1 || !strings.Contains(stderr, "FailedPrecondition") || !strings.Contains(stderr, source) {
		t.Errorf("import into the log's own ledger: exit %d, stderr %q; want 1, FailedPrecondition naming %s", code, stderr, source)
	}
}

func TestLogImportCommandRefusesATamperedFile(t *testing.T) {
	t.Parallel()
	h := start(t)
	st := h.importStore(t)
	source := testenv.Name(t)
	h.importWorkload(t, source, 27, 80)
	log := importExport(t, st, source)
	k := importTamperAt(t, log)
	cases := append(importTamperCases(k), importTamper{name: "a malformed line", lines: func(lines [][]byte) [][]byte {
		lines[k] = []byte(`{"ledger":"x",`)
		return lines
	}, line: k + 1, reason: "parse record"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b []byte
			if tc.records != nil {
				b = importJSONLines(importDamaged(log, tc))
			} else {
				lines := bytes.Split(bytes.TrimSuffix(importJSONLines(log), []byte("\n")), []byte("\n"))
				b = bytes.Join(tc.lines(lines), []byte("\n"))
			}
			target := testenv.Name(t)
			code, stdout, stderr := h.importCtl(t, "log", "import", "--in", importWriteFile(t, b), "--ledger", target)
			want := fmt.Sprintf("line %d: %s", tc.line, tc.reason)
			if code != 1 || !strings.Contains(stderr, want) || strings.Contains(stdout, "sent") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q before anything is sent", code, stdout, stderr, want)
			}
			h.importCheckEmpty(t, target)
		})
	}
}

// TestImportEventsOverSeveralAppends imports a log longer than one append
// (eventstore.AppendMax records): the chunks follow each other, and the
// writer loads the whole of it.
func TestImportEventsOverSeveralAppends(t *testing.T) {
	t.Parallel()
	h := start(t)
	audit := h.importClient(t)
	source, target := testenv.Name(t), testenv.Name(t)
	n := eventstore.AppendMax + 4000
	at := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	log := make([]eventstore.Record, 0, n)
	add := func(id string, e domain.Event) {
		log = append(log, eventstore.Record{Ledger: source, Position: uint64(len(log) + 1), Type: e.EventType(),
			SchemaVersion: domain.SchemaVersion, RecordedAt: at.Add(time.Duration(len(log)) * time.Microsecond), CommandID: id,
			Payload: domain.AppendEvent(nil, e)})
	}
	add("USD", domain.AssetDefined{Code: "USD", Scale: 2})
	add("alice", domain.AccountOpened{ID: "alice", Asset: "USD", Normal: domain.SideCredit})
	add("bob", domain.AccountOpened{ID: "bob", Asset: "USD", Normal: domain.SideCredit})
	cent := domain.Amount{Units: domain.UnitsFromInt64(1), Scale: 2}
	for i := len(log); i < n; i++ {
		id := fmt.Sprintf("t%d", i)
		add(id, domain.TransferCommitted{ID: id, EffectiveAt: at, Postings: []domain.Posting{{Debit: "alice", Credit: "bob", Asset: "USD", Amount: cent}}})
	}
	importResealFrom(log, 0)

	resp, err := importStream(t, audit, target, log, 8192)
	testenv.NoError(t, err)
	got := h.importCheckChain(t, target)
	last := got[len(got)-1].Hash
	if len(got) != n || resp.GetPosition() != uint64(n) || resp.GetHash() != fmt.Sprintf("%x", last[:]) {
		t.Fatalf("%d events in the table, response %v; want %d", len(got), resp, n)
	}
	bal, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: target, Accounts: []string{"bob"},
		Consistency: ledgerv1.Consistency_CONSISTENCY_STRONG})
	testenv.NoError(t, err)
	want := fmt.Sprintf("%d.%02d", (n-3)/100, (n-3)%100)
	if b := bal.GetBalances(); len(b) != 1 || b[0].GetBalance() != want || bal.GetPosition() != uint64(n) {
		t.Errorf("bob from the writer: %v, want balance %s at %d", bal, want, n)
	}
}

// TestImportEventsConcurrentlyIntoOneLedger: imports racing into one new
// ledger: one wins, the others are refused, and the ledger holds the log once.
func TestImportEventsConcurrentlyIntoOneLedger(t *testing.T) {
	t.Parallel()
	h := start(t)
	st, audit := h.importStore(t), h.importClient(t)
	source, target := testenv.Name(t), testenv.Name(t)
	h.importWorkload(t, source, 28, 40)
	log := importExport(t, st, source)
	const racers = 4
	errs := make(chan error, racers)
	for range racers {
		go func() {
			_, err := importStreamCtx(ctx(t), audit, target, log, 16)
			errs <- err
		}()
	}
	won := 0
	for range racers {
		switch err := <-errs; status.Code(err) {
		case codes.OK:
			won++
		case codes.Aborted, codes.FailedPrecondition:
		default:
			t.Errorf("a racing import: %v, want OK, Aborted or FailedPrecondition", err)
		}
	}
	if won != 1 {
		t.Errorf("%d imports won, want 1", won)
	}
	if got := h.importCheckChain(t, target); len(got) != len(log) {
		t.Errorf("%s holds %d events, want %d", target, len(got), len(log))
	}
}

// waitProjections waits until every projection of ledger has reached pos: a
// large import takes the projectors longer than one query's min_position
// wait (10 s), more so under the race detector.
func (h *harness) waitProjections(t *testing.T, ledger string, pos uint64) {
	t.Helper()
	testenv.Eventually(t, 3*time.Minute, func() error {
		st, err := h.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{Ledger: ledger})
		if err != nil {
			return err
		}
		for _, p := range st.GetProjections() {
			if p.GetPosition() < pos {
				return fmt.Errorf("%s at %d of %d", p.GetName(), p.GetPosition(), pos)
			}
		}
		return nil
	})
}

// importNDJSON is recs as the body of a REST import: one
// ImportEventsRequest a line, perLine events each, the first naming target.
func importNDJSON(t *testing.T, target string, recs []eventstore.Record, perLine int) []string {
	t.Helper()
	var lines []string
	msg := &ledgerv1.ImportEventsRequest{Ledger: target}
	for i := range recs {
		msg.Events = append(msg.Events, importLogEvent(&recs[i]))
		if len(msg.Events) == perLine || i == len(recs)-1 {
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
			testenv.NoError(t, err)
			lines = append(lines, string(b))
			msg = &ledgerv1.ImportEventsRequest{}
		}
	}
	return lines
}

// TestImportEventsOverRESTTakesEveryLine: POST /v1/events:import takes one
// ImportEventsRequest a line, and imports the events of every line, not
// only the first's.
func TestImportEventsOverRESTTakesEveryLine(t *testing.T) {
	t.Parallel()
	h := start(t)
	st := h.importStore(t)
	source := testenv.Name(t)
	h.importWorkload(t, source, 21, 30)
	log := importExport(t, st, source)
	sourceHead, _, err := st.Head(ctx(t), source)
	testenv.NoError(t, err)

	target := testenv.Name(t)
	lines := importNDJSON(t, target, log, 5)
	var resp struct {
		Events   string `json:"events"`
		Position string `json:"position"`
	}
	h.rest(t, "POST", "/v1/events:import", strings.Join(lines, "\n")+"\n", http.StatusOK, &resp)
	head, _, err := st.Head(ctx(t), target)
	testenv.NoError(t, err)
	if head != sourceHead || resp.Events != strconv.Itoa(len(log)) || resp.Position != strconv.FormatUint(sourceHead, 10) {
		t.Errorf("REST import of %d events in %d lines: target head %d, answered %+v; want head %d, %d events",
			len(log), len(lines), head, resp, sourceHead, len(log))
	}
}

// TestImportEventsOverRESTRefusesABadLine: a line that does not decode, in
// the middle of a REST import, fails the import with a 400 naming its
// field; the lines before it are not imported as if they were the log.
func TestImportEventsOverRESTRefusesABadLine(t *testing.T) {
	t.Parallel()
	h := start(t)
	st := h.importStore(t)
	source := testenv.Name(t)
	h.importWorkload(t, source, 22, 20)
	log := importExport(t, st, source)

	target := testenv.Name(t)
	lines := importNDJSON(t, target, log, 3)
	if len(lines) < 3 {
		t.Fatalf("a log of %d lines, want 3 or more", len(lines))
	}
	lines[len(lines)/2] = `{"events": [{"position": "not a number"}]}`
	raw := h.rest(t, "POST", "/v1/events:import", strings.Join(lines, "\n")+"\n", http.StatusBadRequest, nil)
	var e restError
	testenv.NoError(t, json.Unmarshal(raw, &e))
	if e.Code != codes.InvalidArgument || len(e.Details) != 1 || len(e.Details[0].FieldViolations) != 1 ||
		e.Details[0].FieldViolations[0].Field != "events[0].position" {
		t.Errorf("bad line %d of %d: %s, want InvalidArgument naming events[0].position", len(lines)/2+1, len(lines), raw)
	}
	if head, _, err := st.Head(ctx(t), target); err != nil || head != 0 {
		t.Errorf("target head %d (%v) after a refused import, want 0", head, err)
	}
}
