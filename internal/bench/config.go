// Package bench is ledgerbench: a load generator that drives a running ledgerd
// over gRPC, measures the latency of its commands (and of queries sent while
// it writes, and the projections' lag meanwhile), and then verifies from the
// projections that every acknowledged transfer is present exactly once.
package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerd/ledger/domain"
)

// Limits of a run. Each bounds memory or a request: latencies are kept one
// per call, and the server refuses more items per request.
const (
	// TransfersMax bounds -transfers and -warmup; at -batch 1 the latencies
	// alone take 8 bytes per transfer.
	TransfersMax = 100_000_000
	// RateMax bounds -rate (transfers a second).
	RateMax = 10_000_000
	// AccountsMin is two: a transfer needs two distinct accounts.
	AccountsMin = 2
	// AccountsMax bounds -accounts; verification reads them all back.
	AccountsMax = 10_000_000
	// ConcurrencyMax bounds -concurrency (one goroutine each).
	ConcurrencyMax = 4096
	// BatchMax is the server's limit of items per command request.
	BatchMax = 8192
	// ReadersMax bounds -readers (one goroutine each, eight to a connection).
	ReadersMax = 512
	// LagEveryMin and LagEveryMax bound -lag-every when it is not 0: each
	// sample is one query, and a sample a minute says little about a run.
	LagEveryMin = time.Millisecond
	LagEveryMax = time.Minute
	// BaselineTransfersDefaultMax caps -baseline-transfers' default: the
	// naive ledger runs near 2k/s here, so 30,000 take about 15 s.
	BaselineTransfersDefaultMax = 30_000
	// CatchUpWaitDefault bounds the wait for the projections to reach the
	// last acknowledged position; CatchUpWaitMax bounds -catch-up-wait (a
	// 10M-transfer run may leave minutes of backlog).
	CatchUpWaitDefault = 120 * time.Second
	CatchUpWaitMax     = 24 * time.Hour
	// PIDMax is Linux's highest pid_max.
	PIDMax = 1 << 22
	// DurationMax bounds -duration.
	DurationMax = 24 * time.Hour
	// WebhookStallMax bounds -webhook-stall; WebhookWaitDefault and
	// WebhookWaitMax the wait for the receiver to have every delivery after
	// the load (the dispatcher sends at most 50 a second to one endpoint,
	// so a backlog of 30,000 takes ten minutes).
	WebhookStallMax    = time.Hour
	WebhookWaitDefault = 10 * time.Minute
	WebhookWaitMax     = 24 * time.Hour
)

// The values of -read-kind.
const (
	ReadKindBalances  = "balances"
	ReadKindStatement = "statement"
	// ReadKindBoth gives half the readers each kind, GetBalances the odd one.
	ReadKindBoth = "both"
	// ReadKindHealth asks the gRPC health service, which reads nothing: the
	// latency of a call itself on the loaded box, the floor under the others.
	ReadKindHealth = "health"
	// ReadKindAll gives a third of the readers each of balances, statement
	// and health, in that order: the floor measured beside the queries.
	ReadKindAll = "all"
)

// ErrInvalidConfig means a flag is out of its range.
var ErrInvalidConfig = errors.New("invalid config")

