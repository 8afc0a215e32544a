// Command notifications is an example service downstream of a ledger: it
// keeps a per-user notification table from the ledger's event stream. Each
// posting that touches an account "users:<id>:..." gives user <id> one
// notification (money in or money out), applied exactly once in effect
// whatever crashes: the consumer's checkpoint is moved in the transaction
// that inserts the notifications (client/consumer.RunPostgres).
//
//	notifications -ledger main -postgres-url postgres://... -nats-url nats://...
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/client"
	"github.com/ledgerd/ledger/client/consumer"
	"github.com/ledgerd/ledger/domain"
)

func main() { os.Exit(serve(os.Args[1:], os.Getenv)) }

// serve runs the service until SIGINT or SIGTERM, and returns its exit code.
func serve(args []string, getenv func(string) string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := parseFlags(args, getenv, os.Stderr)
	if err != nil {
		return 2
	}
	if err := run(ctx, cfg, logger); err != nil && !errors.Is(err, context.Canceled) {
		logger.Error("notifications", "err", err)
		return 1
	}
	return 0
}

// config is the service's configuration: flags, or NOTIFY_* variables.
type config struct {
	Ledger      string
	PostgresURL string
	// Name is the consumer's checkpoint row: two services on one database
	// take two names.
	Name string
	NATS consumer.NATSOptions
	// LedgerdAddr and APIKey (auditor role) read from ledgerd what the
	// stream no longer holds, and confirm each batch against the log; ""
	// stops instead. Over TLS: the system's CAs, or LedgerdCA's; plaintext
	// only when LedgerdInsecure says so (the key then travels in clear).
	LedgerdAddr, APIKey, LedgerdCA string
	LedgerdInsecure                bool
	// BatchMax bounds the events of one transaction.
	BatchMax int
}

