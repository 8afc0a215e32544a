// Package ctl is ledgerctl: a command line client of a running ledgerd.
package ctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/grpcapi"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// callTimeout bounds one call to ledgerd.
const callTimeout = 30 * time.Second

const usage = `ledgerctl: a client of ledgerd

Usage:
  ledgerctl asset define CODE SCALE
  ledgerctl account open --asset CODE [--normal credit|debit] [--min X] [--max X] ID...
  ledgerctl account bounds [--min X] [--max X] ID...      (an omitted bound is removed)
  ledgerctl account close ID...
  ledgerctl transfer --id ID --from ACCOUNT --to ACCOUNT --amount X --asset CODE
                     [--reference R] [--effective-at RFC3339] [--pending [--timeout SECONDS]]
  ledgerctl post --id ID --pending-id ID [--amount X]...  (one --amount per posting; none: all)
  ledgerctl void --id ID --pending-id ID
  ledgerctl reverse --id ID --transfer-id ID [--amount X]...
  ledgerctl balance [--min-position P] [--as-of P] [--strong] ACCOUNT...
  ledgerctl statement [--from P] [--to P] [--limit N] [--pending] [--all] [--min-position P] ACCOUNT
  ledgerctl transfers get ID...
  ledgerctl transfers list [--account A] [--reference R] [--status S] [--limit N] [--all]
  ledgerctl trial-balance [--as-of P]
  ledgerctl projections status
  ledgerctl projections rebuild NAME                      (balances, movements, transfers, reconciliation)
  ledgerctl audit verify [--from P] [--to P] [--in FILE]  (exit 0: the log and the projections agree)
  ledgerctl audit replay --at POSITION|TIME [--in FILE]   (balances and trial balance from the log alone)
  ledgerctl log export [--from P] [--to P] [--out FILE]   (JSON Lines, one event with its hashes per line)
  ledgerctl log import --in FILE                          (into a new, empty ledger: --ledger)
  ledgerctl reconcile import --account A --source S [--format csv|json] [--map FIELD=COLUMN]...
                     [--delimiter ,] [--date-layout 2006-01-02] [--decimal-comma] [--thousands] FILE
                                                          (the whole file is checked first: a fault refuses it,
                                                           with its line, before anything is sent; then chunks of
                                                           8,192 lines, each atomic; a refused chunk stops the
                                                           import, the chunks before it stay in, and a re-run
                                                           answers them EXISTS)
  ledgerctl reconcile rules --account A RULE...           (reference, amount_date:window=2,tolerance=0.05,
                                                           split:window=2,group=4; in order, first match wins)
  ledgerctl reconcile match --account A --id ID --line SOURCE/EXTID... --movement TRANSFER_ID[#POSTING]...
                     --reason R
  ledgerctl reconcile unmatch --account A (--line SOURCE/EXTID | --movement TRANSFER_ID[#POSTING]) --reason R
  ledgerctl reconcile report --account A [--from DATE] [--to DATE] [--all] [--matches] [--min-position P]
  ledgerctl journal [--asset CODE] [--from DATE] [--to DATE] [--min-position P]
                                                          (postings and sums per asset and day; totals tie to
                                                           the trial balance)
  ledgerctl keys create --role R [--role R]... [--ledger L]... [--description D]
                                                          (roles: writer, reader, auditor, admin;
                                                           no --ledger: every ledger; the key is shown once)
  ledgerctl keys list [--all]                             (--all: revoked keys too)
  ledgerctl keys revoke ID
  ledgerctl ledger create [NAME]                          (an admin act; an existing ledger: EXISTS; no NAME: --ledger)
  ledgerctl ledger archive [NAME]                         (read-only from now on: commands refused, reads go on)
  ledgerctl ledger unarchive [NAME]
  ledgerctl ledger status [NAME]                          (active, importing or archived, and the head)
  ledgerctl ledger list

Global flags (before the command, or after it):
  --addr    ledgerd gRPC address (env LEDGER_ADDR, default 127.0.0.1:7070)
  --ledger  ledger name (env LEDGER_LEDGER, default "default")
  --api-key API key (env LEDGER_API_KEY; default, for a ledgerd on this machine: the file
            $LEDGER_DATA_DIR/admin.key, else ./var/admin.key, that ledgerd writes in dev mode)
  --tls     connect over TLS, trusting the system's CAs
  --tls-ca  connect over TLS, trusting the CA (PEM) in this file
  -o        output: table (default) or json (read commands)

Exit codes: 0 every item CREATED or EXISTS; 1 an item was refused or a call
failed; 2 a usage error.
`