// Config is one run of the bench.
type Config struct {
	Addr   string `json:"addr"`
	Ledger string `json:"ledger"`
	// APIKey is sent with every call; never in the report.
	APIKey string `json:"-"`
	// Transfers is how many transfers the measured phase sends.
	Transfers int `json:"transfers"`
	Accounts  int `json:"accounts"`
	// Concurrency is the number of workers, each with one call in flight.
	Concurrency int `json:"concurrency"`
	// Batch is the number of transfers per CreateTransfers call.
	Batch int `json:"batch"`
	// AutoBatch sends each worker's single transfer (Batch 1) through the
	// Go client's CreateTransfer, which coalesces the workers' transfers
	// into batches (package client).
	AutoBatch bool `json:"auto_batch,omitempty"`
	// Rate, when not 0, paces the workers together to this many transfers
	// a second (each call waits for its turn): reads and lag measured under
	// a given write rate rather than under as many writes as the box takes.
	Rate int `json:"rate,omitempty"`
	// Hot makes every transfer touch acc-0, the hot-account workload.
	Hot  bool   `json:"hot"`
	Seed uint64 `json:"seed"`
	// Warmup is how many transfers are sent, unmeasured, before the measured
	// phase. They are verified like the others.
	Warmup int `json:"warmup"`
	// Readers query the ledger in a tight loop while the measured phase
	// writes, each on one of its own connections; 0: no reads.
	Readers int `json:"readers"`
	// ReadKind is what the readers ask: ReadKindBalances, ReadKindStatement
	// or ReadKindBoth.
	ReadKind string `json:"read_kind"`
	// ReadRate, when not 0, paces the readers together to this many calls a
	// second: their latency under the write load, where readers in a tight
	// loop measure how many reads the box takes (and, on a box they
	// saturate, queueing more than reading).
	ReadRate int `json:"read_rate,omitempty"`
	// LagEvery is how often the projections' lag is sampled while the
	// measured phase writes; 0: never.
	LagEvery time.Duration `json:"lag_every_ns"`
	// Duration, when not 0, ends the measured phase after this long, even
	// if some of Transfers are left (without -transfers they default to
	// TransfersMax: the duration decides).
	Duration time.Duration `json:"duration_ns,omitempty"`
	// WebhookStall, when not 0, measures webhooks (webhook.go): a local
	// receiver subscribed to the ledger refuses (503, then hangs) for this
	// long from the start of the measured phase, then accepts.
	WebhookStall time.Duration `json:"webhook_stall_ns,omitempty"`
	// WebhookAccounts is the subscription's account pattern ("": every
	// event of the ledger).
	WebhookAccounts string `json:"webhook_accounts,omitempty"`
	// WebhookWait bounds the wait, after the load, for every delivery.
	WebhookWait time.Duration `json:"webhook_wait_ns,omitempty"`
	// CatchUpWait bounds the wait for the projections after setup and after
	// the measured phase.
	CatchUpWait time.Duration `json:"catch_up_wait_ns"`
	JSON        bool          `json:"-"`
	// JSONOut, when set, is a file the JSON report is written to as well.
	JSONOut string `json:"-"`

	// LedgerdPID, PostgresPID and NATSPID name the processes whose CPU
	// time is measured from /proc (0: not measured). PostgresPID is the
	// postmaster's.
	LedgerdPID  int `json:"ledgerd_pid,omitempty"`
	PostgresPID int `json:"postgres_pid,omitempty"`
	NATSPID     int `json:"nats_pid,omitempty"`

	// BaselinePostgresURL, when set, is the database of the naive row-lock
	// ledger run after the ledger's (naive.go); never in the report: it
	// may hold a password.
	BaselinePostgresURL string `json:"-"`
	// BaselineTransfers is how many transfers the naive ledger runs.
	BaselineTransfers int `json:"baseline_transfers,omitempty"`

	// CommandLine is how the bench was started, quoted for a shell.
	CommandLine string `json:"-"`
	// Progress receives progress lines while the bench runs; nil discards them.
	Progress io.Writer `json:"-"`
	// Now is the clock; nil means time.Now.
	Now func() time.Time `json:"-"`
}