func parseFlags(args []string, getenv func(string) string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("notifications", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Ledger, "ledger", getenv("NOTIFY_LEDGER"), "ledger to follow (env NOTIFY_LEDGER)")
	fs.StringVar(&c.PostgresURL, "postgres-url", getenv("NOTIFY_POSTGRES_URL"), "the service's PostgreSQL (env NOTIFY_POSTGRES_URL)")
	fs.StringVar(&c.Name, "name", "notifications", "consumer name: its checkpoint row")
	fs.StringVar(&c.NATS.URL, "nats-url", getenv("NOTIFY_NATS_URL"), "NATS that ledgerd publishes on (env NOTIFY_NATS_URL)")
	fs.StringVar(&c.NATS.CredsFile, "nats-creds", getenv("NOTIFY_NATS_CREDS"), "NATS credentials file (env NOTIFY_NATS_CREDS)")
	fs.StringVar(&c.NATS.TLSCA, "nats-tls-ca", getenv("NOTIFY_NATS_TLS_CA"), "PEM CAs of the NATS server (env NOTIFY_NATS_TLS_CA)")
	fs.StringVar(&c.LedgerdAddr, "ledgerd", getenv("NOTIFY_LEDGERD"), "ledgerd's gRPC address, to read what the stream no longer holds (env NOTIFY_LEDGERD)")
	fs.StringVar(&c.LedgerdCA, "ledgerd-ca", getenv("NOTIFY_LEDGERD_CA"), "PEM CA of ledgerd's TLS certificate (env NOTIFY_LEDGERD_CA; default: the system's CAs)")
	fs.BoolVar(&c.LedgerdInsecure, "ledgerd-insecure", false, "plaintext gRPC to -ledgerd: the API key travels in clear (a ledgerd on this host only)")
	fs.IntVar(&c.BatchMax, "batch-max", 0, "events per transaction at most (0: the consumer's default)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	c.APIKey = getenv("NOTIFY_API_KEY") // a secret: never a flag
	if c.Ledger == "" || c.PostgresURL == "" || c.NATS.URL == "" {
		return config{}, errors.New("-ledger, -postgres-url and -nats-url are required")
	}
	return c, nil
}

// run follows the ledger until ctx ends or the consumer stops on a fault.
func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	pool, err := pgxpool.New(ctx, cfg.PostgresURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrate(ctx, pool); err != nil {
		return err
	}
	cfg.NATS.Name = "notifications"
	nc, err := cfg.NATS.Connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ccfg := consumer.Config{Ledger: cfg.Ledger, NATS: nc, BatchMax: cfg.BatchMax, Logger: logger}
	if cfg.LedgerdAddr != "" {
		c, err := client.Dial(ctx, cfg.LedgerdAddr, append(ledgerdTransport(cfg), client.WithAPIKey(cfg.APIKey))...)
		if err != nil {
			return err
		}
		defer c.Close()
		ccfg.Audit = c.AuditServiceClient
	}
	c, err := consumer.New(ccfg)
	if err != nil {
		return err
	}
	logger.Info("following", "ledger", cfg.Ledger, "consumer", cfg.Name)
	return c.RunPostgres(ctx, pool, cfg.Name, notify)
}

// ledgerdTransport is how the service reaches ledgerd: TLS unless told
// otherwise, as the client package requires (the auditor key goes with
// every batch's confirmation). Both -ledgerd-ca and -ledgerd-insecure
// given: Dial refuses the pair.
func ledgerdTransport(cfg config) []client.Option {
	var opts []client.Option
	if cfg.LedgerdInsecure {
		opts = append(opts, client.WithInsecure())
	}
	if cfg.LedgerdCA != "" {
		opts = append(opts, client.WithCAFile(cfg.LedgerdCA))
	}
	if len(opts) == 0 {
		opts = append(opts, client.WithTLS(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	return opts
}

// migrate creates the consumer's checkpoint table and the notifications.
// The table has no unique key on (user, transfer, side): the inbox alone
// makes each row once, and a duplicate would show (the kill -9 test counts).
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := consumer.Migrate(ctx, pool); err != nil {
		return err
	}
	_, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS notifications (
		id          bigserial PRIMARY KEY,
		user_id     text NOT NULL,
		ledger      text NOT NULL,
		position    bigint NOT NULL,
		transfer_id text NOT NULL,
		account     text NOT NULL,
		direction   text NOT NULL CHECK (direction IN ('in', 'out')),
		amount      numeric NOT NULL,
		asset       text NOT NULL,
		created_at  timestamptz NOT NULL DEFAULT now());
		CREATE INDEX IF NOT EXISTS notifications_user ON notifications (user_id, id)`)
	if err != nil {
		return fmt.Errorf("migrate notifications: %w", err)
	}
	return nil
}

// notify inserts a notification for each user a transfer's postings touch.
func notify(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	var (
		id       string
		postings []domain.Posting
	)
	switch e := ev.Data.(type) {
	case domain.TransferCommitted:
		id, postings = e.ID, e.Postings
	case domain.TransferReversed:
		id, postings = e.ID, e.Postings
	case domain.PendingPosted:
		id = e.ID
		for _, p := range e.Postings {
			if !p.Amount.Units.IsZero() {
				postings = append(postings, p.Posted())
			}
		}
	default:
		return nil // holds, accounts, assets: nothing to tell users
	}
	for _, p := range postings {
		for _, leg := range []struct{ account, direction string }{{p.Debit, "out"}, {p.Credit, "in"}} {
			user, ok := userOf(leg.account)
			if !ok {
				continue
			}
			if _, err := tx.Exec(ctx, `INSERT INTO notifications (user_id, ledger, position, transfer_id, account, direction, amount, asset)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, user, ev.Ledger, int64(ev.Position), id, leg.account,
				leg.direction, p.Amount.String(), p.Asset); err != nil {
				return fmt.Errorf("notify %s of %s: %w", user, id, err)
			}
		}
	}
	return nil
}

// userOf returns <id> of an account "users:<id>:...".
func userOf(account string) (string, bool) {
	rest, ok := strings.CutPrefix(account, "users:")
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, ":")
	return id, ok && id != ""
}
