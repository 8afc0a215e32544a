package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestExternalNATSWithCredentials runs ledgerd against an "external" NATS
// that requires TLS with a client certificate (from a throwaway CA) and a
// user: a password or an nkey. Without them ledgerd stops at start, saying
// why; with them it works end to end (the relay and the projections too).
func TestExternalNATSWithCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	user, err := nkeys.CreateUser()
	testenv.NoError(t, err)
	seed, err := user.Seed()
	testenv.NoError(t, err)
	pub, err := user.PublicKey()
	testenv.NoError(t, err)
	seedFile := filepath.Join(dir, "user.nk")
	testenv.NoError(t, os.WriteFile(seedFile, seed, 0o600))

	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "js"),
		NoSigs: true, NoLog: true, TLS: true, TLSVerify: true, TLSTimeout: 5, TLSConfig: pki.serverTLS(t),
		Users: []*server.User{{Username: "ledgerd", Password: "s3cret"}}, Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	testenv.NoError(t, err)
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	url := "nats://" + srv.Addr().String()
	tlsFiles := daemon.NATSAuth{TLSCA: pki.caFile, TLSCert: pki.certFile, TLSKey: pki.keyFile}
	withUser, withNKey, wrongPassword := tlsFiles, tlsFiles, tlsFiles
	withUser.User, withUser.Password = "ledgerd", "s3cret"
	withNKey.NKeySeedFile = seedFile
	wrongPassword.User, wrongPassword.Password = "ledgerd", "guess"

	for _, tc := range []struct {
		name    string
		url     string
		auth    daemon.NATSAuth
		refusal string // in Run's error; "" for a ledgerd that works
	}{
		{"no credentials", url, tlsFiles, "authorization violation"},
		{"wrong password", url, wrongPassword, "authorization violation"},
		{"the server's CA not trusted", url, daemon.NATSAuth{User: "ledgerd", Password: "s3cret"}, "certificate"},
		{"user and password", url, withUser, ""},
		{"credentials in the URL", "nats://ledgerd:s3cret@" + srv.Addr().String(), tlsFiles, ""},
		{"nkey", url, withNKey, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := &daemon.Main{
				Config: daemon.Config{PostgresURL: testenv.MigratedPostgresURL(t), NATSURL: tc.url, NATSAuth: tc.auth,
					GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: newKey(t)},
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			}
			err := m.Run(context.Background())
			if tc.refusal != "" {
				if err == nil {
					m.Close()
					t.Fatalf("ledgerd started, want refused with %q", tc.refusal)
				}
				if !strings.Contains(strings.ToLower(err.Error()), tc.refusal) || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("Run: %v, want %q, and no password", err, tc.refusal)
				}
				return
			}
			testenv.NoError(t, err)
			t.Cleanup(m.Close)
			h := &harness{m: m, key: m.Config.AdminKey}
			c := h.as(t, h.key)
			h.cmd, h.query = c.cmd, c.query
			ledger := testenv.Name(t)
			h.setup(t, ledger)
			pos := h.transferOK(t, ledger, transfer("t1", "alice", "bob", "10.00", "USD"))
			h.balancesAt(t, ledger, pos, map[string]string{"bob": "10.00"})
			if got := natsConnected(t, h); got != "1" {
				t.Errorf("ledger_nats_connected %s, want 1", got)
			}
		})
	}
}

// testPKI is a throwaway CA, a server certificate for 127.0.0.1 and a
// client certificate, each in a PEM file.
type testPKI struct {
	ca                        *x509.Certificate
	caKey                     *ecdsa.PrivateKey
	caFile, certFile, keyFile string
	serverPair                tls.Certificate
}

func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	testenv.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	testenv.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	testenv.NoError(t, err)
	p := &testPKI{ca: ca, caKey: caKey, caFile: filepath.Join(dir, "ca.pem")}
	writePEM(t, p.caFile, "CERTIFICATE", der)

	serverCert, serverKey := p.issue(t, 2, x509.ExtKeyUsageServerAuth)
	p.serverPair, err = tls.X509KeyPair(serverCert, serverKey)
	testenv.NoError(t, err)
	clientCert, clientKey := p.issue(t, 3, x509.ExtKeyUsageClientAuth)
	p.certFile, p.keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	testenv.NoError(t, os.WriteFile(p.certFile, clientCert, 0o600))
	testenv.NoError(t, os.WriteFile(p.keyFile, clientKey, 0o600))
	return p
}

// issue returns a certificate for 127.0.0.1 signed by the CA, and its key,
// in PEM.
func (p *testPKI) issue(t *testing.T, serial int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	testenv.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	testenv.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	testenv.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// serverTLS requires client certificates signed by the CA.
func (p *testPKI) serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	return &tls.Config{Certificates: []tls.Certificate{p.serverPair}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	testenv.NoError(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}
