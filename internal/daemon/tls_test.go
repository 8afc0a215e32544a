package daemon_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/devpg"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/ctl"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// selfSigned writes a self-signed certificate for localhost and 127.0.0.1
// and its key into dir, and returns their paths.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	testenv.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ledgerd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	testenv.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	testenv.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testenv.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	testenv.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}

// runCtlEnv runs ledgerctl with args in the environment env.
func runCtlEnv(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := ctl.Run(ctx(t), args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestTLS: with -tls-cert and -tls-key, gRPC and HTTP (and the gateway
// between them) speak TLS; ledgerctl connects with --tls-ca; plaintext is
// refused.
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	h := &harness{pgURL: testenv.MigratedPostgresURL(t), key: newKey(t)}
	h.m = &daemon.Main{Config: daemon.Config{PostgresURL: h.pgURL, NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:0", DataDir: dir, PostgresConnsMax: 8, AdminKey: h.key, TLSCert: certFile, TLSKey: keyFile},
		Logger: discardLogger()}
	testenv.NoError(t, h.m.Run(context.Background()))
	t.Cleanup(h.m.Close)

	pemBytes, err := os.ReadFile(certFile)
	testenv.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	h.cmd, h.query = ledgerv1.NewCommandServiceClient(conn), ledgerv1.NewQueryServiceClient(conn)
	ledger := testenv.Name(t)
	h.setup(t, ledger)

	plain, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { plain.Close() })
	_, err = ledgerv1.NewQueryServiceClient(plain).GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice"}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext call to a TLS port: %v, want Unavailable", err)
	}

	// ledgerctl over TLS, with the CA; without it, the certificate is not trusted.
	env := map[string]string{"LEDGER_ADDR": h.m.GRPCAddr(), "LEDGER_LEDGER": ledger, "LEDGER_API_KEY": h.key}
	if code, out, errOut := runCtlEnv(t, env, "--tls-ca", certFile, "balance", "--strong", "alice"); code != 0 || !strings.Contains(out, "alice") {
		t.Errorf("ledgerctl --tls-ca balance: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCtlEnv(t, env, "--tls", "balance", "alice"); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("ledgerctl --tls with an untrusted certificate: exit %d, want 1 naming the certificate\n%s", code, errOut)
	}

	// REST over HTTPS: the gateway reaches gRPC over TLS too.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	req, err := http.NewRequestWithContext(ctx(t), "GET", "https://"+h.m.HTTPAddr()+"/v1/ledgers/"+ledger+"/balances?accounts=alice", nil)
	testenv.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.key)
	resp, err := client.Do(req)
	testenv.NoError(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET balances over HTTPS: %d, want 200", resp.StatusCode)
	}
}

// TestLedgerctlKeys: keys create, list and revoke, as an operator runs them.
func TestLedgerctlKeys(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	env := map[string]string{"LEDGER_ADDR": h.m.GRPCAddr(), "LEDGER_LEDGER": "elsewhere", "LEDGER_API_KEY": h.key}
	code, out, errOut := runCtlEnv(t, env, "keys", "create", "--role", "reader", "--ledger", ledger, "--description", "dashboard")
	if code != 0 {
		t.Fatalf("keys create: exit %d\n%s%s", code, out, errOut)
	}
	key := strings.SplitN(out, "\n", 2)[0]
	id := apikeys.ID(key)
	if id == "" || !strings.Contains(out, "roles reader  ledgers "+ledger) {
		t.Fatalf("keys create printed %q: want the key, then its id, roles and ledgers", out)
	}
	// The new key reads its ledger (the global --ledger picks it), and nothing else.
	reader := map[string]string{"LEDGER_ADDR": h.m.GRPCAddr(), "LEDGER_LEDGER": ledger, "LEDGER_API_KEY": key}
	if code, out, errOut := runCtlEnv(t, reader, "balance", "--strong", "alice"); code != 0 {
		t.Errorf("balance with the new key: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCtlEnv(t, reader, "asset", "define", "EUR", "2"); code != 1 || !strings.Contains(errOut, "PermissionDenied") {
		t.Errorf("asset define with a reader key: exit %d, want 1 and PermissionDenied\n%s", code, errOut)
	}

	code, out, errOut = runCtlEnv(t, env, "keys", "list")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "dashboard") || strings.Contains(out, key) {
		t.Errorf("keys list: exit %d, want the key's id and description, never its text\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCtlEnv(t, env, "keys", "list", "-o", "json")
	var listed struct {
		Keys []struct{ ID string } `json:"api_keys"`
	}
	// protojson varies its spacing on purpose: parse, never match the text.
	err := json.Unmarshal([]byte(out), &listed)
	found := false
	for _, k := range listed.Keys {
		found = found || k.ID == id
	}
	if code != 0 || err != nil || !found {
		t.Errorf("keys list -o json: exit %d, %v, want the key %s\n%s%s", code, err, id, out, errOut)
	}
	if code, out, errOut := runCtlEnv(t, env, "keys", "revoke", id); code != 0 || !strings.HasPrefix(out, "REVOKED "+id) {
		t.Errorf("keys revoke: exit %d\n%s%s", code, out, errOut)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if code, _, errOut := runCtlEnv(t, reader, "balance", "alice"); code != 1 || !strings.Contains(errOut, "Unauthenticated") {
			return errors.New("the revoked key still works: " + errOut)
		}
		return nil
	})
	for _, args := range [][]string{{"keys", "create"}, {"keys", "create", "--role", "reader", "extra"}, {"keys", "revoke"}, {"keys", "list", "x"}} {
		if code, _, _ := runCtlEnv(t, env, args...); code != 2 {
			t.Errorf("ledgerctl %q: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := runCtlEnv(t, env, "keys", "create", "--role", "root"); code != 1 || !strings.Contains(errOut, "InvalidArgument: roles") {
		t.Errorf("keys create --role root: exit %d, want 1 and InvalidArgument on roles\n%s", code, errOut)
	}
}

// searchableTempDir is t.TempDir() reachable by the postgres user, which
// runs the private cluster when the tests run as root.
func searchableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		return dir
	}
	root := filepath.Clean(os.TempDir())
	for d := dir; d != root && strings.HasPrefix(d, root+string(filepath.Separator)); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		testenv.NoError(t, err)
		testenv.NoError(t, os.Chmod(d, fi.Mode().Perm()|0o001))
	}
	return dir
}

