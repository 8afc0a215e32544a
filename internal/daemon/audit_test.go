package daemon_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/servicelog"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/ctl"
	"github.com/ledgerd/ledger/internal/testenv"
)

// End-to-end tests of AuditService.ReadEvents and of ledgerctl's audit
// verify, audit replay and log export on a real ledgerd.

func (h *harness) eventsClient(t *testing.T) ledgerv1.AuditServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return ledgerv1.NewAuditServiceClient(conn)
}

// readEvents reads a whole ReadEvents stream: its messages.
func readEvents(t *testing.T, c ledgerv1.AuditServiceClient, req *ledgerv1.ReadEventsRequest) ([]*ledgerv1.ReadEventsResponse, error) {
	t.Helper()
	stream, err := c.ReadEvents(ctx(t), req)
	testenv.NoError(t, err)
	var out []*ledgerv1.ReadEventsResponse
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, resp)
	}
}

// readsAsStored reads ledger's log up to head in one stream and compares
// it with the events table.
func readsAsStored(c ledgerv1.AuditServiceClient, ledger string, head uint64, stored map[uint64][3]string) error {
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := c.ReadEvents(cctx, &ledgerv1.ReadEventsRequest{Ledger: ledger})
	if err != nil {
		return err
	}
	next := uint64(1)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		for _, e := range resp.GetEvents() {
			s := stored[next]
			if e.GetPosition() != next || e.GetPayload() != s[0] || e.GetPrevHash() != s[1] || e.GetHash() != s[2] {
				return fmt.Errorf("event %d read as %d: payload %q prev %s hash %s, stored %q %s %s", next, e.GetPosition(),
					e.GetPayload(), e.GetPrevHash(), e.GetHash(), s[0], s[1], s[2])
			}
			next++
		}
	}
	if next != head+1 {
		return fmt.Errorf("read up to %d, want %d", next-1, head)
	}
	return nil
}

// storedEvents reads the events table as it is, by position.
func (h *harness) storedEvents(t *testing.T, ledger string) map[uint64][3]string {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx(t), `SELECT position, payload::text, prev_hash, hash FROM events WHERE ledger = $1`, ledger)
	testenv.NoError(t, err)
	out := map[uint64][3]string{}
	var (
		pos        int64
		payload    string
		prev, hash []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&pos, &payload, &prev, &hash}, func() error {
		out[uint64(pos)] = [3]string{payload, hex.EncodeToString(prev), hex.EncodeToString(hash)}
		return nil
	})
	testenv.NoError(t, err)
	return out
}

