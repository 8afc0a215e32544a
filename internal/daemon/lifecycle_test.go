package daemon_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// Ledger lifecycle end to end: creation is an admin act, an interrupted
// import keeps its ledger closed to writes until it resumes, an archived
// ledger is read-only.

// wantStatus fails the test unless err is code and its message holds text.
func wantStatus(t *testing.T, what string, err error, code codes.Code, text string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), text) {
		t.Errorf("%s: %v, want %s with %q", what, err, code, text)
	}
}

func (c *caller) ledgerStatus(t *testing.T, ledger string) ledgerv1.LedgerStatus {
	t.Helper()
	resp, err := c.admin.GetLedger(ctx(t), &ledgerv1.GetLedgerRequest{Ledger: ledger})
	testenv.NoError(t, err)
	return resp.GetLedger().GetStatus()
}

// TestCreatingALedgerIsAnAdminAct: a writer key's DefineAsset on an unknown
// ledger is NotFound naming ledger and creates nothing; CreateLedger is for
// admins only, idempotent; once created, the writer key writes it. An admin's
// DefineAsset still creates a ledger (the README tour).
func TestCreatingALedgerIsAnAdminAct(t *testing.T) {
	t.Parallel()
	h := start(t)
	admin := h.as(t, h.key)
	writerKey, _ := admin.newKey(t, nil, "writer")
	writer := h.as(t, writerKey)
	ledger := testenv.Name(t)

	_, err := writer.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	st, _ := status.FromError(err)
	if st.Code() != codes.NotFound || fieldOf(st) != "ledger" || !strings.Contains(st.Message(), "CreateLedger") {
		t.Fatalf("writer's DefineAsset on an unknown ledger: %v (field %q), want NotFound naming ledger, hinting CreateLedger", err, fieldOf(st))
	}
	_, err = admin.admin.GetLedger(ctx(t), &ledgerv1.GetLedgerRequest{Ledger: ledger})
	wantCode(t, "GetLedger after a refused DefineAsset", err, codes.NotFound)
	if head := h.head(t, ledger); head != 0 {
		t.Fatalf("refused DefineAsset left %d events", head)
	}

	_, err = writer.admin.CreateLedger(ctx(t), &ledgerv1.CreateLedgerRequest{Ledger: ledger})
	wantCode(t, "CreateLedger with a writer key", err, codes.PermissionDenied)
	_, err = admin.admin.CreateLedger(ctx(t), &ledgerv1.CreateLedgerRequest{Ledger: "Bad Name"})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "ledger" {
		t.Errorf("CreateLedger of a malformed name: %v, want InvalidArgument naming ledger", err)
	}

	resp, err := admin.admin.CreateLedger(ctx(t), &ledgerv1.CreateLedgerRequest{Ledger: ledger})
	testenv.NoError(t, err)
	if !resp.GetCreated() || resp.GetLedger().GetStatus() != ledgerv1.LedgerStatus_LEDGER_STATUS_ACTIVE || resp.GetLedger().GetHead() != 0 {
		t.Errorf("CreateLedger: %v, want created, active, head 0", resp)
	}
	again, err := admin.admin.CreateLedger(ctx(t), &ledgerv1.CreateLedgerRequest{Ledger: ledger})
	testenv.NoError(t, err)
	if again.GetCreated() || again.GetLedger().GetName() != ledger {
		t.Errorf("CreateLedger again: %v, want created false, the same ledger", again)
	}

	d, err := writer.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	testenv.NoError(t, err)
	mustCreated(t, d.GetResult())

	// The README tour, with the admin key: DefineAsset creates the ledger.
	tour := testenv.Name(t)
	h.setup(t, tour)
	if got := admin.ledgerStatus(t, tour); got != ledgerv1.LedgerStatus_LEDGER_STATUS_ACTIVE {
		t.Errorf("ledger created by an admin's DefineAsset: %s, want active", got)
	}

	// ledgerctl ledger create, and its listing.
	byCtl := testenv.Name(t)
	if out := h.runCtlOK(t, byCtl, "ledger", "create"); !strings.HasPrefix(out, "CREATED "+byCtl) {
		t.Errorf("ledgerctl ledger create: %q", out)
	}
	if out := h.runCtlOK(t, "default", "ledger", "create", byCtl); !strings.HasPrefix(out, "EXISTS "+byCtl) {
		t.Errorf("ledgerctl ledger create of an existing ledger: %q", out)
	}
	out := h.runCtlOK(t, "default", "ledger", "list")
	for _, name := range []string{ledger, tour, byCtl} {
		if !strings.Contains(out, name) {
			t.Errorf("ledger list lacks %s:\n%s", name, out)
		}
	}
}

