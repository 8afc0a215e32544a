package ctl_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/internal/ctl"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// runTimeout bounds one ledgerctl run, so a hang fails the test instead of
// the package timing out.
const runTimeout = 30 * time.Second

// start runs ledgerd as users do, on the test's database and NATS server,
// with a fresh admin key, and returns its gRPC address and the key.
func start(t *testing.T) (addr, key string) {
	t.Helper()
	key, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	m := &daemon.Main{
		Config: daemon.Config{PostgresURL: testenv.MigratedPostgresURL(t), NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: key},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	testenv.NoError(t, m.Run(context.Background()))
	t.Cleanup(m.Close)
	return m.GRPCAddr(), key
}

// closedAddr returns a 127.0.0.1 address nothing listens on: a port the
// kernel just handed out and that was closed again.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.NoError(t, err)
	addr := lis.Addr().String()
	testenv.NoError(t, lis.Close())
	return addr
}

// result is one ledgerctl run.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "stderr:\n" + r.stderr
}

// env is the environment ledgerctl sees; keys not in it are unset.
type env map[string]string

func (e env) get(key string) string { return e[key] }

// run runs ledgerctl with args in env e.
func (e env) run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := ctl.Run(ctx, args, e.get, &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// user is a person at a terminal with --addr and --ledger in their alias, as
// in the README tour.
type user struct {
	addr, ledger string
	// key is in the environment (LEDGER_API_KEY), as a user would export it.
	key string
}

func (u user) run(t *testing.T, args ...string) result {
	t.Helper()
	return env{"LEDGER_API_KEY": u.key}.run(t, append([]string{"--addr", u.addr, "--ledger", u.ledger}, args...)...)
}

// must runs ledgerctl and fails the test unless it exits 0.
func (u user) must(t *testing.T, args ...string) result {
	t.Helper()
	r := u.run(t, args...)
	if r.code != 0 {
		t.Fatalf("ledgerctl %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// item is one line of a command's output: "CREATED  t1  position 5  detail".
type item struct {
	code, id string
	position uint64
	line     string
}

// items parses the output of a command, one item per line.
func items(t *testing.T, out string) []item {
	t.Helper()
	var got []item
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			t.Fatalf("item line %q: want CODE ID [position N] [detail]", line)
		}
		it := item{code: f[0], id: f[1], line: line}
		if len(f) >= 4 && f[2] == "position" {
			p, err := strconv.ParseUint(f[3], 10, 64)
			if err != nil {
				t.Fatalf("item line %q: position: %v", line, err)
			}
			it.position = p
		}
		got = append(got, it)
	}
	return got
}

// one parses the output of a command on a single item.
func one(t *testing.T, out string) item {
	t.Helper()
	got := items(t, out)
	if len(got) != 1 {
		t.Fatalf("output %q: %d items, want 1", out, len(got))
	}
	return got[0]
}

// balances parses the balance table: account to its row's fields (ACCOUNT
// ASSET BALANCE AVAILABLE DEBITS CREDITS PENDING-DR PENDING-CR POSITION), and
// the position of the "as of position N" line.
func balances(t *testing.T, out string) (map[string][]string, uint64) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.HasPrefix(strings.TrimSpace(lines[0]), "ACCOUNT") {
		t.Fatalf("balance output %q: want a header, rows and an \"as of\" line", out)
	}
	asOf, ok := strings.CutPrefix(lines[len(lines)-1], "as of position ")
	if !ok {
		t.Fatalf("balance output %q: last line is not \"as of position N\"", out)
	}
	pos, err := strconv.ParseUint(asOf, 10, 64)
	if err != nil {
		t.Fatalf("balance output %q: as of position: %v", out, err)
	}
	rows := map[string][]string{}
	for _, line := range lines[1 : len(lines)-1] {
		f := strings.Fields(line)
		if len(f) != 9 {
			t.Fatalf("balance row %q: %d fields, want 9", line, len(f))
		}
		rows[f[0]] = f
	}
	return rows, pos
}

// TestTour follows the README's five-minute tour.
func TestTour(t *testing.T) {
	t.Parallel()
	u := user{ledger: testenv.Name(t)}
	u.addr, u.key = start(t)

	if got := one(t, u.must(t, "asset", "define", "USD", "2").stdout); got.code != "CREATED" || got.id != "USD" || got.position == 0 {
		t.Errorf("asset define: %q, want CREATED USD at a position", got.line)
	}
	opened := items(t, u.must(t, "account", "open", "--asset", "USD", "alice", "bob").stdout)
	if len(opened) != 2 || opened[0].code != "CREATED" || opened[0].id != "alice" || opened[1].code != "CREATED" || opened[1].id != "bob" {
		t.Errorf("account open alice bob: %v, want CREATED alice, CREATED bob", opened)
	}
	if got := one(t, u.must(t, "account", "open", "--asset", "USD", "--min", "0", "carol").stdout); got.code != "CREATED" || got.id != "carol" {
		t.Errorf("account open carol: %q, want CREATED carol", got.line)
	}

	t1 := []string{"transfer", "--id", "t1", "--from", "alice", "--to", "bob", "--amount", "10.00", "--asset", "USD"}
	created := one(t, u.must(t, t1...).stdout)
	if created.code != "CREATED" || created.id != "t1" || created.position == 0 {
		t.Fatalf("transfer t1: %q, want CREATED t1 at a position", created.line)
	}
	if again := one(t, u.must(t, t1...).stdout); again.code != "EXISTS" || again.position != created.position {
		t.Errorf("transfer t1 again: %q, want EXISTS at position %d", again.line, created.position)
	}

	r := u.run(t, "transfer", "--id", "t1", "--from", "alice", "--to", "bob", "--amount", "11.00", "--asset", "USD")
	if got := one(t, r.stdout); r.code != 1 || got.code != "EXISTS_WITH_DIFFERENT_FIELDS" || !strings.Contains(got.line, "postings[0].amount") {
		t.Errorf("transfer t1 with 11.00: %s\nwant exit 1, EXISTS_WITH_DIFFERENT_FIELDS naming postings[0].amount", r)
	}
	if !strings.Contains(r.stderr, "refused") {
		t.Errorf("transfer t1 with 11.00: stderr %q, want it to say the item was refused", r.stderr)
	}

	r = u.run(t, "transfer", "--id", "t2", "--from", "carol", "--to", "bob", "--amount", "1.00", "--asset", "USD")
	if got := one(t, r.stdout); r.code != 1 || got.code != "BELOW_MIN_BALANCE" || got.id != "t2" {
		t.Errorf("carol overdraft: %s\nwant exit 1, BELOW_MIN_BALANCE t2", r)
	}

	pos := strconv.FormatUint(created.position, 10)
	rows, asOf := balances(t, u.must(t, "balance", "--min-position", pos, "alice", "bob").stdout)
	if asOf < created.position {
		t.Errorf("balance: as of position %d, asked for at least %d", asOf, created.position)
	}
	for account, want := range map[string]string{"alice": "-10.00", "bob": "10.00"} {
		row, ok := rows[account]
		if !ok {
			t.Errorf("balance: no row for %s in %v", account, rows)
			continue
		}
		if row[1] != "USD" || row[2] != want || row[3] != want {
			t.Errorf("balance %s: %v, want USD balance and available %s", account, row, want)
		}
	}
	if len(rows) != 2 {
		t.Errorf("balance alice bob: rows %v, want 2", rows)
	}

	r = u.run(t, "balance", "--min-position", pos, "alice", "nobody")
	if r.code != 1 || !strings.Contains(r.stderr, "nobody") || strings.Contains(r.stderr, "alice") {
		t.Errorf("balance of an unknown account: %s\nwant exit 1 naming nobody, not alice", r)
	}
	if rows, _ := balances(t, r.stdout); rows["alice"] == nil {
		t.Errorf("balance alice nobody: rows %v, want alice's still shown", rows)
	}
}

// TestGlobalFlagsAfterCommandWords: --addr and --ledger may follow the command
// words and its arguments, and override the environment.
func TestGlobalFlagsAfterCommandWords(t *testing.T) {
	t.Parallel()
	addr, key := start(t)
	ledger := testenv.Name(t)
	// The environment points elsewhere: only the flags reach this ledgerd.
	e := env{"LEDGER_ADDR": closedAddr(t), "LEDGER_LEDGER": "elsewhere", "LEDGER_API_KEY": key}
	must := func(args ...string) result {
		t.Helper()
		r := e.run(t, args...)
		if r.code != 0 {
			t.Fatalf("ledgerctl %s: %s", strings.Join(args, " "), r)
		}
		return r
	}
	must("asset", "define", "USD", "2", "--ledger", ledger, "--addr", addr)
	must("account", "open", "alice", "--asset", "USD", "--addr", addr, "bob", "--ledger", ledger)
	created := one(t, must("transfer", "--id", "t1", "--from", "alice", "--addr", addr, "--to", "bob",
		"--amount", "2.50", "--asset", "USD", "--ledger", ledger).stdout)
	rows, _ := balances(t, must("balance", "alice", "--ledger", ledger, "--addr", addr,
		"--min-position", strconv.FormatUint(created.position, 10), "bob").stdout)
	if rows["alice"] == nil || rows["alice"][2] != "-2.50" || rows["bob"] == nil || rows["bob"][2] != "2.50" {
		t.Errorf("balance: rows %v, want alice -2.50 and bob 2.50", rows)
	}

	// The environment alone, no flags.
	e = env{"LEDGER_ADDR": addr, "LEDGER_LEDGER": ledger, "LEDGER_API_KEY": key}
	if rows, _ := balances(t, must("balance", "alice").stdout); rows["alice"] == nil || rows["alice"][2] != "-2.50" {
		t.Errorf("balance from the environment: rows %v, want alice -2.50", rows)
	}
}

// TestUsageErrors exit 2 with the usage and never call ledgerd.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	// Were a call made, it would fail with exit 1, not 2.
	e := env{"LEDGER_ADDR": closedAddr(t)}
	cases := []struct {
		name string
		args []string
		says string // in stderr, besides the usage
	}{
		{"no command", nil, ""},
		{"only global flags", []string{"--ledger", "demo"}, ""},
		{"unknown command", []string{"frobnicate", "USD"}, `unknown command "frobnicate USD"`},
		{"half a command", []string{"asset"}, `unknown command "asset"`},
		{"unknown global flag", []string{"--adr", "x", "balance", "alice"}, "-adr"},
		{"unknown command flag", []string{"balance", "--nope", "alice"}, "-nope"},
		{"transfer without --amount", []string{"transfer", "--id", "t1", "--from", "alice", "--to", "bob", "--asset", "USD"}, "--amount"},
		{"transfer with an argument", []string{"transfer", "--id", "t1", "--from", "alice", "--to", "bob", "--amount", "1", "--asset", "USD", "extra"}, "transfer takes"},
		{"asset define non-numeric scale", []string{"asset", "define", "USD", "two"}, "SCALE"},
		{"asset define negative scale", []string{"asset", "define", "USD", "-1"}, ""},
		{"asset define without scale", []string{"asset", "define", "USD"}, "CODE SCALE"},
		{"account open without --asset", []string{"account", "open", "alice"}, "--asset"},
		{"account open bad --normal", []string{"account", "open", "--asset", "USD", "--normal", "sideways", "alice"}, "--normal"},
		{"balance without accounts", []string{"balance", "--min-position", "3"}, "ACCOUNT"},
		{"balance non-numeric position", []string{"balance", "--min-position", "soon", "alice"}, "min-position"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := e.run(t, c.args...)
			if r.code != 2 || !strings.Contains(r.stderr, "Usage:") || !strings.Contains(r.stderr, c.says) || r.stdout != "" {
				t.Errorf("ledgerctl %q: %s\nwant exit 2, usage on stderr saying %q, nothing on stdout", c.args, r, c.says)
			}
		})
	}
}

