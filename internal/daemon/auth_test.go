package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// caller is a client of one ledgerd with one key ("" for none).
type caller struct {
	key   string
	cmd   ledgerv1.CommandServiceClient
	query ledgerv1.QueryServiceClient
	audit ledgerv1.AuditServiceClient
	admin ledgerv1.AdminServiceClient
	conn  *grpc.ClientConn
}

// as connects to h's ledgerd sending key (none when "").
func (h *harness) as(t *testing.T, key string) *caller {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if key != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(apikeys.Bearer(key)))
	}
	conn, err := grpc.NewClient(h.m.GRPCAddr(), opts...)
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &caller{key: key, conn: conn, cmd: ledgerv1.NewCommandServiceClient(conn), query: ledgerv1.NewQueryServiceClient(conn),
		audit: ledgerv1.NewAuditServiceClient(conn), admin: ledgerv1.NewAdminServiceClient(conn)}
}

// newKey makes a key through the API, as an admin.
func (c *caller) newKey(t *testing.T, ledgers []string, roles ...string) (text, id string) {
	t.Helper()
	resp, err := c.admin.CreateApiKey(ctx(t), &ledgerv1.CreateApiKeyRequest{Roles: roles, Ledgers: ledgers, Description: "test " + strings.Join(roles, ",")})
	testenv.NoError(t, err)
	return resp.GetKey(), resp.GetApiKey().GetId()
}

// wantCode fails the test unless err has code.
func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Errorf("%s: %v (%s), want %s", what, err, got, code)
	}
}

func (c *caller) transfer(ledger, id string) error {
	_, err := c.cmd.CreateTransfers(context.Background(), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
		Transfers: []*ledgerv1.Transfer{transfer(id, "alice", "bob", "1.00", "USD")}})
	return err
}

