package consumer

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ledgerd/ledger/adapters/natsbus"
)

// NATSOptions is how a consumer connects to the NATS ledgerd publishes on:
// its URL (credentials inside it work too: nats://user:password@host), one
// kind of credentials, and TLS, as ledgerd's own -nats-* flags.
type NATSOptions struct {
	// URL is a server, or a comma-separated list of a cluster's.
	URL string
	// CredsFile is a .creds file (a user JWT and its nkey seed).
	CredsFile string
	// User and Password.
	User, Password string
	// NKeySeedFile holds a user nkey seed (SU...).
	NKeySeedFile string
	// TLSCA is a PEM file of the CAs the server's certificate must chain
	// to; TLSCert and TLSKey, a PEM client certificate and its key.
	TLSCA, TLSCert, TLSKey string
	// Name is the connection's name on the server; "" is "ledger-consumer".
	Name string
}

// natsReconnectWait is the pause between attempts to reach NATS again.
const natsReconnectWait = 250 * time.Millisecond

// Connect connects to NATS with o, reconnecting forever once connected (a
// running consumer's ordered consumer resumes by itself).
//
// Errors: a missing URL, more than one kind of credentials, half a pair, a
// file that cannot be read; nats.go's connection error.
func (o NATSOptions) Connect() (*nats.Conn, error) {
	opts, err := o.options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("consumer: connect to NATS: %w", err)
	}
	return nc, nil
}

func (o NATSOptions) options() ([]nats.Option, error) {
	auth := natsbus.Auth{CredsFile: o.CredsFile, User: o.User, Password: o.Password, NKeySeedFile: o.NKeySeedFile,
		TLSCA: o.TLSCA, TLSCert: o.TLSCert, TLSKey: o.TLSKey}
	switch {
	case o.URL == "":
		return nil, errors.New("consumer: NATS URL: empty")
	case auth.Kinds() > 1:
		return nil, errors.New("consumer: NATS CredsFile, User and NKeySeedFile: give one")
	case (o.TLSCert == "") != (o.TLSKey == ""):
		return nil, errors.New("consumer: NATS TLSCert and TLSKey: give both or neither")
	}
	name := o.Name
	if name == "" {
		name = "ledger-consumer"
	}
	opts, err := auth.Options()
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	return append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(natsReconnectWait)}, opts...), nil
}
