package daemon_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestReviewUsageLeaksAdminKey: LEDGER_ADMIN_KEY is the default of
// -admin-key, and the flag package prints non-empty defaults in the usage it
// writes on -h and on every flag error: a mistyped flag puts the bootstrap
// admin key into the process's stderr (container logs).
func TestReviewUsageLeaksAdminKey(t *testing.T) {
	key := newKey(t)
	env := map[string]string{"LEDGER_ADMIN_KEY": key}
	for _, args := range [][]string{{"-no-such-flag"}, {"-h"}} {
		var out bytes.Buffer
		_, err := daemon.ParseFlags(args, func(k string) string { return env[k] }, &out)
		if err == nil {
			t.Fatalf("ParseFlags(%q): no error", args)
		}
		if _, secret, _ := apikeys.Parse(key); strings.Contains(out.String(), secret) {
			t.Errorf("ParseFlags(%q) wrote the admin key's secret:\n%s", args, out.String())
		}
	}
}

// TestReviewRESTScope: over REST, a key scoped to ledger a cannot reach
// ledger b by naming b in the body or the query: the path's ledger is the
// request's, and the interceptor sees the request the handler sees.
func TestReviewRESTScope(t *testing.T) {
	t.Parallel()
	h := start(t)
	a, b := testenv.Name(t), testenv.Name(t)
	h.setup(t, a)
	h.setup(t, b)
	scopedKey, _ := h.as(t, h.key).newKey(t, []string{a}, "writer", "reader", "admin")
	do := func(key, method, path, body string) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx(t), method, "http://"+h.m.HTTPAddr()+path, rd)
		testenv.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		testenv.NoError(t, err)
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	body := `{"ledger": "` + b + `", "transfers": [{"id": "smuggled", "postings": [{"debit_account": "alice", "credit_account": "bob", "amount": "1.00", "asset": "USD"}]}]}`
	if code, out := do(scopedKey, "POST", "/v1/ledgers/"+a+"/transfers", body); code != http.StatusOK && code != http.StatusBadRequest {
		t.Errorf("body naming b, path a: %d %s", code, out)
	}
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	var n int
	testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT count(*) FROM events WHERE ledger = $1 AND command_id = 'smuggled'`, b).Scan(&n))
	if n != 0 {
		t.Errorf("a key scoped to %s recorded a transfer in %s", a, b)
	}
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"balances of b", "GET", "/v1/ledgers/" + b + "/balances?accounts=alice", "", http.StatusForbidden},
		{"projections of every ledger", "GET", "/v1/projections", "", http.StatusForbidden},
		{"rebuild of b", "POST", "/v1/ledgers/" + b + "/projections/balances:rebuild", "", http.StatusForbidden},
		{"events of b", "GET", "/v1/ledgers/" + b + "/events", "", http.StatusForbidden},
		{"import into b", "POST", "/v1/events:import", `{"ledger": "` + b + `"}`, http.StatusForbidden},
		{"create an unscoped key", "POST", "/v1/api-keys", `{"roles": ["admin"]}`, http.StatusForbidden},
		{"list keys", "GET", "/v1/api-keys", "", http.StatusForbidden},
	} {
		if got, out := do(scopedKey, tc.method, tc.path, tc.body); got != tc.want {
			t.Errorf("%s: %s %s: %d %s, want %d", tc.name, tc.method, tc.path, got, out, tc.want)
		}
	}
	if code, out := do(scopedKey, "GET", "/v1/ledgers/"+a+"/balances?accounts=alice&ledger="+b, ""); code != http.StatusOK ||
		strings.Contains(out, b) {
		t.Errorf("balances of a with ?ledger=b: %d %s", code, out)
	}
}

// TestReviewScopedServerStream: a scoped admin may not rebuild another
// ledger's projection over gRPC (server stream: the request is received
// through the interceptor's stream).
func TestReviewScopedServerStream(t *testing.T) {
	t.Parallel()
	h := start(t)
	a, b := testenv.Name(t), testenv.Name(t)
	h.setup(t, a)
	h.setup(t, b)
	scopedKey, _ := h.as(t, h.key).newKey(t, []string{a}, "admin")
	c := h.as(t, scopedKey)
	stream, err := c.admin.RebuildProjection(ctx(t), &ledgerv1.RebuildProjectionRequest{Ledger: b, Projection: "balances"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "scoped admin: RebuildProjection of b", err, codes.PermissionDenied)
	wantCode(t, "scoped admin: ReadEvents of b", c.readEvents(b), codes.PermissionDenied)
	wantCode(t, "scoped admin: ReadEvents of every ledger", c.readEvents(""), codes.PermissionDenied)
}

// TestReviewAuthorizationHeaderForms: two authorization values are refused;
// the scheme is case-insensitive.
func TestReviewAuthorizationHeaderForms(t *testing.T) {
	t.Parallel()
	h := start(t)
	a := testenv.Name(t)
	h.setup(t, a)
	none := h.as(t, "")
	get := func(md ...string) error {
		_, err := none.query.GetBalances(metadata.AppendToOutgoingContext(context.Background(), md...),
			&ledgerv1.GetBalancesRequest{Ledger: a, Accounts: []string{"alice"}})
		return err
	}
	wantCode(t, "bearer lower case", get("authorization", "bearer "+h.key), codes.OK)
	wantCode(t, "two values", get("authorization", "Bearer "+h.key, "authorization", "Bearer "+newKey(t)), codes.Unauthenticated)
	wantCode(t, "empty bearer", get("authorization", "Bearer "), codes.Unauthenticated)
}

// TestReviewKeysMaxOverTheAPI: at KeysMax active keys CreateApiKey answers
// ResourceExhausted; a revocation frees a place.
func TestReviewKeysMaxOverTheAPI(t *testing.T) {
	t.Parallel()
	h := start(t)
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	// The bootstrap admin key is one; fill all but one place.
	_, err = conn.Exec(ctx(t), `INSERT INTO api_keys (id, secret_hash, roles)
		SELECT lpad(to_hex(i), 12, '0'), sha256(i::text::bytea), ARRAY['reader'] FROM generate_series(1, $1) AS i`, apikeys.KeysMax-2)
	testenv.NoError(t, err)
	admin := h.as(t, h.key)
	_, err = admin.admin.CreateApiKey(ctx(t), &ledgerv1.CreateApiKeyRequest{Roles: []string{"reader"}})
	wantCode(t, "the KeysMax-th key", err, codes.OK)
	_, err = admin.admin.CreateApiKey(ctx(t), &ledgerv1.CreateApiKeyRequest{Roles: []string{"reader"}})
	wantCode(t, "one more", err, codes.ResourceExhausted)
	_, err = admin.admin.RevokeApiKey(ctx(t), &ledgerv1.RevokeApiKeyRequest{Id: "000000000001"})
	testenv.NoError(t, err)
	_, err = admin.admin.CreateApiKey(ctx(t), &ledgerv1.CreateApiKeyRequest{Roles: []string{"reader"}})
	wantCode(t, "after a revocation", err, codes.OK)
	list, err := admin.admin.ListApiKeys(ctx(t), &ledgerv1.ListApiKeysRequest{IncludeRevoked: true})
	testenv.NoError(t, err)
	if len(list.GetApiKeys()) != apikeys.KeysMax || !list.GetTruncated() {
		t.Errorf("ListApiKeys with revoked: %d keys, truncated %v; want %d, true", len(list.GetApiKeys()), list.GetTruncated(), apikeys.KeysMax)
	}
}