// ParseFlags reads args (without the program name) over the environment
// (getenv, e.g. os.Getenv). now names the default ledger, so that every run
// writes a fresh one.
//
// Errors: flag.ErrHelp; a flag error (usage is written to out); ErrInvalidConfig.
func ParseFlags(args []string, getenv func(string) string, now time.Time, out io.Writer) (Config, error) {
	addr := getenv("LEDGER_ADDR")
	if addr == "" {
		addr = "127.0.0.1:7070"
	}
	var c Config
	fs := flag.NewFlagSet("ledgerbench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Addr, "addr", addr, "ledgerd gRPC address (env LEDGER_ADDR)")
	fs.StringVar(&c.APIKey, "api-key", getenv("LEDGER_API_KEY"), "API key with the writer and reader roles (env LEDGER_API_KEY)")
	fs.StringVar(&c.Ledger, "ledger", "bench-"+strconv.FormatInt(now.Unix(), 10), "ledger to write; the default is fresh per run")
	fs.IntVar(&c.Transfers, "transfers", 100_000, "transfers in the measured phase")
	fs.IntVar(&c.Accounts, "accounts", 10_000, "accounts to open and pick from")
	fs.IntVar(&c.Concurrency, "concurrency", 64, "workers, each with one call in flight")
	fs.IntVar(&c.Batch, "batch", 1, fmt.Sprintf("transfers per CreateTransfers call, 1..%d", BatchMax))
	fs.BoolVar(&c.AutoBatch, "auto-batch", false, "send each transfer alone through the Go client's CreateTransfer, "+
		"which batches the workers' transfers together (with -batch 1)")
	fs.IntVar(&c.Rate, "rate", 0, fmt.Sprintf("pace the writes to this many transfers a second, all workers together, up to %d; "+
		"0: as fast as the workers go", RateMax))
	fs.BoolVar(&c.Hot, "hot", false, "every transfer debits or credits acc-0 (hot account)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the random accounts and amounts")
	fs.IntVar(&c.Warmup, "warmup", 0, "transfers sent before measuring")
	fs.IntVar(&c.Readers, "readers", 0, fmt.Sprintf("readers querying while the measured phase writes, 0..%d", ReadersMax))
	fs.IntVar(&c.ReadRate, "read-rate", 0, fmt.Sprintf("pace the readers to this many calls a second, all together, up to %d; "+
		"0: each in a tight loop", RateMax))
	fs.StringVar(&c.ReadKind, "read-kind", ReadKindBoth, "what readers ask: balances (GetBalances of 10 random accounts), "+
		"statement (ListStatement of a random account, first 100 lines), both (half the readers each), "+
		"health (the gRPC health check, which reads nothing: a call's own latency) or all (a third each)")
	fs.DurationVar(&c.LagEvery, "lag-every", 100*time.Millisecond,
		fmt.Sprintf("sample projection lag this often while the measured phase writes, %s..%s; 0: never", LagEveryMin, LagEveryMax))
	fs.DurationVar(&c.CatchUpWait, "catch-up-wait", CatchUpWaitDefault,
		fmt.Sprintf("how long the projections may take to reach the last ack before the run fails, 1s..%s", CatchUpWaitMax))
	fs.DurationVar(&c.Duration, "duration", 0, fmt.Sprintf("end the measured phase after this long, up to %s "+
		"(-transfers then defaults to %d); 0: when -transfers are sent", DurationMax, TransfersMax))
	fs.DurationVar(&c.WebhookStall, "webhook-stall", 0, fmt.Sprintf("measure webhooks: a receiver on 127.0.0.1, subscribed "+
		"to the ledger (needs an admin -api-key), answers 503 and then hangs for this long from the start of the load, "+
		"then 200; the report checks every delivery and the write rate meanwhile; up to %s; 0: off", WebhookStallMax))
	fs.StringVar(&c.WebhookAccounts, "webhook-accounts", "", "the webhook subscription's account pattern, e.g. acc-0 "+
		"(ledgerd sends at most -webhook-endpoint-rate deliveries a second to one endpoint, 50 by default: a full-speed "+
		"load needs a pattern that a few transfers a second match); empty: every event")
	fs.DurationVar(&c.WebhookWait, "webhook-wait", WebhookWaitDefault,
		fmt.Sprintf("how long the receiver may take, after the load, to have every delivery, 1s..%s", WebhookWaitMax))
	fs.BoolVar(&c.JSON, "json", false, "print the report as JSON")
	fs.StringVar(&c.JSONOut, "json-out", "", "also write the JSON report to this file")
	fs.IntVar(&c.LedgerdPID, "ledgerd-pid", 0, "measure this ledgerd's CPU time from /proc (with its embedded NATS); 0: not measured")
	fs.IntVar(&c.PostgresPID, "postgres-pid", 0, "measure this PostgreSQL postmaster's CPU time and its children's from /proc; 0: not measured")
	fs.IntVar(&c.NATSPID, "nats-pid", 0, "measure this external nats-server's CPU time from /proc; 0: not measured")
	fs.StringVar(&c.BaselinePostgresURL, "baseline-postgres-url", "",
		"after the ledger run, run the naive row-lock ledger in this database (created if missing; its tables are dropped and "+
			"recreated) on the SAME PostgreSQL server as ledgerd's, and print the ratio")
	fs.IntVar(&c.BaselineTransfers, "baseline-transfers", 0,
		fmt.Sprintf("transfers of the naive ledger run; 0: min(-transfers, %d)", BaselineTransfersDefaultMax))
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	transfersSet := false
	fs.Visit(func(f *flag.Flag) { transfersSet = transfersSet || f.Name == "transfers" })
	if c.Duration > 0 && !transfersSet {
		c.Transfers = TransfersMax
	}
	if c.WebhookStall == 0 {
		c.WebhookWait = 0
	}
	if c.BaselineTransfers == 0 && c.BaselinePostgresURL != "" {
		c.BaselineTransfers = min(c.Transfers, BaselineTransfersDefaultMax)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(out, "ledgerbench: unexpected arguments %q\n", fs.Args())
		return Config{}, fmt.Errorf("arguments %q: %w", fs.Args(), ErrInvalidConfig)
	}
	c.CommandLine = commandLine("ledgerbench", args)
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks every field against its bound.
//
// Errors: ErrInvalidConfig naming the first bad field.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf(format+": %w", append(a, ErrInvalidConfig)...)
	}
	switch {
	case c.Addr == "":
		return bad("-addr is empty")
	case !domain.ValidLedgerName(c.Ledger):
		return bad("-ledger %q must match [a-z0-9][a-z0-9-]{0,62}", c.Ledger)
	case c.Transfers < 1 || c.Transfers > TransfersMax:
		return bad("-transfers %d, want 1..%d", c.Transfers, TransfersMax)
	case c.Warmup < 0 || c.Warmup > TransfersMax:
		return bad("-warmup %d, want 0..%d", c.Warmup, TransfersMax)
	case c.Accounts < AccountsMin || c.Accounts > AccountsMax:
		return bad("-accounts %d, want %d..%d", c.Accounts, AccountsMin, AccountsMax)
	case c.Concurrency < 1 || c.Concurrency > ConcurrencyMax:
		return bad("-concurrency %d, want 1..%d", c.Concurrency, ConcurrencyMax)
	case c.Batch < 1 || c.Batch > BatchMax:
		return bad("-batch %d, want 1..%d", c.Batch, BatchMax)
	case c.Rate < 0 || c.Rate > RateMax:
		return bad("-rate %d, want 0..%d", c.Rate, RateMax)
	case c.AutoBatch && c.Batch != 1:
		return bad("-auto-batch with -batch %d: the client makes the batches, want -batch 1", c.Batch)
	case c.Readers < 0 || c.Readers > ReadersMax:
		return bad("-readers %d, want 0..%d", c.Readers, ReadersMax)
	case c.ReadRate < 0 || c.ReadRate > RateMax:
		return bad("-read-rate %d, want 0..%d", c.ReadRate, RateMax)
	case c.ReadRate > 0 && c.Readers == 0:
		return bad("-read-rate %d without -readers: nobody to pace", c.ReadRate)
	case c.Readers > 0 && !slices.Contains([]string{ReadKindBalances, ReadKindStatement, ReadKindBoth, ReadKindHealth, ReadKindAll}, c.ReadKind):
		return bad("-read-kind %q, want %s, %s, %s, %s or %s", c.ReadKind, ReadKindBalances, ReadKindStatement, ReadKindBoth,
			ReadKindHealth, ReadKindAll)
	case c.LagEvery != 0 && (c.LagEvery < LagEveryMin || c.LagEvery > LagEveryMax):
		return bad("-lag-every %s, want 0 or %s..%s", c.LagEvery, LagEveryMin, LagEveryMax)
	case c.CatchUpWait < time.Second || c.CatchUpWait > CatchUpWaitMax:
		return bad("-catch-up-wait %s, want 1s..%s", c.CatchUpWait, CatchUpWaitMax)
	case c.Duration < 0 || c.Duration > DurationMax || (c.Duration > 0 && c.Duration < time.Second):
		return bad("-duration %s, want 0 or 1s..%s", c.Duration, DurationMax)
	case c.WebhookStall < 0 || c.WebhookStall > WebhookStallMax || (c.WebhookStall > 0 && c.WebhookStall < time.Second):
		return bad("-webhook-stall %s, want 0 or 1s..%s", c.WebhookStall, WebhookStallMax)
	case c.WebhookStall > 0 && c.Duration > 0 && c.Duration <= c.WebhookStall:
		return bad("-duration %s within -webhook-stall %s: the writes after the stall are half the measure", c.Duration, c.WebhookStall)
	case c.WebhookStall > 0 && (c.WebhookWait < time.Second || c.WebhookWait > WebhookWaitMax):
		return bad("-webhook-wait %s, want 1s..%s", c.WebhookWait, WebhookWaitMax)
	case c.WebhookAccounts != "" && c.WebhookStall == 0:
		return bad("-webhook-accounts without -webhook-stall")
	case c.WebhookAccounts != "" && domain.CheckAccountPattern(c.WebhookAccounts) != nil:
		return bad("-webhook-accounts: %v", domain.CheckAccountPattern(c.WebhookAccounts))
	case c.BaselinePostgresURL != "" && (c.BaselineTransfers < 1 || c.BaselineTransfers > TransfersMax):
		return bad("-baseline-transfers %d, want 1..%d", c.BaselineTransfers, TransfersMax)
	}
	for flag, pid := range map[string]int{"-ledgerd-pid": c.LedgerdPID, "-postgres-pid": c.PostgresPID, "-nats-pid": c.NATSPID} {
		if pid < 0 || pid > PIDMax {
			return bad("%s %d, want 0..%d", flag, pid, PIDMax)
		}
	}
	return nil
}

// commandLine quotes args so that the line can be pasted into a shell.
func commandLine(name string, args []string) string {
	parts := []string{name}
	for _, a := range args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/=@,+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