// TestDevModeAdminKey: on the embedded default, ledgerd generates an admin
// key once, prints it, and writes it to <data-dir>/admin.key (0600), where
// ledgerctl finds it (LEDGER_DATA_DIR, else ./var). A restart keeps it.
func TestDevModeAdminKey(t *testing.T) {
	t.Parallel()
	dir := searchableTempDir(t)
	run := func() (*daemon.Main, string) {
		var errOut bytes.Buffer
		m := &daemon.Main{Config: daemon.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: dir, PostgresConnsMax: 4},
			Logger: discardLogger(), Err: &errOut}
		err := m.Run(context.Background())
		if errors.Is(err, devpg.ErrNoPostgres) {
			t.Skip(err)
		}
		testenv.NoError(t, err)
		return m, errOut.String()
	}
	m, printed := run()
	path := filepath.Join(dir, daemon.AdminKeyFile)
	fi, err := os.Stat(path)
	testenv.NoError(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	testenv.NoError(t, err)
	key := strings.TrimSpace(string(b))
	if apikeys.ID(key) == "" || !strings.Contains(printed, "\n    "+key+"\n") {
		t.Fatalf("admin.key holds %q; printed:\n%s\nwant the key, on a line of its own", key, printed)
	}
	// The anchor key pair too: the private key owner-only.
	anchorKey := filepath.Join(dir, daemon.AnchorKeyFile)
	if fi, err := os.Stat(anchorKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, %v; want mode 0600", anchorKey, fi, err)
	}
	anchorBytes, err := os.ReadFile(anchorKey)
	testenv.NoError(t, err)
	if _, err := os.Stat(filepath.Join(dir, daemon.AnchorPubKeyFile)); err != nil {
		t.Error(err)
	}
	env := map[string]string{"LEDGER_ADDR": m.GRPCAddr(), "LEDGER_LEDGER": "demo", "LEDGER_DATA_DIR": dir}
	if code, out, errOut := runCtlEnv(t, env, "asset", "define", "USD", "2"); code != 0 {
		t.Errorf("ledgerctl with the key file: exit %d\n%s%s", code, out, errOut)
	}
	m.Close()

	m, printed = run()
	defer m.Close()
	if printed != "" {
		t.Errorf("a restart printed %q, want no new key", printed)
	}
	if b2, err := os.ReadFile(path); err != nil || string(b2) != string(b) {
		t.Errorf("a restart changed admin.key: %q, %v", b2, err)
	}
	if b2, err := os.ReadFile(anchorKey); err != nil || string(b2) != string(anchorBytes) {
		t.Errorf("a restart changed anchor.key: %v", err)
	}
	env["LEDGER_ADDR"] = m.GRPCAddr()
	if code, out, errOut := runCtlEnv(t, env, "keys", "list"); code != 0 || !strings.Contains(out, apikeys.ID(key)) {
		t.Errorf("keys list after a restart: exit %d\n%s%s", code, out, errOut)
	}
}