// TestAnInterruptedImportRefusesWritesThenResumes: an import that stopped
// after its first chunk (as a crash of ledgerd leaves it) keeps its ledger
// importing: writes are refused, by an admin as by a writer, and the same log
// sent again completes it; then the ledger is active, verifies clean, and
// takes writes.
func TestAnInterruptedImportRefusesWritesThenResumes(t *testing.T) {
	t.Parallel()
	h := start(t)
	st, audit := h.importStore(t), h.importClient(t)
	admin := h.as(t, h.key)
	source := testenv.Name(t)
	h.importWorkload(t, source, 31, 40)
	log := importExport(t, st, source)

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

	if got := admin.ledgerStatus(t, target); got != ledgerv1.LedgerStatus_LEDGER_STATUS_IMPORTING {
		t.Errorf("status of the interrupted import: %s, want importing", got)
	}
	if out := h.runCtlOK(t, target, "ledger", "status"); !strings.Contains(out, "status importing") {
		t.Errorf("ledgerctl ledger status: %q, want importing", out)
	}
	if out := h.runCtlOK(t, target, "projections", "status"); !strings.Contains(out, "status importing") {
		t.Errorf("ledgerctl projections status: %q, want the ledger importing", out)
	}
	_, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: target,
		Transfers: []*ledgerv1.Transfer{transfer("during-import", "alice", "bob", "1.00", "USD")}})
	wantStatus(t, "transfer into the importing ledger", err, codes.FailedPrecondition, "ledger is importing")
	_, err = h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: target, Code: "GBP", Scale: 2})
	wantStatus(t, "admin's DefineAsset into the importing ledger", err, codes.FailedPrecondition, "ledger is importing")
	_, err = admin.admin.ArchiveLedger(ctx(t), &ledgerv1.ArchiveLedgerRequest{Ledger: target})
	wantStatus(t, "archive of the importing ledger", err, codes.FailedPrecondition, "ledger is importing")
	if head, _, _ := st.Head(ctx(t), target); head != uint64(k) {
		t.Fatalf("head %d after refused writes, want %d", head, k)
	}

	resp, err := importStream(t, audit, target, log, 8192)
	testenv.NoError(t, err)
	h.importCheckCopy(t, st, source, target, resp)
	if got := admin.ledgerStatus(t, target); got != ledgerv1.LedgerStatus_LEDGER_STATUS_ACTIVE {
		t.Errorf("status after the resumed import: %s, want active", got)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if code, out, errOut := h.runCtl(t, target, "audit", "verify"); code != 0 {
			return &ctlError{code: code, out: out + errOut}
		}
		return nil
	})
	pos := h.transferOK(t, target, transfer("after-import", "alice", "bob", "1.00", "USD"))
	if pos != uint64(len(log))+1 {
		t.Errorf("first transfer after the import at %d, want %d", pos, len(log)+1)
	}
}

