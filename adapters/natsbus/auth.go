package natsbus

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
)

// Auth is how a client proves itself to an external NATS server and checks
// it: at most one of a credentials file (JWT and nkey seed), a user and
// password, or an nkey seed file; and TLS with a CA and a client
// certificate. ledgerd (-nats-*) and the Go stream consumer share it.
type Auth struct {
	CredsFile      string
	User, Password string
	NKeySeedFile   string
	// TLSCA is a PEM file of the CAs the server's certificate must chain
	// to; TLSCert and TLSKey, a PEM client certificate and its key.
	TLSCA, TLSCert, TLSKey string
}

// Kinds is how many kinds of credentials a gives (valid: 0 or 1).
func (a Auth) Kinds() int {
	n := 0
	for _, set := range []bool{a.CredsFile != "", a.User != "", a.NKeySeedFile != ""} {
		if set {
			n++
		}
	}
	return n
}

// Options are the nats.go options that carry a's credentials and TLS (at
// least TLS 1.2). The caller has checked a (one kind of credentials, both
// halves of a pair).
//
// Errors: a file that cannot be read or parsed, naming it.
func (a Auth) Options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.NKeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS nkey seed %s: %w", a.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	}
	if a.TLSCA == "" && a.TLSCert == "" {
		return opts, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if a.TLSCA != "" {
		pem, err := os.ReadFile(a.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("NATS TLS CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("NATS TLS CA %s: no PEM certificate in it", a.TLSCA)
		}
	}
	if a.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(a.TLSCert, a.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("NATS TLS certificate %s, key %s: %w", a.TLSCert, a.TLSKey, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return append(opts, nats.Secure(cfg)), nil
}