func TestReadEvents(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	// One request of 1,100 transfers: more events than one message carries.
	var ts []*ledgerv1.Transfer
	for i := range 1100 {
		ts = append(ts, transfer(fmt.Sprintf("t%d", i), "alice", "bob", "0.01", "USD"))
	}
	mustCreated(t, h.transfers(t, ledger, ts...)...)
	head := h.head(t, ledger)
	c := h.eventsClient(t)

	msgs, err := readEvents(t, c, &ledgerv1.ReadEventsRequest{Ledger: ledger})
	testenv.NoError(t, err)
	stored := h.storedEvents(t, ledger)
	next := uint64(1)
	for _, m := range msgs {
		if n := len(m.GetEvents()); n == 0 || n > 1000 {
			t.Errorf("a message of %d events, want 1..1000", n)
		}
		for _, e := range m.GetEvents() {
			if e.GetPosition() != next || e.GetLedger() != ledger {
				t.Fatalf("event %s@%d, want %s@%d", e.GetLedger(), e.GetPosition(), ledger, next)
			}
			s := stored[next]
			if e.GetPayload() != s[0] || e.GetPrevHash() != s[1] || e.GetHash() != s[2] {
				t.Errorf("event %d: payload %q prev %s hash %s, stored %q %s %s", next, e.GetPayload(), e.GetPrevHash(),
					e.GetHash(), s[0], s[1], s[2])
			}
			r, err := servicelog.RecordOf(e)
			testenv.NoError(t, err)
			if !r.VerifyHash() {
				t.Errorf("event %d: its hash does not verify", next)
			}
			next++
		}
	}
	if next != head+1 || len(msgs) != 2 {
		t.Errorf("read up to %d in %d messages, want %d in 2", next-1, len(msgs), head)
	}

	// Streams side by side, rounds after rounds: a message's buffer goes
	// back to a pool once written, and the next messages (of any stream)
	// reuse it; each stream still reads the log as stored.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for range 5 {
				if err := readsAsStored(c, ledger, head, stored); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	for _, c2 := range []struct {
		from, to uint64
		want     []uint64
	}{
		{5, 7, []uint64{5, 6, 7}},
		{head, 0, []uint64{head}},
		{head - 1, head + 10, []uint64{head - 1, head}},
		{head + 1, 0, nil},
		{0, 2, []uint64{1, 2}},
	} {
		msgs, err := readEvents(t, c, &ledgerv1.ReadEventsRequest{Ledger: ledger, FromPosition: c2.from, ToPosition: c2.to})
		testenv.NoError(t, err)
		var got []uint64
		for _, m := range msgs {
			for _, e := range m.GetEvents() {
				got = append(got, e.GetPosition())
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c2.want) {
			t.Errorf("from %d to %d: %v, want %v", c2.from, c2.to, got, c2.want)
		}
	}

	for _, bad := range []struct {
		req   *ledgerv1.ReadEventsRequest
		field string
	}{
		{&ledgerv1.ReadEventsRequest{Ledger: "Bad Ledger"}, "ledger"},
		{&ledgerv1.ReadEventsRequest{Ledger: "no-such-ledger"}, "ledger"},
		{&ledgerv1.ReadEventsRequest{Ledger: ledger, FromPosition: 5, ToPosition: 4}, "from_position"},
	} {
		_, err := readEvents(t, c, bad.req)
		st, _ := status.FromError(err)
		if st.Code() != codes.InvalidArgument || fieldOf(st) != bad.field {
			t.Errorf("%v: %v (field %q), want InvalidArgument on %s", bad.req, err, fieldOf(st), bad.field)
		}
	}
}

// Messages stay under gRPC's default 4 MiB receive limit whatever the
// events' size: a client with default options reads any ledger.
func TestReadEventsBoundsMessageBytes(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	meta := map[string]string{}
	for i := range 30 {
		meta[fmt.Sprintf("key-%02d", i)] = strings.Repeat("v", 100)
	}
	var ts []*ledgerv1.Transfer
	for i := range 500 {
		tr := &ledgerv1.Transfer{Id: fmt.Sprintf("big-%d", i), Reference: strings.Repeat("r", 256), Metadata: meta}
		for j := range 64 {
			from, to := "alice", "bob"
			if j%2 == 1 {
				from, to = to, from
			}
			tr.Postings = append(tr.Postings, posting(from, to, "0.01", "USD"))
		}
		ts = append(ts, tr)
	}
	mustCreated(t, h.transfers(t, ledger, ts...)...)
	msgs, err := readEvents(t, h.eventsClient(t), &ledgerv1.ReadEventsRequest{Ledger: ledger})
	testenv.NoError(t, err)
	events := 0
	for _, m := range msgs {
		if size := proto.Size(m); size > 4<<20 {
			t.Errorf("a message of %d events is %d bytes, over 4 MiB", len(m.GetEvents()), size)
		}
		events += len(m.GetEvents())
	}
	if uint64(events) != h.head(t, ledger) || len(msgs) < 2 {
		t.Errorf("%d events in %d messages, want %d in several", events, len(msgs), h.head(t, ledger))
	}
}

// runCtl runs ledgerctl against h's ledgerd, on ledger.
func (h *harness) runCtl(t *testing.T, ledger string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	env := map[string]string{"LEDGER_ADDR": h.m.GRPCAddr(), "LEDGER_LEDGER": ledger, "LEDGER_API_KEY": h.key}
	code = ctl.Run(c, args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func (h *harness) runCtlOK(t *testing.T, ledger string, args ...string) string {
	t.Helper()
	code, out, errOut := h.runCtl(t, ledger, args...)
	if code != 0 {
		t.Fatalf("ledgerctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// tamperEvents runs sql on the events table with its append-only triggers off,
// then on again, in one transaction.
func (h *harness) tamperEvents(t *testing.T, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	err = pgx.BeginFunc(ctx(t), conn, func(tx pgx.Tx) error {
		for _, q := range []struct {
			sql  string
			args []any
		}{{`ALTER TABLE events DISABLE TRIGGER USER`, nil}, {sql, args}, {`ALTER TABLE events ENABLE TRIGGER USER`, nil}} {
			if _, err := tx.Exec(ctx(t), q.sql, q.args...); err != nil {
				return err
			}
		}
		return nil
	})
	testenv.NoError(t, err)
}

func TestLedgerctlAudit(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	w := newTBWorkload(t, h, ledger, 21)
	for range 60 {
		w.step(t)
	}
	head := h.head(t, ledger)
	dir := t.TempDir()

	// verify: clean, in a table and in JSON.
	out := h.runCtlOK(t, ledger, "audit", "verify")
	t.Logf("audit verify:\n%s", out)
	if !strings.Contains(out, "clean") || !strings.Contains(out, fmt.Sprintf("positions 1..%d", head)) {
		t.Errorf("audit verify:\n%s", out)
	}
	var rep audit.Report
	testenv.NoError(t, json.Unmarshal([]byte(h.runCtlOK(t, ledger, "audit", "verify", "-o", "json")), &rep))
	if !rep.Clean() || rep.Events != head || !rep.Replayed || rep.StatementLines == 0 {
		t.Errorf("audit verify -o json: %+v", rep)
	}
	out = h.runCtlOK(t, ledger, "audit", "verify", "--from", "3", "--to", strconv.FormatUint(head-1, 10))
	if !strings.Contains(out, "clean") || !strings.Contains(out, "replay and projections skipped") {
		t.Errorf("audit verify --from 3:\n%s", out)
	}

	// Usage errors: exit 2.
	for _, args := range [][]string{
		{"audit", "verify", "extra"},
		{"audit", "verify", "--from", "5", "--to", "4"},
		{"audit", "verify", "--to", strconv.FormatUint(head+1, 10)},
		{"audit", "verify", "-o", "xml"},
		{"audit", "replay"},
		{"audit", "replay", "--at", "0"},
		{"audit", "replay", "--at", "yesterday"},
		{"audit", "replay", "--at", strconv.FormatUint(head+1, 10)},
		{"log", "export", "--from", "9", "--to", "8"},
	} {
		if code, out, errOut := h.runCtl(t, ledger, args...); code != 2 {
			t.Errorf("ledgerctl %s: exit %d, want 2\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}

	// replay at a position equals GetBalances as of it.
	at := head / 2
	var snap audit.Snapshot
	testenv.NoError(t, json.Unmarshal([]byte(h.runCtlOK(t, ledger, "audit", "replay", "--at", strconv.FormatUint(at, 10), "-o", "json")), &snap))
	if snap.Position != at || len(snap.Balances) == 0 || len(snap.TrialBalance) != 2 {
		t.Fatalf("replay at %d: %+v", at, snap)
	}
	ids := make([]string, len(snap.Balances))
	for i, b := range snap.Balances {
		ids[i] = b.Account
	}
	resp, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: ids, AsOfPosition: at})
	testenv.NoError(t, err)
	for i, b := range resp.GetBalances() {
		r := snap.Balances[i]
		if b.GetAccount() != r.Account || summary(b) != fmt.Sprintf("%s %s | %s/%s | %s/%s", r.Balance, r.Available,
			r.DebitsPosted, r.CreditsPosted, r.DebitsPending, r.CreditsPending) {
			t.Errorf("replay at %d: %s %+v, GetBalances %s %s", at, r.Account, r, b.GetAccount(), summary(b))
		}
	}
	// At a time, in a table.
	var recorded time.Time
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT recorded_at FROM events WHERE ledger = $1 AND position = $2`, ledger,
		int64(head)).Scan(&recorded))
	conn.Close(context.Background())
	out = h.runCtlOK(t, ledger, "audit", "replay", "--at", recorded.Format(time.RFC3339Nano))
	if !strings.Contains(out, fmt.Sprintf("position %d,", head)) || !strings.Contains(out, "alice") || !strings.Contains(out, "USD") {
		t.Errorf("audit replay --at %s:\n%s", recorded.Format(time.RFC3339Nano), out)
	}

	// export: every line parses, every hash verifies, every link holds.
	full := filepath.Join(dir, "full.jsonl")
	out = h.runCtlOK(t, ledger, "log", "export", "--out", full)
	if !strings.Contains(out, fmt.Sprintf("exported %d events", head)) {
		t.Errorf("log export: %s", out)
	}
	data, err := os.ReadFile(full)
	testenv.NoError(t, err)
	var prev eventstore.Hash
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	trailer, err := audit.ParseTrailer(lines[len(lines)-1])
	testenv.NoError(t, err)
	lines = lines[:len(lines)-1]
	if trailer.Events != head || trailer.First != 1 || trailer.Last != head || trailer.Ledger != ledger {
		t.Errorf("trailer %+v, want %d events 1..%d of %s", trailer, head, head, ledger)
	}
	for i, l := range lines {
		r, err := eventstore.ParseRecordJSON(l)
		testenv.NoError(t, err)
		if r.Position != uint64(i+1) || !r.VerifyHash() || r.PrevHash != prev {
			t.Fatalf("line %d: position %d, verifies %v, links %v", i+1, r.Position, r.VerifyHash(), r.PrevHash == prev)
		}
		prev = r.Hash
	}
	if uint64(len(lines)) != head {
		t.Errorf("%d lines, want %d", len(lines), head)
	}
	// Resumed: the same bytes.
	part := filepath.Join(dir, "part.jsonl")
	h.runCtlOK(t, ledger, "log", "export", "--to", "10", "--out", part)
	if code, _, errOut := h.runCtl(t, ledger, "log", "export", "--from", "12", "--out", part); code != 2 || !strings.Contains(errOut, "--from 11") {
		t.Errorf("resume at the wrong position: exit %d, %s", code, errOut)
	}
	// An interrupted export leaves a line cut short: resuming drops it.
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_APPEND, 0)
	testenv.NoError(t, err)
	_, err = f.Write(lines[10][:30])
	testenv.NoError(t, errors.Join(err, f.Close()))
	h.runCtlOK(t, ledger, "log", "export", "--from", "11", "--out", part)
	resumed, err := os.ReadFile(part)
	testenv.NoError(t, err)
	if !bytes.Equal(resumed, data) {
		t.Errorf("resumed export differs from the full one (%d bytes, want %d)", len(resumed), len(data))
	}
	// To standard output.
	out = h.runCtlOK(t, ledger, "log", "export", "--from", "2", "--to", "4")
	if want := string(bytes.Join(lines[1:4], []byte("\n"))) + "\n"; !strings.HasPrefix(out, want) ||
		!audit.IsTrailer([]byte(out[len(want):])) || !strings.Contains(out[len(want):], `"events":3,"first":2,"last":4`) {
		t.Errorf("export 2..4 to stdout:\n%s\nwant:\n%s", out, want)
	}
	// The export verifies and replays alone.
	out = h.runCtlOK(t, ledger, "audit", "verify", "--in", full)
	if !strings.Contains(out, "clean") {
		t.Errorf("audit verify --in:\n%s", out)
	}
	var fromFile audit.Snapshot
	testenv.NoError(t, json.Unmarshal([]byte(h.runCtlOK(t, ledger, "audit", "replay", "--in", full, "--at",
		strconv.FormatUint(at, 10), "-o", "json")), &fromFile))
	if fmt.Sprint(fromFile) != fmt.Sprint(snap) {
		t.Errorf("replay of the export at %d:\n%+v\nwant\n%+v", at, fromFile, snap)
	}

	// A deleted event: exit 1, the divergence printed.
	gone := head / 3
	h.tamperEvents(t, `DELETE FROM events WHERE ledger = $1 AND position = $2`, ledger, int64(gone))
	code, out, errOut := h.runCtl(t, ledger, "audit", "verify")
	t.Logf("audit verify of a log with a hole:\n%s%s", out, errOut)
	if code != 1 || !strings.Contains(out, "DIVERGENCE") || reportValue(out, "kind") != "gap" ||
		reportValue(out, "position") != strconv.FormatUint(gone, 10) || !strings.Contains(errOut, "divergence") {
		t.Errorf("audit verify of a log with a hole at %d: exit %d\nstdout:\n%s\nstderr:\n%s", gone, code, out, errOut)
	}
	code, out, _ = h.runCtl(t, ledger, "audit", "verify", "-o", "json")
	rep = audit.Report{}
	testenv.NoError(t, json.Unmarshal([]byte(out), &rep))
	if code != 1 || rep.Divergence == nil || rep.Divergence.Kind != audit.KindGap || rep.Divergence.Position != gone {
		t.Errorf("audit verify -o json of a log with a hole at %d: exit %d, %+v", gone, code, rep.Divergence)
	}
	// The earlier export still verifies: it is the auditor's evidence.
	h.runCtlOK(t, ledger, "audit", "verify", "--in", full)
}

// reportValue is the value of a key in audit verify's table.
func reportValue(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key {
			return strings.Join(f[1:], " ")
		}
	}
	return ""
}