// restart runs a new ledgerd on h's database and key (h's must be closed).
func restart(t *testing.T, h *harness) *harness {
	t.Helper()
	h2 := &harness{pgURL: h.pgURL, key: h.key}
	cfg := h.m.Config
	cfg.DataDir = t.TempDir()
	h2.m = &daemon.Main{Config: cfg, Logger: h.m.Logger}
	testenv.NoError(t, h2.m.Run(context.Background()))
	t.Cleanup(h2.m.Close)
	conn, err := grpc.NewClient(h2.m.GRPCAddr(), h2.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	h2.cmd, h2.query = ledgerv1.NewCommandServiceClient(conn), ledgerv1.NewQueryServiceClient(conn)
	return h2
}

type ctlError struct {
	code int
	out  string
}

func (e *ctlError) Error() string { return fmt.Sprintf("exit %d\n%s", e.code, e.out) }

// TestArchivedLedgerIsReadOnly: an archived ledger refuses every command,
// stays readable (queries, ReadEvents, verify), is not started again at boot,
// and unarchived takes writes again.
func TestArchivedLedgerIsReadOnly(t *testing.T) {
	t.Parallel()
	h := start(t)
	admin := h.as(t, h.key)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	pos := h.transferOK(t, ledger, transfer("t1", "alice", "bob", "5.00", "USD"))

	resp, err := admin.admin.ArchiveLedger(ctx(t), &ledgerv1.ArchiveLedgerRequest{Ledger: ledger})
	testenv.NoError(t, err)
	if resp.GetLedger().GetStatus() != ledgerv1.LedgerStatus_LEDGER_STATUS_ARCHIVED || resp.GetLedger().GetHead() != pos {
		t.Errorf("ArchiveLedger: %v, want archived at head %d", resp, pos)
	}
	again, err := admin.admin.ArchiveLedger(ctx(t), &ledgerv1.ArchiveLedgerRequest{Ledger: ledger})
	testenv.NoError(t, err)
	if again.GetLedger().GetStatus() != ledgerv1.LedgerStatus_LEDGER_STATUS_ARCHIVED {
		t.Errorf("ArchiveLedger again: %v", again)
	}

	_, err = h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
		Transfers: []*ledgerv1.Transfer{transfer("t2", "alice", "bob", "1.00", "USD")}})
	wantStatus(t, "transfer into the archived ledger", err, codes.FailedPrecondition, "ledger archived")
	_, err = h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "GBP", Scale: 2})
	wantStatus(t, "DefineAsset into the archived ledger", err, codes.FailedPrecondition, "ledger archived")
	if head := h.head(t, ledger); head != pos {
		t.Fatalf("head %d after refused commands, want %d", head, pos)
	}

	// Readable: balances, the log, verify.
	h.checkBalances(t, "archived", ledger, pos, map[string]string{"bob": "5.00 5.00 | 0.00/5.00 | 0.00/0.00"})
	testenv.NoError(t, admin.readEvents(ledger))
	h.runCtlOK(t, ledger, "audit", "verify")
	if out := h.runCtlOK(t, ledger, "ledger", "status"); !strings.Contains(out, "status archived") {
		t.Errorf("ledgerctl ledger status: %q, want archived", out)
	}

	// Its writer, relay and projections stop: a restart does not start it.
	h.m.Close()
	h2 := restart(t, h)
	_, err = h2.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
		Transfers: []*ledgerv1.Transfer{transfer("t3", "alice", "bob", "1.00", "USD")}})
	wantStatus(t, "transfer into the archived ledger after a restart", err, codes.FailedPrecondition, "ledger archived")
	h2.checkBalances(t, "archived, restarted", ledger, pos, map[string]string{"bob": "5.00 5.00 | 0.00/5.00 | 0.00/0.00"})

	admin2 := h2.as(t, h2.key)
	un, err := admin2.admin.UnarchiveLedger(ctx(t), &ledgerv1.UnarchiveLedgerRequest{Ledger: ledger})
	testenv.NoError(t, err)
	if un.GetLedger().GetStatus() != ledgerv1.LedgerStatus_LEDGER_STATUS_ACTIVE {
		t.Errorf("UnarchiveLedger: %v", un)
	}
	next := h2.transferOK(t, ledger, transfer("t4", "alice", "bob", "1.00", "USD"))
	h2.checkBalances(t, "unarchived", ledger, next, map[string]string{"bob": "6.00 6.00 | 0.00/6.00 | 0.00/0.00"})
}

