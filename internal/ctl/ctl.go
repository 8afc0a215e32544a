// Package ctl is ledgerctl: a command line client of a running ledgerd,
// built on cobra (per-command help, suggestions, completion).
package ctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/grpcapi"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// callTimeout bounds one call to ledgerd.
const callTimeout = 30 * time.Second

// Run runs ledgerctl with args (without the program name) and returns the
// exit code: 0 every item CREATED or EXISTS; 1 an item was refused or a
// call failed; 2 a usage error.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &client{globals: globals{keyFile: filepath.Join(or(getenv("LEDGER_DATA_DIR"), "var"), adminKeyFile)},
		out: stdout, errOut: stderr, getenv: getenv}
	root := c.newRoot()
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Never nil: cobra reads os.Args when no arguments were set.
	root.SetArgs(append([]string{}, args...))
	cmd, err := root.ExecuteContextC(ctx)
	if c.conn != nil {
		_ = c.conn.Close() // Nothing is left to flush: every call has returned.
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "ledgerctl: %s\n\n", ue.msg)
		if cmd == nil {
			cmd = root
		}
		fmt.Fprint(stderr, cmd.UsageString())
		return 2
	default:
		fmt.Fprintln(stderr, "ledgerctl:", c.describe(err))
		return 1
	}
}

// adminKeyFile is the file ledgerd's dev mode writes its admin key to, in
// its data dir (internal/daemon.AdminKeyFile).
const adminKeyFile = "admin.key"

type globals struct {
	addr, ledger, output string
	// apiKey is sent with every call; "" reads keyFile, if there is one.
	apiKey, keyFile string
	// tls connects over TLS with the system's CAs, tlsCA with that CA.
	tls   bool
	tlsCA string
	// ledgerGiven: --ledger or LEDGER_LEDGER named the ledger (not the
	// default), which a request file's ledger must then agree with.
	ledgerGiven bool
	// trace sends a W3C traceparent with every call and prints its trace id.
	trace bool
}

// Output formats of -o.
const (
	outputTable = "table"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// register defines the global flags. Their defaults are the built-in ones:
// the environment is read after parsing (applyEnv), so that help never
// prints an API key taken from LEDGER_API_KEY.
func (g *globals) register(root *cobra.Command) {
	fs := root.PersistentFlags()
	fs.StringVar(&g.addr, "addr", "127.0.0.1:7070", "ledgerd gRPC address (env LEDGER_ADDR)")
	fs.StringVar(&g.ledger, "ledger", "default", "ledger name (env LEDGER_LEDGER)")
	fs.StringVar(&g.apiKey, "api-key", "", "API key (env LEDGER_API_KEY; default, for a ledgerd on this machine: "+
		"$LEDGER_DATA_DIR/admin.key, else ./var/admin.key, that ledgerd writes in dev mode)")
	fs.BoolVar(&g.tls, "tls", false, "connect over TLS, trusting the system's CAs")
	fs.StringVar(&g.tlsCA, "tls-ca", "", "connect over TLS, trusting the CA (PEM) in this file")
	fs.BoolVar(&g.trace, "trace", false, "trace the calls: send a W3C traceparent and print its trace id on stderr "+
		"(ledgerd -otlp-endpoint records the spans under it)")
	fs.StringVarP(&g.output, "output", "o", outputTable, "output: table, json (compact, one object a line) or yaml")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(
		[]string{outputTable, outputJSON, outputYAML}, cobra.ShellCompDirectiveNoFileComp))
}

// applyEnv fills the global flags not given on the command line from the
// environment, and checks -o. A command that defines --ledger itself (keys
// create) leaves the global one alone.
//
// Errors: usageError for an unknown -o.
func (c *client) applyEnv(cmd *cobra.Command) error {
	for _, e := range []struct {
		flag, env string
		to        *string
	}{{"addr", "LEDGER_ADDR", &c.addr}, {"ledger", "LEDGER_LEDGER", &c.ledger}, {"api-key", "LEDGER_API_KEY", &c.apiKey}} {
		f := cmd.Flags().Lookup(e.flag)
		given := f != nil && f.Changed
		if !given && c.getenv(e.env) != "" {
			*e.to = c.getenv(e.env)
			given = true
		}
		if e.flag == "ledger" {
			c.ledgerGiven = given
		}
	}
	switch c.output {
	case outputTable, outputJSON, outputYAML:
		return nil
	}
	return usageError{fmt.Sprintf("-o is table, json or yaml, not %q", c.output)}
}

type client struct {
	globals
	out io.Writer
	// errOut takes warnings and progress, which are no part of a
	// command's output.
	errOut io.Writer
	getenv func(string) string
	conn   *grpc.ClientConn // nil until connect
	cmd    ledgerv1.CommandServiceClient
	query  ledgerv1.QueryServiceClient
	audit  ledgerv1.AuditServiceClient
	mon    ledgerv1.MonitoringServiceClient
	// docs counts the documents printed, for YAML's separators.
	docs int
}

// ledgerctl's connection: what it reads at once and what ledgerd may send
// ahead of its reading, per stream and in all.
const (
	ctlReadBufferBytes   = 256 << 10
	ctlStreamWindowBytes = 4 << 20
	ctlConnWindowBytes   = 16 << 20
)