// Run runs ledgerctl with args (without the program name) and returns the exit code.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	g := globals{addr: or(getenv("LEDGER_ADDR"), "127.0.0.1:7070"), ledger: or(getenv("LEDGER_LEDGER"), "default"),
		apiKey: getenv("LEDGER_API_KEY"), keyFile: filepath.Join(or(getenv("LEDGER_DATA_DIR"), "var"), adminKeyFile)}
	fs := flag.NewFlagSet("ledgerctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "ledgerctl: %v\n\n%s", err, usage)
		return 2
	case fs.NArg() == 0:
		fmt.Fprint(stderr, usage)
		return 2
	}
	rest := fs.Args()
	type command struct {
		words []string
		run   func(ctx context.Context, c *client, args []string) error
	}
	cmds := []command{
		{[]string{"asset", "define"}, assetDefine},
		{[]string{"account", "open"}, accountOpen},
		{[]string{"account", "bounds"}, accountBounds},
		{[]string{"account", "close"}, accountClose},
		{[]string{"transfers", "get"}, transfersGet},
		{[]string{"transfers", "list"}, transfersList},
		{[]string{"transfer"}, transfer},
		{[]string{"post"}, post},
		{[]string{"void"}, void},
		{[]string{"reverse"}, reverse},
		{[]string{"balance"}, balance},
		{[]string{"statement"}, statement},
		{[]string{"trial-balance"}, trialBalance},
		{[]string{"projections", "status"}, projectionsStatus},
		{[]string{"projections", "rebuild"}, projectionsRebuild},
		{[]string{"audit", "verify"}, auditVerify},
		{[]string{"audit", "replay"}, auditReplay},
		{[]string{"log", "export"}, logExport},
		{[]string{"log", "import"}, logImport},
		{[]string{"reconcile", "import"}, reconcileImport},
		{[]string{"reconcile", "rules"}, reconcileRules},
		{[]string{"reconcile", "match"}, reconcileMatch},
		{[]string{"reconcile", "unmatch"}, reconcileUnmatch},
		{[]string{"reconcile", "report"}, reconcileReport},
		{[]string{"journal"}, journal},
		{[]string{"keys", "create"}, keysCreate},
		{[]string{"keys", "list"}, keysList},
		{[]string{"keys", "revoke"}, keysRevoke},
		{[]string{"ledger", "create"}, ledgerCreate},
		{[]string{"ledger", "archive"}, ledgerArchive},
		{[]string{"ledger", "unarchive"}, ledgerUnarchive},
		{[]string{"ledger", "status"}, ledgerStatus},
		{[]string{"ledger", "list"}, ledgerList},
	}
	for _, cmd := range cmds {
		if len(rest) < len(cmd.words) || strings.Join(rest[:len(cmd.words)], " ") != strings.Join(cmd.words, " ") {
			continue
		}
		c := &client{globals: g, out: stdout, errOut: stderr}
		err := cmd.run(ctx, c, rest[len(cmd.words):])
		if c.conn != nil {
			_ = c.conn.Close() // Nothing is left to flush: every call has returned.
		}
		var ue usageError
		switch {
		case errors.Is(err, flag.ErrHelp):
			fmt.Fprint(stdout, usage)
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "ledgerctl: %s\n\n%s", ue.msg, usage)
			return 2
		case err != nil:
			fmt.Fprintln(stderr, "ledgerctl:", c.describe(err))
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "ledgerctl: unknown command %q\n\n%s", strings.Join(rest, " "), usage)
	return 2
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
}