// TestHelp prints the usage on stdout and exits 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"--help"}, {"balance", "--help"}, {"transfer", "-h"}} {
		r := env{"LEDGER_ADDR": closedAddr(t)}.run(t, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || r.stderr != "" {
			t.Errorf("ledgerctl %q: %s\nwant exit 0 and the usage on stdout", args, r)
		}
	}
}

// TestUnreachableAddr fails fast, naming the address.
func TestUnreachableAddr(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	for _, args := range [][]string{
		{"balance", "alice"},
		{"asset", "define", "USD", "2"},
		{"transfer", "--id", "t1", "--from", "alice", "--to", "bob", "--amount", "1.00", "--asset", "USD"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var stdout, stderr bytes.Buffer
		code := ctl.Run(ctx, append([]string{"--addr", addr, "--ledger", "demo"}, args...), env{}.get, &stdout, &stderr)
		expired := ctx.Err() != nil
		cancel()
		r := result{code: code, stdout: stdout.String(), stderr: stderr.String()}
		if r.code != 1 || !strings.Contains(r.stderr, addr) || !strings.Contains(r.stderr, "unavailable") || r.stdout != "" {
			t.Errorf("ledgerctl %q at a closed port: %s\nwant exit 1 and a message naming %s as unavailable", args, r, addr)
		}
		if expired {
			t.Errorf("ledgerctl %q at a closed port waited out its context instead of failing fast", args)
		}
	}
}

// TestWarnsOfAKeyInClear: a key sent to an address off this machine without
// TLS is warned about; on loopback, or with TLS asked for, it is not.
func TestWarnsOfAKeyInClear(t *testing.T) {
	t.Parallel()
	var remote string
	addrs, err := net.InterfaceAddrs()
	testenv.NoError(t, err)
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			remote = ipn.IP.String()
			break
		}
	}
	if remote == "" {
		t.Skip("no non-loopback IPv4 address on this machine")
	}
	// A closed port of this machine's own address: refused at once.
	_, port, err := net.SplitHostPort(closedAddr(t))
	testenv.NoError(t, err)
	const warning = "without TLS"
	for _, tc := range []struct {
		addr string
		args []string
		warn bool
	}{
		{net.JoinHostPort(remote, port), nil, true},
		{closedAddr(t), nil, false},
	} {
		r := env{"LEDGER_ADDR": tc.addr, "LEDGER_API_KEY": "lk_0123456789ab_" + strings.Repeat("a", 52)}.run(t, append(tc.args, "trial-balance")...)
		if got := strings.Contains(r.stderr, warning); got != tc.warn {
			t.Errorf("%s: warned %v, want %v\n%s", tc.addr, got, tc.warn, r)
		}
	}
}