// connect makes the client of c.addr, once. It reads the key file and the
// CA, but does no network I/O: the first call dials.
//
// Errors: a malformed address; an unreadable key file or CA.
func (c *client) connect() error {
	if c.conn != nil {
		return nil
	}
	creds, err := c.transport()
	if err != nil {
		return err
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds),
		// Whatever ledgerd may send: a page of 1,000 statement lines with
		// full metadata passes gRPC's default 4 MiB.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcapi.SendMax)),
		// A replay or verify streams the log (hundreds of megabytes):
		// with gRPC's 32 KiB reads and windows grown from 64 KiB, the
		// reading and ledgerd's writing paused on flow control, about 8 %
		// of a replay's wall (docs/perf.md, "Session 20"). What may wait
		// in ledgerctl is bounded by the connection's window.
		grpc.WithReadBufferSize(ctlReadBufferBytes), grpc.WithInitialWindowSize(ctlStreamWindowBytes),
		grpc.WithInitialConnWindowSize(ctlConnWindowBytes)}
	key, err := c.key()
	if err != nil {
		return err
	}
	if key != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(apikeys.Bearer(key)))
		if !c.tls && c.tlsCA == "" && !loopback(c.addr) && c.errOut != nil {
			fmt.Fprintf(c.errOut, "ledgerctl: warning: sending the API key to %s without TLS: anyone on the way can read it (--tls or --tls-ca)\n", c.addr)
		}
	}
	if c.trace {
		tp := newTraceParent()
		opts = append(opts, tp.dialOptions()...)
		fmt.Fprintln(c.errOut, "trace", tp)
	}
	conn, err := grpc.NewClient(c.addr, opts...)
	if err != nil {
		return fmt.Errorf("address %q: %w", c.addr, err)
	}
	c.conn = conn
	c.cmd, c.query = ledgerv1.NewCommandServiceClient(conn), ledgerv1.NewQueryServiceClient(conn)
	c.mon = ledgerv1.NewMonitoringServiceClient(conn)
	c.audit = ledgerv1.NewAuditServiceClient(conn)
	return nil
}

// key is the API key to send: --api-key or LEDGER_API_KEY, else the dev
// mode's key file when it exists (so that the README's tour works as it is
// after make run), else none. The file's key goes to a ledgerd on this
// machine only: it is a local admin key, not one to hand to any server
// --addr names.
//
// Errors: a key file that exists but cannot be read.
func (c *client) key() (string, error) {
	if c.apiKey != "" {
		return c.apiKey, nil
	}
	if !loopback(c.addr) {
		return "", nil
	}
	b, err := os.ReadFile(c.keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("api key file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// loopback says whether addr (host:port) is this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// transport is TLS when --tls or --tls-ca says so, else plaintext.
//
// Errors: a CA file that cannot be read or holds no certificate.
func (c *client) transport() (credentials.TransportCredentials, error) {
	if !c.tls && c.tlsCA == "" {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: %w", c.tlsCA, errNoCertificate)
		}
	}
	return credentials.NewTLS(cfg), nil
}

// errNoCertificate means a --tls-ca file holds no PEM certificate.
var errNoCertificate = errors.New("no PEM certificate in the file")

// usageError is a mistake in the command line: exit 2, with the command's
// usage, and nothing sent.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// errRefused says an item got a result other than CREATED or EXISTS.
var errRefused = errors.New("refused")

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// describe prints a gRPC status as code and message, saying which ledgerd
// could not be reached when that is the trouble.
func (c *client) describe(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	msg := fmt.Sprintf("%s: %s", st.Code(), st.Message())
	switch {
	case st.Code() == codes.Unavailable && !c.reached():
		msg = fmt.Sprintf("ledgerd at %s is unavailable (is it running? see --addr): %s", c.addr, msg)
	case st.Code() == codes.Unavailable:
		// ledgerd answered: its reason (draining, another node writes the
		// ledger, stopping) is the message.
		msg = fmt.Sprintf("ledgerd at %s: %s", c.addr, msg)
	case st.Code() == codes.Unauthenticated:
		msg += fmt.Sprintf(" (give a key with --api-key or LEDGER_API_KEY; in dev mode ledgerd writes one to admin.key "+
			"in its data dir: %s here, or set LEDGER_DATA_DIR to ledgerd's -data-dir)", c.keyFile)
	}
	return msg
}

// reached says whether the connection to ledgerd is up: an Unavailable
// then is ledgerd's answer, not gRPC's for a server it could not reach or
// lost.
func (c *client) reached() bool {
	if c.conn == nil {
		return false
	}
	// The connection's state may lag the call that just came back (the
	// balancer updates it beside the picker the call went through): a
	// moment's wait for Ready tells, and costs only a call that failed.
	ctx, cancel := context.WithTimeout(context.Background(), reachedWait)
	defer cancel()
	for {
		state := c.conn.GetState()
		if state == connectivity.Ready {
			return true
		}
		if !c.conn.WaitForStateChange(ctx, state) {
			return false
		}
	}
}

// reachedWait bounds reached's wait for the connection's state to say Ready.
const reachedWait = 200 * time.Millisecond

// call connects and runs fn with a bounded context.
func (c *client) call(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := c.connect(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return fn(ctx)
}

// human says whether the output is the table, for a person, rather than
// JSON or YAML, for a program.
func (c *client) human() bool { return c.output == outputTable }
