package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/grpcapi"
	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/anchor/anchorfile"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/ctl"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/workflows"
)

// hasAnchorAt reports whether as holds ledger's anchor at pos.
func hasAnchorAt(as []anchor.Anchor, ledger string, pos uint64) bool {
	return slices.ContainsFunc(as, func(a anchor.Anchor) bool { return a.Ledger == ledger && a.Position == pos })
}

// TestAnchors: ledgerd signs the head with the key ledgerctl made, into the
// file sink and the NATS bucket (listed through IntegrityService);
// audit verify --anchors agrees with a sound log, and names the signed
// position a deleted tail lost; an export carries the anchors in its
// trailer, and one cut short is refused by import and by verify.
func TestAnchors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "anchor-1")
	var out, errOut bytes.Buffer
	if code := ctl.Run(context.Background(), []string{"anchors", "keygen", "--out", prefix}, func(string) string { return "" },
		&out, &errOut); code != 0 {
		t.Fatalf("anchors keygen: exit %d: %s", code, errOut.String())
	}
	if st, err := os.Stat(prefix + ".key"); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the private key file: %v, %v", st, err)
	}
	sinkDir := filepath.Join(dir, "anchors")
	h := startWith(t, func(m *daemon.Main) {
		c := &m.Config
		c.AnchorKeyFile, c.AnchorDir, c.AnchorEvery = prefix+".key", sinkDir, 20*time.Millisecond
	})
	ledger := testenv.Name(t)
	h.importWorkload(t, ledger, 41, 30)
	head := h.head(t, ledger)

	// Signed on its own at the interval: in the file and the bucket.
	listed := filepath.Join(dir, "listed.jsonl")
	for deadline := time.Now().Add(time.Minute); ; {
		list := h.runCtlOK(t, ledger, "anchors", "list")
		if strings.Contains(list, fmt.Sprintf(`"position":%d,`, head)) {
			testenv.NoError(t, os.WriteFile(listed, []byte(list), 0o644))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no anchor of the head %d listed after a minute:\n%s", head, list)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The file is written after the bucket.
	testenv.Eventually(t, 10*time.Second, func() error {
		inFiles, err := anchorfile.Load(sinkDir)
		testenv.NoError(t, err)
		if !hasAnchorAt(inFiles, ledger, head) {
			return fmt.Errorf("the file sink lacks the anchor of %d: %v", head, inFiles)
		}
		return nil
	})
	// The trigger a period close calls.
	a, err := h.m.Anchor(ctx(t), ledger)
	testenv.NoError(t, err)
	ring, err := anchor.LoadKeyring(prefix + ".pub")
	testenv.NoError(t, err)
	if a.Position != head || ring.Verify(&a) != nil {
		t.Fatalf("Anchor: %+v, %v", a, ring.Verify(&a))
	}

	// Bad requests name their field; a page is at most 1,000.
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	defer conn.Close()
	integrity := ledgerv1.NewIntegrityServiceClient(conn)
	_, err = integrity.ListAnchors(ctx(t), &ledgerv1.ListAnchorsRequest{Ledger: ledger, Limit: grpcapi.ListAnchorsMax})
	testenv.NoError(t, err)
	for field, req := range map[string]*ledgerv1.ListAnchorsRequest{
		"limit":         {Ledger: ledger, Limit: grpcapi.ListAnchorsMax + 1},
		"ledger":        {Ledger: "Not A Ledger"},
		"from_position": {Ledger: ledger, FromPosition: 5, ToPosition: 4},
	} {
		_, err := integrity.ListAnchors(ctx(t), req)
		if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), field+":") {
			t.Errorf("ListAnchors %v: %v, want InvalidArgument on %s", req, err, field)
		}
	}

	// Over REST, for the auditor role.
	req, err := http.NewRequestWithContext(ctx(t), http.MethodGet, "http://"+h.m.HTTPAddr()+"/v1/ledgers/"+ledger+"/anchors?from_position="+
		fmt.Sprint(head), nil)
	testenv.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.key)
	resp, err := http.DefaultClient.Do(req)
	testenv.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	testenv.NoError(t, errors.Join(err, resp.Body.Close()))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), fmt.Sprintf(`"position":"%d"`, head)) {
		t.Fatalf("GET anchors: %d %s", resp.StatusCode, body)
	}

	out1 := h.runCtlOK(t, ledger, "audit", "verify", "--anchors", listed, "--anchor-pubkey", prefix+".pub")
	if !strings.Contains(out1, "clean") || !strings.Contains(out1, "signed anchors") {
		t.Fatalf("audit verify --anchors:\n%s", out1)
	}

	// The export's trailer carries the anchors; cut short, it is refused.
	full := filepath.Join(dir, "full.jsonl")
	h.runCtlOK(t, ledger, "log", "export", "--out", full)
	data, err := os.ReadFile(full)
	testenv.NoError(t, err)
	lines := bytes.SplitAfter(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	tr, err := audit.ParseTrailer(lines[len(lines)-1])
	testenv.NoError(t, err)
	if tr.Events != head || !hasAnchorAt(tr.Anchors, ledger, head) {
		t.Fatalf("trailer: %d events, anchors %v; want %d and the head's anchor", tr.Events, tr.Anchors, head)
	}
	// The trailer's anchors verify the file, with the public key alone.
	if out := h.runCtlOK(t, ledger, "audit", "verify", "--in", full, "--anchor-pubkey", prefix+".pub"); !strings.Contains(out, "signed anchors") {
		t.Errorf("verify --in with the trailer's anchors:\n%s", out)
	}
	cut := filepath.Join(dir, "cut.jsonl")
	testenv.NoError(t, os.WriteFile(cut, bytes.Join(lines[:len(lines)-4], nil), 0o600))
	code, stdout, stderr := h.runCtl(t, ledger, "log", "import", "--in", cut, "--ledger", testenv.Name(t)+"-copy")
	if code != 1 || !strings.Contains(stderr, "trailer is missing") || strings.Contains(stdout, "sent") {
		t.Errorf("import of a cut export: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr = h.runCtl(t, ledger, "audit", "verify", "--in", cut); code != 1 || !strings.Contains(stderr, "trailer is missing") {
		t.Errorf("verify of a cut export: exit %d\n%s%s", code, stdout, stderr)
	}

	// The tail deleted and the head row moved back: the chain is sound, the
	// anchors are not.
	h.tamperEvents(t, `DELETE FROM events WHERE ledger = $1 AND position > $2`, ledger, int64(head-2))
	pg, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	_, err = pg.Exec(ctx(t), `UPDATE ledger_heads SET position = $2, hash = (SELECT hash FROM events WHERE ledger = $1 AND position = $2)
		WHERE ledger = $1`, ledger, int64(head-2))
	testenv.NoError(t, errors.Join(err, pg.Close(context.Background())))
	code, stdout, _ = h.runCtl(t, ledger, "audit", "verify", "--anchors", listed, "--anchor-pubkey", prefix+".pub")
	if code != 1 || reportValue(stdout, "kind") != "anchor" || reportValue(stdout, "position") != fmt.Sprint(head) {
		t.Errorf("verify of a deleted tail: exit %d, want 1, an anchor divergence at %d:\n%s", code, head, stdout)
	}
}

// TestPeriodCloseIsSigned: a period close is followed by an anchor of the
// head at or after the PeriodClosed event, signed with ledgerd's key, with
// no interval due (the interval is an hour): the close triggers it.
func TestPeriodCloseIsSigned(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "anchor")
	var out, errOut bytes.Buffer
	if code := ctl.Run(context.Background(), []string{"anchors", "keygen", "--out", prefix}, func(string) string { return "" },
		&out, &errOut); code != 0 {
		t.Fatalf("anchors keygen: exit %d: %s", code, errOut.String())
	}
	sinkDir := filepath.Join(dir, "anchors")
	h := startWith(t, func(m *daemon.Main) {
		m.Config.AnchorKeyFile, m.Config.AnchorDir, m.Config.AnchorEvery = prefix+".key", sinkDir, time.Hour
	})
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	res, err := h.closePeriod(t, ledger, time.Now().Add(-time.Minute))
	testenv.NoError(t, err)
	mustCreated(t, res)
	ring, err := anchor.LoadKeyring(prefix + ".pub")
	testenv.NoError(t, err)
	testenv.Eventually(t, 30*time.Second, func() error {
		as, err := anchorfile.Load(sinkDir)
		if err != nil {
			return err
		}
		for i := range as {
			if as[i].Ledger == ledger && as[i].Position >= res.GetPosition() && ring.Verify(&as[i]) == nil {
				return nil
			}
		}
		return fmt.Errorf("no signed anchor of %s at or after the close at %d: %v", ledger, res.GetPosition(), as)
	})
}

