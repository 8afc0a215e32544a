package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/grpcapi"
)

// AdminKeyFile is where dev mode writes the admin key it generates, under
// the data dir; ledgerctl reads ./var/admin.key when given no key.
const AdminKeyFile = "admin.key"

// ErrNoAPIKey means auth is on, ledgerd is not in dev mode, no key is given
// and none exists: nobody could ever call it.
var ErrNoAPIKey = errors.New("auth is on and no api key exists: start once with -admin-key " +
	"(env LEDGER_ADMIN_KEY), e.g. lk_$(openssl rand -hex 6)_$(openssl rand -hex 32), or with -auth=false to run without keys")

// errNotOwnCertificate means the gateway's loopback peer is not this ledgerd.
var errNotOwnCertificate = errors.New("the gRPC listener presented another certificate than ledgerd's own")

// devMode is the embedded default: ledgerd alone on a developer's machine.
func (m *Main) devMode() bool { return m.Config.PostgresURL == "" && m.Config.NATSURL == "" }

// bootstrapKeys makes sure someone can call ledgerd: the -admin-key, or in
// dev mode a generated admin key, or at least one key in the store.
//
// Errors: a bad or revoked -admin-key; ErrNoAPIKey; a database error.
func (m *Main) bootstrapKeys(ctx context.Context) error {
	if m.Config.AuthDisabled {
		m.Logger.Warn("AUTH IS OFF (-auth=false / LEDGER_AUTH=off): anyone who reaches the gRPC or HTTP port may " +
			"read and write every ledger, import logs and manage keys")
	}
	if text := m.Config.AdminKey; text != "" {
		k, created, err := m.keys.Ensure(ctx, text, "bootstrap admin key (-admin-key)")
		if err != nil {
			return fmt.Errorf("-admin-key (LEDGER_ADMIN_KEY): %w", err)
		}
		m.Logger.Info("admin key from -admin-key", "id", k.ID, "created", created)
		return nil
	}
	if m.Config.AuthDisabled {
		return nil
	}
	if m.devMode() {
		return m.devAdminKey(ctx)
	}
	n, err := m.keys.Count(ctx, "")
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNoAPIKey
	}
	return nil
}

// devAdminKey generates an admin key when none exists, writes it to
// <data-dir>/admin.key (0600: it is the key to everything) for the local
// ledgerctl, and prints it once. The file is written before the key is
// stored, so that a stored key is never one nobody has.
//
// Errors: writing the file; a database error.
func (m *Main) devAdminKey(ctx context.Context) error {
	n, err := m.keys.Count(ctx, apikeys.RoleAdmin)
	if err != nil || n > 0 {
		return err
	}
	text, err := apikeys.Generate(nil)
	if err != nil {
		return err
	}
	path := filepath.Join(m.Config.DataDir, AdminKeyFile)
	if err := writePrivate(path, []byte(text+"\n")); err != nil {
		return fmt.Errorf("write the admin key: %w", err)
	}
	if _, _, err := m.keys.Ensure(ctx, text, "dev mode admin key ("+path+")"); err != nil {
		return err
	}
	m.adminKeyPath = path
	fmt.Fprintf(m.stderr(), "\nledgerd: dev mode: generated an admin API key (stored hashed; also in %s, mode 0600):\n\n    %s\n\n"+
		"ledgerctl run from this directory reads it; elsewhere: export LEDGER_API_KEY=%s\n\n", path, text, text)
	return nil
}

// writePrivate writes a file readable by its owner only, replacing any
// other at path atomically (so an older file's looser mode does not stay).
func writePrivate(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".admin.key-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) //nolint:errcheck // gone after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	// On disk before the key's hash is stored: after a crash the stored key
	// must not be one nobody has.
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// serverTLS loads -tls-cert and -tls-key; nil when TLS is off.
//
// Errors: the files', wrapped.
func (m *Main) serverTLS() (*tls.Config, error) {
	if m.Config.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(m.Config.TLSCert, m.Config.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// grpcOptions are the gRPC server's interceptors (metrics, auth, bounds)
// and TLS options.
func (m *Main) grpcOptions(tlsCfg *tls.Config, budget *grpcapi.RecvBudget) []grpc.ServerOption {
	unary := []grpc.UnaryServerInterceptor{budget.UnaryInterceptor, m.metrics.unaryInterceptor}
	stream := []grpc.StreamServerInterceptor{budget.StreamInterceptor, m.metrics.streamInterceptor}
	if m.auth != nil {
		unary = append(unary, m.auth.UnaryInterceptor)
		stream = append(stream, m.auth.StreamInterceptor)
	}
	gateUnary, gateStream := roleGate(m.roles)
	unary = append(unary, gateUnary, grpcapi.RecvSizeUnaryInterceptor, grpcapi.NewDryRunLimit().UnaryInterceptor)
	stream = append(stream, gateStream)
	stream = append(stream, grpcapi.RecvSizeStreamInterceptor, grpcapi.NewReadEventsLimit().StreamInterceptor,
		grpcapi.NewStatementLinesLimit().StreamInterceptor)
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg.Clone())))
	}
	return opts
}

// gatewayDialOptions let the REST gateway reach the gRPC listener over TLS.
// The listener's certificate is usually made out to a public name, not to
// the loopback address the gateway dials; so instead of checking the name
// the gateway pins the certificate itself: the peer must present exactly
// ledgerd's own.
func gatewayDialOptions(tlsCfg *tls.Config) []grpc.DialOption {
	if tlsCfg == nil {
		return nil
	}
	own := tlsCfg.Certificates[0].Certificate[0]
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], own) {
				return errNotOwnCertificate
			}
			return nil
		},
	}))}
}

func (m *Main) stderr() io.Writer {
	if m.Err == nil {
		return os.Stderr
	}
	return m.Err
}

// authBanner is the banner's line about keys and TLS.
func (m *Main) authBanner() string {
	var s string
	switch {
	case m.Config.AuthDisabled:
		s = "  auth  OFF: every call is allowed\n"
	case m.adminKeyPath != "":
		s = "  auth  API keys; the admin key printed above is in " + m.adminKeyPath + "\n"
	case m.devMode():
		s = "  auth  API keys; the dev admin key is in " + filepath.Join(m.Config.DataDir, AdminKeyFile) + " (if it was kept)\n"
	default:
		s = "  auth  API keys (authorization: Bearer <key>)\n"
	}
	if m.Config.TLSCert != "" {
		s += "  TLS   on, gRPC and HTTP (ledgerctl --tls-ca FILE)\n"
	}
	return s
}