// register lets global flags also follow the command words.
func (g *globals) register(fs *flag.FlagSet) {
	g.registerBut(fs, "")
}

// registerBut registers the global flags but one, which a command defines
// for itself (keys create's --ledger scopes the key).
func (g *globals) registerBut(fs *flag.FlagSet, own string) {
	fs.StringVar(&g.addr, "addr", g.addr, "ledgerd gRPC address")
	if own != "ledger" {
		fs.StringVar(&g.ledger, "ledger", g.ledger, "ledger name")
	}
	fs.StringVar(&g.output, "o", or(g.output, "table"), "output: table or json")
	fs.StringVar(&g.apiKey, "api-key", g.apiKey, "API key")
	fs.BoolVar(&g.tls, "tls", g.tls, "connect over TLS")
	fs.StringVar(&g.tlsCA, "tls-ca", g.tlsCA, "connect over TLS trusting this CA (PEM file)")
}

type client struct {
	globals
	out io.Writer
	// errOut takes warnings, which are no part of a command's output.
	errOut io.Writer
	conn   *grpc.ClientConn // nil until connect
	cmd    ledgerv1.CommandServiceClient
	query  ledgerv1.QueryServiceClient
	audit  ledgerv1.AuditServiceClient
}

// connect makes the client of c.addr. Commands call it after parsing their
// flags, because --addr may follow the command words. It reads the key file
// and the CA, but does no network I/O: the first call dials.
//
// Errors: a malformed address; an unreadable key file or CA.
func (c *client) connect() error {
	creds, err := c.transport()
	if err != nil {
		return err
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds),
		// Whatever ledgerd may send: a page of 1,000 statement lines with
		// full metadata passes gRPC's default 4 MiB.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcapi.SendMax))}
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
	conn, err := grpc.NewClient(c.addr, opts...)
	if err != nil {
		return fmt.Errorf("address %q: %w", c.addr, err)
	}
	c.conn = conn
	c.cmd, c.query = ledgerv1.NewCommandServiceClient(conn), ledgerv1.NewQueryServiceClient(conn)
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
	switch st.Code() {
	case codes.Unavailable:
		msg = fmt.Sprintf("ledgerd at %s is unavailable (is it running? see --addr): %s", c.addr, msg)
	case codes.Unauthenticated:
		msg += fmt.Sprintf(" (give a key with --api-key or LEDGER_API_KEY; in dev mode ledgerd writes one to %s)", c.keyFile)
	}
	return msg
}

// parse parses a subcommand's flags, which may be mixed with its arguments.
func (c *client) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	return c.parseBut(fs, args, "")
}

// parseBut is parse for a command that defines the global flag own itself.
func (c *client) parseBut(fs *flag.FlagSet, args []string, own string) ([]string, error) {
	fs.SetOutput(io.Discard)
	c.registerBut(fs, own)
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		if err != nil {
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// call connects and runs fn with a bounded context.
func (c *client) call(ctx context.Context, fn func(ctx context.Context) error) error {
	if c.output != "table" && c.output != "json" {
		return usageError{"-o is table or json"}
	}
	if err := c.connect(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return fn(ctx)
}

// printJSON prints a response as protojson, for -o json.
func (c *client) printJSON(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.out, string(b))
	return err
}

// printResults prints one line per item and fails if any was refused.
func (c *client) printResults(results []*ledgerv1.ItemResult) error {
	refused := 0
	for _, r := range results {
		code := strings.TrimPrefix(r.GetCode().String(), "RESULT_CODE_")
		line := fmt.Sprintf("%-12s %s", code, r.GetId())
		if r.GetPosition() > 0 {
			line += fmt.Sprintf("  position %d", r.GetPosition())
		}
		if r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED && r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_EXISTS {
			refused++
			if r.GetDetail() != "" {
				line += "  " + r.GetDetail()
			}
		}
		fmt.Fprintln(c.out, line)
	}
	if refused > 0 {
		return fmt.Errorf("%d of %d items: %w", refused, len(results), errRefused)
	}
	return nil
}