// TestLedgersOverREST: the ledger calls' REST routes, and ListLedgers' page
// bound and paging.
func TestLedgersOverREST(t *testing.T) {
	t.Parallel()
	h := start(t)
	base := testenv.Name(t)
	type ledgerJSON struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Head   string `json:"head"`
	}
	var created struct {
		Ledger  ledgerJSON `json:"ledger"`
		Created bool       `json:"created"`
	}
	names := []string{base + "-a", base + "-b", base + "-c"}
	for _, name := range names {
		created.Created = false
		h.rest(t, "POST", "/v1/ledgers", `{"ledger":"`+name+`"}`, 200, &created)
		if !created.Created || created.Ledger.Name != name || created.Ledger.Status != "LEDGER_STATUS_ACTIVE" {
			t.Errorf("POST /v1/ledgers %s: %+v", name, created)
		}
	}
	created.Created = false // absent from the JSON when false
	h.rest(t, "POST", "/v1/ledgers", `{"ledger":"`+names[0]+`"}`, 200, &created)
	if created.Created || created.Ledger.Name != names[0] {
		t.Errorf("POST /v1/ledgers again: %+v, want created false", created)
	}
	var one struct {
		Ledger ledgerJSON `json:"ledger"`
	}
	h.rest(t, "POST", "/v1/ledgers/"+names[1]+":archive", "", 200, &one)
	if one.Ledger.Status != "LEDGER_STATUS_ARCHIVED" {
		t.Errorf("archive over REST: %+v", one)
	}
	h.rest(t, "GET", "/v1/ledgers/"+names[1], "", 200, &one)
	if one.Ledger.Status != "LEDGER_STATUS_ARCHIVED" {
		t.Errorf("GET /v1/ledgers/%s: %+v", names[1], one)
	}
	h.rest(t, "POST", "/v1/ledgers/"+names[1]+":unarchive", "", 200, &one)
	h.rest(t, "GET", "/v1/ledgers/nope-"+base, "", 404, nil)

	// Paging, 2 a page: this test's 3 ledgers come in order over the pages.
	var got []string
	token := ""
	for range 100 {
		var page struct {
			Ledgers       []ledgerJSON `json:"ledgers"`
			NextPageToken string       `json:"next_page_token"`
		}
		h.rest(t, "GET", "/v1/ledgers?limit=2&page_token="+token, "", 200, &page)
		if len(page.Ledgers) > 2 {
			t.Fatalf("page of %d ledgers, limit 2", len(page.Ledgers))
		}
		for _, l := range page.Ledgers {
			if strings.HasPrefix(l.Name, base) {
				got = append(got, l.Name)
			}
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	if !slices.Equal(got, names) {
		t.Errorf("listed %v, want %v", got, names)
	}
	var e restError
	h.rest(t, "GET", fmt.Sprintf("/v1/ledgers?limit=%d", eventstore.ListLedgersMax+1), "", 400, &e)
	checkViolation(t, e, "limit")
	h.rest(t, "GET", fmt.Sprintf("/v1/ledgers?limit=%d", eventstore.ListLedgersMax), "", 200, nil)
}

// TestImportIntoACreatedLedger: a ledger made by CreateLedger and still empty
// takes an import; an archived ledger refuses one.
func TestImportIntoACreatedLedger(t *testing.T) {
	t.Parallel()
	h := start(t)
	st, audit := h.importStore(t), h.importClient(t)
	admin := h.as(t, h.key)
	source := testenv.Name(t)
	h.importWorkload(t, source, 51, 10)
	log := importExport(t, st, source)

	target := testenv.Name(t)
	_, err := admin.admin.CreateLedger(ctx(t), &ledgerv1.CreateLedgerRequest{Ledger: target})
	testenv.NoError(t, err)
	resp, err := importStream(t, audit, target, log, 8192)
	testenv.NoError(t, err)
	h.importCheckCopy(t, st, source, target, resp)
	if got := admin.ledgerStatus(t, target); got != ledgerv1.LedgerStatus_LEDGER_STATUS_ACTIVE {
		t.Errorf("status after the import: %s, want active", got)
	}

	archived := testenv.Name(t)
	_, err = admin.admin.CreateLedger(ctx(t), &ledgerv1.CreateLedgerRequest{Ledger: archived})
	testenv.NoError(t, err)
	_, err = admin.admin.ArchiveLedger(ctx(t), &ledgerv1.ArchiveLedgerRequest{Ledger: archived})
	testenv.NoError(t, err)
	_, err = importStream(t, audit, archived, log, 8192)
	wantStatus(t, "import into an archived ledger", err, codes.FailedPrecondition, "archived")
	if head := h.head(t, archived); head != 0 {
		t.Errorf("archived ledger holds %d events after a refused import", head)
	}
}
