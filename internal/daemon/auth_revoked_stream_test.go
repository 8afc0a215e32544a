package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestImportStreamStopsWhenItsKeyIsRevoked: an ImportEvents stream opened
// with an admin key went on taking messages, and wrote a whole ledger,
// after the key was revoked: the stream interceptor checked each message's
// ledger scope, never again whether the key was still active. Each message
// after the first now checks it too, as a unary call whose body comes after
// the revocation is refused (TestKeyRevokedBeforeTheBodyArrives).
func TestImportStreamStopsWhenItsKeyIsRevoked(t *testing.T) {
	t.Parallel()
	h := start(t)
	st := h.importStore(t)
	source := testenv.Name(t)
	h.importWorkload(t, source, 7, 20)
	log := importExport(t, st, source)
	if len(log) < 4 {
		t.Fatalf("log of %d events", len(log))
	}
	keyText, keyID := h.as(t, h.key).newKey(t, nil, "admin")
	conn, err := grpc.NewClient(h.m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(apikeys.Bearer(keyText)))
	testenv.NoError(t, err)
	defer conn.Close()
	audit := ledgerv1.NewAuditServiceClient(conn)

	target := testenv.Name(t)
	stream, err := audit.ImportEvents(ctx(t))
	testenv.NoError(t, err)
	half := len(log) / 2
	first := &ledgerv1.ImportEventsRequest{Ledger: target}
	for i := range log[:half] {
		first.Events = append(first.Events, importLogEvent(&log[i]))
	}
	testenv.NoError(t, stream.Send(first))
	time.Sleep(300 * time.Millisecond) // the first message is received and authorized

	_, err = h.as(t, h.key).admin.RevokeApiKey(ctx(t), &ledgerv1.RevokeApiKeyRequest{Id: keyID})
	testenv.NoError(t, err)
	time.Sleep(2 * time.Second) // past the documented delay, on this very node

	rest := &ledgerv1.ImportEventsRequest{}
	for i := half; i < len(log); i++ {
		rest.Events = append(rest.Events, importLogEvent(&log[i]))
	}
	_ = stream.Send(rest)
	resp, err := stream.CloseAndRecv()
	wantCode(t, "import finished by a key revoked 2 s before", err, codes.Unauthenticated)
	if head, _, _ := st.Head(ctx(t), target); head != 0 {
		t.Errorf("a revoked key imported %d events into %s (%v)", head, target, resp)
	}
}

// TestReadyzDetailIsForAdminsOfEveryLedger: /readyz tells an admin key
// which ledgers' read sides are at fault and why, for every ledger (and the
// database's errors). A key that is admin of ledger a only learned ledger
// b's name, projection and fault reason there, which GetProjectionStatus
// (every ledger) refuses it; only an admin of every ledger gets the detail.
func TestReadyzDetailIsForAdminsOfEveryLedger(t *testing.T) {
	t.Parallel()
	h := start(t)
	a, b := testenv.Name(t), testenv.Name(t)
	h.setup(t, a)
	h.setup(t, b)
	scoped, _ := h.as(t, h.key).newKey(t, []string{a}, "admin")

	// The scoped key may not ask for every ledger's projection status.
	_, err := h.as(t, scoped).query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{})
	wantCode(t, "scoped admin: GetProjectionStatus of every ledger", err, codes.PermissionDenied)

	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	secret := "secret-fault-reason-of-" + b
	_, err = conn.Exec(ctx(t), `INSERT INTO stream_faults (ledger, fault) VALUES ($1, $2)`, b, secret)
	if err != nil {
		t.Skipf("cannot plant a stream fault: %v", err)
	}
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), `DELETE FROM stream_faults WHERE ledger = $1`, b) })

	get := func(key string) string {
		req, err := http.NewRequestWithContext(ctx(t), "GET", "http://"+h.m.HTTPAddr()+"/readyz", nil)
		testenv.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		testenv.NoError(t, err)
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return string(out)
	}
	// The unscoped admin sees it (the check that the fault was planted).
	testenv.Eventually(t, 5*time.Second, func() error {
		if out := get(h.key); !strings.Contains(out, secret) {
			return fmt.Errorf("admin's /readyz: %q", out)
		}
		return nil
	})
	if out := get(scoped); strings.Contains(out, b) {
		t.Errorf("an admin of %s only reads ledger %s's fault on /readyz:\n%s", a, b, out)
	}
}
