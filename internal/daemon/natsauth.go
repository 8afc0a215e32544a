package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/ledgerd/ledger/adapters/natsbus"
)

// NATSAuth is how ledgerd proves itself to an external NATS (-nats-url) and
// checks the server: a credentials file (JWT and nkey seed), a user and
// password, or an nkey seed file; and TLS with a CA and a client
// certificate. Credentials inside the URL (nats://user:password@host) work
// too. The embedded server needs none: it listens in-process by default.
type NATSAuth struct {
	// CredsFile is a .creds file (a user JWT and its nkey seed).
	CredsFile string
	// User and Password; the password is read from LEDGER_NATS_PASSWORD
	// unless given as a flag (a flag's value shows in the process list).
	User, Password string
	// NKeySeedFile holds a user nkey seed (SU...).
	NKeySeedFile string
	// TLSCA is a PEM file of the CAs the server's certificate must chain
	// to; TLSCert and TLSKey, a PEM client certificate and its key.
	TLSCA, TLSCert, TLSKey string
}

// register adds NATSAuth's flags to fs, with LEDGER_* variables as defaults;
// the password is taken from the environment after parsing (secrets).
func (a *NATSAuth) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&a.CredsFile, "nats-creds", getenv("LEDGER_NATS_CREDS"), "NATS credentials file (JWT and nkey seed) for -nats-url (env LEDGER_NATS_CREDS)")
	fs.StringVar(&a.User, "nats-user", getenv("LEDGER_NATS_USER"), "NATS user for -nats-url (env LEDGER_NATS_USER); the password in env LEDGER_NATS_PASSWORD")
	fs.StringVar(&a.Password, "nats-password", "", "NATS password of -nats-user (env LEDGER_NATS_PASSWORD, preferred)")
	fs.StringVar(&a.NKeySeedFile, "nats-nkey-seed", getenv("LEDGER_NATS_NKEY_SEED"), "file holding a NATS user nkey seed for -nats-url (env LEDGER_NATS_NKEY_SEED)")
	fs.StringVar(&a.TLSCA, "nats-tls-ca", getenv("LEDGER_NATS_TLS_CA"), "PEM CA certificates the NATS server's must chain to (env LEDGER_NATS_TLS_CA)")
	fs.StringVar(&a.TLSCert, "nats-tls-cert", getenv("LEDGER_NATS_TLS_CERT"), "PEM client certificate for NATS (env LEDGER_NATS_TLS_CERT)")
	fs.StringVar(&a.TLSKey, "nats-tls-key", getenv("LEDGER_NATS_TLS_KEY"), "PEM private key of -nats-tls-cert (env LEDGER_NATS_TLS_KEY)")
}

// check refuses what cannot work: credentials without an external NATS,
// two kinds of credentials at once, half a pair.
//
// Errors: a plain error naming the flags.
func (a NATSAuth) check(natsURL string) error {
	if a == (NATSAuth{}) {
		return nil
	}
	if natsURL == "" {
		return errors.New("-nats-creds, -nats-user, -nats-nkey-seed and -nats-tls-* are for an external NATS: give -nats-url")
	}
	switch {
	case natsbus.Auth(a).Kinds() > 1:
		return errors.New("-nats-creds, -nats-user and -nats-nkey-seed: give one")
	case (a.User == "") != (a.Password == ""):
		return fmt.Errorf("-nats-user and -nats-password (LEDGER_NATS_PASSWORD): %w", errTLSPair)
	case (a.TLSCert == "") != (a.TLSKey == ""):
		return fmt.Errorf("-nats-tls-cert and -nats-tls-key: %w", errTLSPair)
	}
	return nil
}

// options are the nats.go options that carry a's credentials and TLS.
//
// Errors: a file that cannot be read or parsed, naming it.
func (a NATSAuth) options() ([]nats.Option, error) {
	opts, err := natsbus.Auth(a).Options()
	if err != nil {
		return nil, fmt.Errorf("-nats-*: %w", err)
	}
	return opts, nil
}

// natsRefusedForGood says whether err, from a first connection, is one that
// retrying cannot fix: the server refused the credentials, or TLS failed.
// ledgerd then stops with it rather than wait for NATS forever.
func natsRefusedForGood(err error) bool {
	var (
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		record  tls.RecordHeaderError
	)
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired) ||
		errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted) ||
		errors.Is(err, nats.ErrNkeysNotSupported) ||
		errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &record)
}