func (c *caller) balances(ledger string) error {
	_, err := c.query.GetBalances(context.Background(), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice"}})
	return err
}

// readEvents reads the ledger's whole log; the error is the stream's.
func (c *caller) readEvents(ledger string) error {
	stream, err := c.audit.ReadEvents(context.Background(), &ledgerv1.ReadEventsRequest{Ledger: ledger})
	if err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// importInto sends one ImportEvents message naming ledger, then a second
// naming next ("" for none), and returns the call's error.
func (c *caller) importInto(ledger, next string) error {
	stream, err := c.audit.ImportEvents(context.Background())
	if err != nil {
		return err
	}
	if err := stream.Send(&ledgerv1.ImportEventsRequest{Ledger: ledger}); err != nil {
		_, err = stream.CloseAndRecv()
		return err
	}
	if err := stream.Send(&ledgerv1.ImportEventsRequest{Ledger: next}); err != nil {
		_, err = stream.CloseAndRecv()
		return err
	}
	_, err = stream.CloseAndRecv()
	return err
}

// TestAuthRolesAndScopes: who may call what, on which ledger, over gRPC.
func TestAuthRolesAndScopes(t *testing.T) {
	t.Parallel()
	h := start(t)
	a, b := testenv.Name(t), testenv.Name(t)
	h.setup(t, a)
	h.setup(t, b)
	admin := h.as(t, h.key)

	// No key, a malformed one, an unknown one: Unauthenticated, for unary
	// and streaming calls alike.
	unknown := newKey(t)
	for name, c := range map[string]*caller{"no key": h.as(t, ""), "malformed key": h.as(t, "lk_nope"), "unknown key": h.as(t, unknown)} {
		wantCode(t, name+": CreateTransfers", c.transfer(a, "x"), codes.Unauthenticated)
		wantCode(t, name+": GetBalances", c.balances(a), codes.Unauthenticated)
		wantCode(t, name+": ReadEvents", c.readEvents(a), codes.Unauthenticated)
		wantCode(t, name+": ListApiKeys", func() error { _, err := c.admin.ListApiKeys(ctx(t), &ledgerv1.ListApiKeysRequest{}); return err }(),
			codes.Unauthenticated)
	}
	// Another scheme than Bearer.
	md := h.as(t, "")
	_, err := md.query.GetBalances(metadata.AppendToOutgoingContext(ctx(t), "authorization", "Basic "+h.key),
		&ledgerv1.GetBalancesRequest{Ledger: a, Accounts: []string{"alice"}})
	wantCode(t, "Basic scheme", err, codes.Unauthenticated)

	readerKey, readerID := admin.newKey(t, nil, "reader")
	reader := h.as(t, readerKey)
	wantCode(t, "reader: CreateTransfers", reader.transfer(a, "r1"), codes.PermissionDenied)
	wantCode(t, "reader: GetBalances", reader.balances(a), codes.OK)
	wantCode(t, "reader: ReadEvents", reader.readEvents(a), codes.PermissionDenied)

	writerKey, _ := admin.newKey(t, []string{a}, "writer", "reader")
	writer := h.as(t, writerKey)
	wantCode(t, "writer of a: CreateTransfers on a", writer.transfer(a, "w1"), codes.OK)
	wantCode(t, "writer of a: CreateTransfers on b", writer.transfer(b, "w1"), codes.PermissionDenied)
	wantCode(t, "writer of a: GetBalances on b", writer.balances(b), codes.PermissionDenied)
	_, err = writer.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{})
	wantCode(t, "writer of a: GetProjectionStatus of every ledger", err, codes.PermissionDenied)
	_, err = writer.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{Ledger: a})
	wantCode(t, "writer of a: GetProjectionStatus of a", err, codes.OK)

	auditorKey, _ := admin.newKey(t, nil, "auditor")
	auditor := h.as(t, auditorKey)
	wantCode(t, "auditor: ReadEvents", auditor.readEvents(a), codes.OK)
	wantCode(t, "auditor: CreateTransfers", auditor.transfer(a, "a1"), codes.PermissionDenied)
	wantCode(t, "auditor: GetBalances", auditor.balances(a), codes.PermissionDenied)
	wantCode(t, "auditor: ImportEvents", auditor.importInto(testenv.Name(t), ""), codes.PermissionDenied)
	_, err = auditor.admin.CreateApiKey(ctx(t), &ledgerv1.CreateApiKeyRequest{Roles: []string{"admin"}})
	wantCode(t, "auditor: CreateApiKey", err, codes.PermissionDenied)

	// An admin of some ledgers: each message of a client stream is checked,
	// and keys (which name no ledger) need an admin of every ledger, or a
	// scoped admin could make itself an unscoped one.
	target := testenv.Name(t)
	scopedKey, _ := admin.newKey(t, []string{target}, "admin")
	scoped := h.as(t, scopedKey)
	wantCode(t, "admin of target: ImportEvents into b", scoped.importInto(b, ""), codes.PermissionDenied)
	wantCode(t, "admin of target: ImportEvents, then b", scoped.importInto(target, b), codes.PermissionDenied)
	// Into its own ledger the stream passes auth and reaches the import, which refuses an empty log.
	wantCode(t, "admin of target: ImportEvents into target", scoped.importInto(target, ""), codes.InvalidArgument)
	_, err = scoped.admin.CreateApiKey(ctx(t), &ledgerv1.CreateApiKeyRequest{Roles: []string{"admin"}})
	wantCode(t, "admin of target: CreateApiKey", err, codes.PermissionDenied)

	// The admin of every ledger may do everything.
	wantCode(t, "admin: CreateTransfers", admin.transfer(b, "ad1"), codes.OK)
	wantCode(t, "admin: GetBalances", admin.balances(b), codes.OK)
	wantCode(t, "admin: ReadEvents", admin.readEvents(b), codes.OK)
	_, err = admin.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{})
	wantCode(t, "admin: GetProjectionStatus", err, codes.OK)

	// Reflection stays open: grpcurl list works without a key.
	stream, err := reflectionpb.NewServerReflectionClient(h.as(t, "").conn).ServerReflectionInfo(ctx(t))
	testenv.NoError(t, err)
	testenv.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}))
	refl, err := stream.Recv()
	testenv.NoError(t, err)
	if !strings.Contains(prototext.Format(refl), "ledger.v1.CommandService") {
		t.Errorf("reflection without a key: %v, want the services listed", refl)
	}

	// Listing shows no secret; revoking stops the key within the cache's
	// refresh (at once on this ledgerd).
	list, err := admin.admin.ListApiKeys(ctx(t), &ledgerv1.ListApiKeysRequest{})
	testenv.NoError(t, err)
	_, readerSecret, _ := apikeys.Parse(readerKey)
	if text := prototext.Format(list); strings.Contains(text, readerSecret) || len(list.GetApiKeys()) != 5 {
		t.Errorf("ListApiKeys: %d keys (want 5), or a secret in it:\n%s", len(list.GetApiKeys()), text)
	}
	_, err = admin.admin.RevokeApiKey(ctx(t), &ledgerv1.RevokeApiKeyRequest{Id: readerID})
	testenv.NoError(t, err)
	testenv.Eventually(t, 10*time.Second, func() error {
		if err := reader.balances(a); status.Code(err) != codes.Unauthenticated {
			return fmt.Errorf("the revoked key still answers %v", err)
		}
		return nil
	})
	list, err = admin.admin.ListApiKeys(ctx(t), &ledgerv1.ListApiKeysRequest{IncludeRevoked: true})
	testenv.NoError(t, err)
	active, err := admin.admin.ListApiKeys(ctx(t), &ledgerv1.ListApiKeysRequest{})
	testenv.NoError(t, err)
	if len(list.GetApiKeys()) != 5 || len(active.GetApiKeys()) != 4 {
		t.Errorf("after a revocation: %d keys, %d active; want 5 and 4", len(list.GetApiKeys()), len(active.GetApiKeys()))
	}

	// Bad input names the field.
	for _, tc := range []struct {
		req   *ledgerv1.CreateApiKeyRequest
		field string
	}{
		{&ledgerv1.CreateApiKeyRequest{}, "roles"},
		{&ledgerv1.CreateApiKeyRequest{Roles: []string{"root"}}, "roles"},
		{&ledgerv1.CreateApiKeyRequest{Roles: []string{"reader"}, Ledgers: []string{"Not A Ledger"}}, "ledgers"},
		{&ledgerv1.CreateApiKeyRequest{Roles: []string{"reader"}, Description: strings.Repeat("x", apikeys.DescriptionBytesMax+1)}, "description"},
	} {
		_, err := admin.admin.CreateApiKey(ctx(t), tc.req)
		if got := badField(err); status.Code(err) != codes.InvalidArgument || got != tc.field {
			t.Errorf("CreateApiKey(%v): %v field %q, want InvalidArgument on %s", tc.req, err, got, tc.field)
		}
	}
	_, err = admin.admin.RevokeApiKey(ctx(t), &ledgerv1.RevokeApiKeyRequest{Id: "x"})
	if got := badField(err); status.Code(err) != codes.InvalidArgument || got != "id" {
		t.Errorf("RevokeApiKey(x): %v field %q, want InvalidArgument on id", err, got)
	}
	_, err = admin.admin.RevokeApiKey(ctx(t), &ledgerv1.RevokeApiKeyRequest{Id: apikeys.ID(unknown)})
	wantCode(t, "RevokeApiKey of an unknown key", err, codes.NotFound)
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// badField is the field a BadRequest detail names.
func badField(err error) string {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

// TestRESTAuth: the gateway passes the Authorization header on; without it
// REST answers 401, with a key lacking the role 403.
func TestRESTAuth(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	readerKey, _ := h.as(t, h.key).newKey(t, nil, "reader")
	get := func(key, method, path, body string) int {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx(t), method, "http://"+h.m.HTTPAddr()+path, rd)
		testenv.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		testenv.NoError(t, err)
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	balances := "/v1/ledgers/" + ledger + "/balances?accounts=alice"
	transfers := `{"transfers": [{"id": "t1", "postings": [{"debit_account": "alice", "credit_account": "bob", "amount": "1.00", "asset": "USD"}]}]}`
	for _, tc := range []struct {
		name, key, method, path, body string
		want                          int
	}{
		{"no key", "", "GET", balances, "", http.StatusUnauthorized},
		{"unknown key", newKey(t), "GET", balances, "", http.StatusUnauthorized},
		{"reader reads", readerKey, "GET", balances, "", http.StatusOK},
		{"reader writes", readerKey, "POST", "/v1/ledgers/" + ledger + "/transfers", transfers, http.StatusForbidden},
		{"reader lists keys", readerKey, "GET", "/v1/api-keys", "", http.StatusForbidden},
		{"admin lists keys", h.key, "GET", "/v1/api-keys", "", http.StatusOK},
		{"health is open", "", "GET", "/healthz", "", http.StatusOK},
		{"readiness is open", "", "GET", "/readyz", "", http.StatusOK},
		{"metrics are open", "", "GET", "/metrics", "", http.StatusOK},
	} {
		if got := get(tc.key, tc.method, tc.path, tc.body); got != tc.want {
			t.Errorf("%s: %s %s: %d, want %d", tc.name, tc.method, tc.path, got, tc.want)
		}
	}
}

// TestStartRefusedWithoutAnyKey: on external servers, auth on, no key given
// and none stored, nobody could call ledgerd: it refuses to start. With
// -auth=false it starts and serves anyone.
func TestStartRefusedWithoutAnyKey(t *testing.T) {
	t.Parallel()
	cfg := daemon.Config{PostgresURL: testenv.PostgresURL(t), NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8}
	m := &daemon.Main{Config: cfg, Logger: discardLogger()}
	if err := m.Run(context.Background()); !errors.Is(err, daemon.ErrNoAPIKey) {
		m.Close()
		t.Fatalf("Run without any key: %v, want ErrNoAPIKey", err)
	}
	cfg.AuthDisabled = true
	h := &harness{pgURL: cfg.PostgresURL, m: &daemon.Main{Config: cfg, Logger: discardLogger()}}
	testenv.NoError(t, h.m.Run(context.Background()))
	t.Cleanup(h.m.Close)
	ledger := testenv.Name(t)
	_, err := h.as(t, "").cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	testenv.NoError(t, err)

	// A revoked bootstrap key does not come back by a restart.
	key := newKey(t)
	cfg.AuthDisabled, cfg.AdminKey = false, key
	h2 := &harness{pgURL: cfg.PostgresURL, key: key, m: &daemon.Main{Config: cfg, Logger: discardLogger()}}
	testenv.NoError(t, h2.m.Run(context.Background()))
	_, err = h2.as(t, key).admin.RevokeApiKey(ctx(t), &ledgerv1.RevokeApiKeyRequest{Id: apikeys.ID(key)})
	testenv.NoError(t, err)
	h2.m.Close()
	m3 := &daemon.Main{Config: cfg, Logger: discardLogger()}
	if err := m3.Run(context.Background()); !errors.Is(err, apikeys.ErrRevoked) {
		m3.Close()
		t.Fatalf("Run with a revoked -admin-key: %v, want ErrRevoked", err)
	}
}

// TestKeyRevokedBeforeTheBodyArrives: a call whose headers came with a valid
// key and whose body comes after the key was revoked is refused. The tap
// verifies the key from the headers; the interceptors, which run once the
// body is in, must still see the revocation (a stolen key's holder could
// otherwise open calls beforehand and send them after the revocation).
func TestKeyRevokedBeforeTheBodyArrives(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	admin := h.as(t, h.key)
	readerKey, readerID := admin.newKey(t, nil, "reader")
	reader := h.as(t, readerKey)
	wantCode(t, "before the revocation", reader.balances(ledger), codes.OK)

	// The headers now, the body later: a raw stream on the unary method.
	st, err := reader.conn.NewStream(ctx(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true},
		"/ledger.v1.QueryService/GetBalances")
	testenv.NoError(t, err)
	// Time for the headers to reach the tap, which verifies the key then.
	// Were the revocation first, the tap would refuse and the test pass
	// without testing the interceptors: it could not fail spuriously.
	time.Sleep(300 * time.Millisecond)
	_, err = admin.admin.RevokeApiKey(ctx(t), &ledgerv1.RevokeApiKeyRequest{Id: readerID})
	testenv.NoError(t, err)
	testenv.NoError(t, st.SendMsg(&ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice"}}))
	testenv.NoError(t, st.CloseSend())
	var out ledgerv1.GetBalancesResponse
	wantCode(t, "the body sent after the revocation", st.RecvMsg(&out), codes.Unauthenticated)
}