// TestListAnchorsWithoutAKey: a ledgerd that signs nothing answers
// ListAnchors FailedPrecondition (its configuration, which no retry
// outlasts), not Unavailable.
func TestListAnchorsWithoutAKey(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	defer conn.Close()
	_, err = ledgerv1.NewIntegrityServiceClient(conn).ListAnchors(ctx(t), &ledgerv1.ListAnchorsRequest{Ledger: ledger})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "anchor key") {
		t.Errorf("ListAnchors without an anchor key: %v, want FailedPrecondition naming the anchor key", err)
	}
}

// listedAnchorAt is the hash (hex) of the bucket's anchor of ledger at
// pos, as ledgerctl anchors list prints it; "" when there is none.
func listedAnchorAt(t *testing.T, h *harness, ledger string, pos uint64) string {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(h.runCtlOK(t, ledger, "anchors", "list")), "\n") {
		if l == "" {
			continue
		}
		a, err := anchor.Parse([]byte(l))
		testenv.NoError(t, err)
		if a.Position == pos {
			return fmt.Sprintf("%x", a.Hash[:])
		}
	}
	return ""
}

// TestAnchorsAreNeverReplaced: whoever writes PostgreSQL rewrites an
// anchored transfer (10.00 to 1,000,000.00), re-seals the event after it
// and moves the head row back to the rewritten one and on again. ledgerd
// signs neither (the log no longer holds what it signed), the bucket keeps
// the genuine anchors (it refused to replace them), and a verify of an
// export against them finds the rewrite. ledgerd used to sign what the
// heads table said and replace the bucket's anchors with it, and the
// forged export verified clean.
func TestAnchorsAreNeverReplaced(t *testing.T) {
	h, dir, prefix := anchoringLedgerd(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	waitAnchor := func(p uint64) string {
		var got string
		testenv.Eventually(t, 30*time.Second, func() error {
			if got = listedAnchorAt(t, h, ledger, p); got == "" {
				return fmt.Errorf("no anchor at %d yet", p)
			}
			return nil
		})
		return got
	}
	pos := h.transferOK(t, ledger, transfer("t1", "alice", "bob", "10.00", "USD"))
	genuine := waitAnchor(pos)
	pos2 := h.transferOK(t, ledger, transfer("t2", "alice", "bob", "1.00", "USD"))
	genuine2 := waitAnchor(pos2)

	r := rewriteTransfer(t, h, ledger, pos)
	recs, err := eventstore.New(h.pool(t)).Read(ctx(t), ledger, pos2, 1)
	testenv.NoError(t, err)
	r2 := recs[0]
	r2.Seal(r.Hash)
	h.tamperEvents(t, `UPDATE events SET prev_hash = $3, hash = $4 WHERE ledger = $1 AND position = $2`,
		ledger, int64(pos2), r.Hash[:], r2.Hash[:])
	pg, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer pg.Close(context.Background())
	setHead := func(p uint64, hash eventstore.Hash) {
		_, err := pg.Exec(ctx(t), `UPDATE ledger_heads SET position = $2, hash = $3 WHERE ledger = $1`, ledger, int64(p), hash[:])
		testenv.NoError(t, err)
	}
	setHead(pos, r.Hash)
	time.Sleep(200 * time.Millisecond) // ten anchoring intervals
	setHead(pos2, r2.Hash)
	if _, err := h.m.Anchor(ctx(t), ledger); !errors.Is(err, workflows.ErrNotExtended) {
		t.Errorf("a period close's anchor of the re-sealed head: %v, want ErrNotExtended", err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := listedAnchorAt(t, h, ledger, pos); got != genuine {
		t.Errorf("the bucket's anchor at %d: %s, want the genuine %s", pos, got, genuine)
	}
	if got := listedAnchorAt(t, h, ledger, pos2); got != genuine2 {
		t.Errorf("the bucket's anchor at %d: %s, want the genuine %s", pos2, got, genuine2)
	}
	full := filepath.Join(dir, "full.jsonl")
	h.runCtlOK(t, ledger, "log", "export", "--out", full)
	if code, stdout, stderr := h.runCtl(t, ledger, "audit", "verify", "--in", full, "--anchor-pubkey", prefix+".pub"); code == 0 {
		t.Errorf("the rewritten export verifies clean against the anchors ledgerd published:\n%s%s", stdout, stderr)
	}
}

// TestAnchorsRememberedAcrossARestart: a process that has signed nothing of
// a ledger yet (restarted, here with NATS away) holds its first head to the
// last anchor of its file: a history rewritten and re-sealed under that
// anchor is not signed. It used to sign whatever the heads table said
// until it had signed once itself.
func TestAnchorsRememberedAcrossARestart(t *testing.T) {
	h, dir, prefix := anchoringLedgerd(t)
	anchors := filepath.Join(dir, "anchors")
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	pos := h.transferOK(t, ledger, transfer("t1", "alice", "bob", "10.00", "USD"))
	testenv.Eventually(t, 30*time.Second, func() error { // in the file (written after the bucket)
		if a, ok, err := (&anchorfile.Sink{Dir: anchors}).Last(ledger); err != nil || !ok || a.Position != pos {
			return fmt.Errorf("no anchor at %d in the file yet (%+v, %v)", pos, a, err)
		}
		return nil
	})
	text, err := os.ReadFile(prefix + ".key")
	testenv.NoError(t, err)
	key, err := anchor.ParsePrivateKey(text)
	testenv.NoError(t, err)
	store := eventstore.New(h.pool(t))
	restarted := workflows.NewAnchoring(store, anchor.NewSigner(key), nil, &anchorfile.Sink{Dir: anchors})

	r := rewriteTransfer(t, h, ledger, pos)
	pg, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer pg.Close(context.Background())
	_, err = pg.Exec(ctx(t), `UPDATE ledger_heads SET hash = $2 WHERE ledger = $1`, ledger, r.Hash[:])
	testenv.NoError(t, err)
	if _, err := restarted.Anchor(ctx(t), ledger); !errors.Is(err, workflows.ErrNotExtended) {
		t.Errorf("a restarted signer, the anchored head re-sealed: %v, want ErrNotExtended", err)
	}
}

// anchoringLedgerd starts a ledgerd that signs every 20 ms with a key of
// its own, into <dir>/anchors and the bucket; prefix is the key pair's.
func anchoringLedgerd(t *testing.T) (h *harness, dir, prefix string) {
	t.Helper()
	dir = t.TempDir()
	prefix = filepath.Join(dir, "anchor")
	var out, errOut bytes.Buffer
	if code := ctl.Run(context.Background(), []string{"anchors", "keygen", "--out", prefix}, func(string) string { return "" },
		&out, &errOut); code != 0 {
		t.Fatalf("keygen: %s", errOut.String())
	}
	h = startWith(t, func(m *daemon.Main) {
		m.Config.AnchorKeyFile, m.Config.AnchorDir, m.Config.AnchorEvery = prefix+".key", filepath.Join(dir, "anchors"), 20*time.Millisecond
	})
	return h, dir, prefix
}

// rewriteTransfer does what whoever writes PostgreSQL can: the transfer at
// pos becomes one of 1,000,000.00, re-sealed on its prev_hash. It returns
// the event as rewritten.
func rewriteTransfer(t *testing.T, h *harness, ledger string, pos uint64) eventstore.Record {
	t.Helper()
	recs, err := eventstore.New(h.pool(t)).Read(ctx(t), ledger, pos, 1)
	testenv.NoError(t, err)
	r := recs[0]
	e, err := domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload)
	testenv.NoError(t, err)
	tc := e.(domain.TransferCommitted)
	tc.Postings[0].Amount = domain.Amount{Units: domain.UnitsFromInt64(100_000_000), Scale: 2}
	r.Payload = domain.AppendEvent(nil, tc)
	r.Seal(r.PrevHash)
	h.tamperEvents(t, `UPDATE events SET payload = $3, hash = $4 WHERE ledger = $1 AND position = $2`,
		ledger, int64(pos), string(r.Payload), r.Hash[:])
	return r
}
