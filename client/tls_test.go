package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/client"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// into dir, and returns their paths and the certificate's PEM.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, certPEM []byte) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	testenv.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ledgerd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	testenv.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	testenv.NoError(t, err)
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testenv.NoError(t, os.WriteFile(certFile, certPEM, 0o600))
	testenv.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile, certPEM
}

// TestTLS: against a ledgerd speaking TLS, WithCAFile and WithTLS connect
// and send the key; plaintext does not connect; a CA file without a
// certificate is refused by Dial.
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, certPEM := selfSigned(t, dir)
	key, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	l := startLedgerdOn(t, testenv.MigratedPostgresURL(t), "127.0.0.1:0", key, func(c *daemon.Config) {
		c.TLSCert, c.TLSKey = certFile, keyFile
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	once := client.WithRetry(client.RetryPolicy{MaxAttempts: 1})

	for _, tc := range []struct {
		name string
		opt  client.Option
		want codes.Code
	}{
		{"CA file", client.WithCAFile(certFile), codes.OK},
		{"TLS config", client.WithTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), codes.OK},
		{"plaintext", client.WithInsecure(), codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.Dial(context.Background(), l.m.GRPCAddr(), tc.opt, once, client.WithAPIKey(key))
			testenv.NoError(t, err)
			defer c.Close()
			_, err = c.ListLedgers(ctx(t), &ledgerv1.ListLedgersRequest{})
			if status.Code(err) != tc.want {
				t.Errorf("ListLedgers: %v, want %s", err, tc.want)
			}
		})
	}

	notPEM := filepath.Join(dir, "not.pem")
	testenv.NoError(t, os.WriteFile(notPEM, []byte("no certificate here"), 0o600))
	if _, err := client.Dial(context.Background(), l.m.GRPCAddr(), client.WithCAFile(notPEM)); !errors.Is(err, client.ErrInvalidOption) {
		t.Errorf("Dial with a CA file holding no certificate: %v, want ErrInvalidOption", err)
	}
}
