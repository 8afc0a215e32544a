package consumer_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/client/consumer"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// A service keeps a balance per user from a ledger's stream: the update and
// the consumer's checkpoint commit together, so that each transfer counts
// once whatever crashes. It needs a ledgerd, its NATS and the service's
// PostgreSQL.
func ExampleConsumer_RunPostgres() {
	ctx := context.Background()
	nc, err := consumer.NATSOptions{URL: "nats://127.0.0.1:4222", CredsFile: os.Getenv("NATS_CREDS")}.Connect()
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	// For positions the stream no longer holds: ledgerd's log, with an
	// auditor key.
	conn, err := grpc.NewClient("127.0.0.1:7070", grpc.WithPerRPCCredentials(apikeys.Bearer(os.Getenv("LEDGER_API_KEY"))),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	pool, err := pgxpool.New(ctx, "postgres://127.0.0.1:5432/wallets")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := consumer.Migrate(ctx, pool); err != nil {
		log.Fatal(err)
	}
	c, err := consumer.New(consumer.Config{Ledger: "main", NATS: nc, Audit: ledgerv1.NewAuditServiceClient(conn)})
	if err != nil {
		log.Fatal(err)
	}
	err = c.RunPostgres(ctx, pool, "wallets", func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		t, ok := ev.Data.(domain.TransferCommitted)
		if !ok {
			return nil
		}
		// Each posting moves its amount from the debited account to the
		// credited one.
		for _, p := range t.Postings {
			if _, err := tx.Exec(ctx, `UPDATE wallets SET balance = balance + CASE account WHEN $1 THEN -$3::numeric ELSE $3::numeric END
				WHERE account IN ($1, $2)`, p.Debit, p.Credit, p.Amount.String()); err != nil {
				return err
			}
		}
		return nil
	})
	log.Fatal(err) // a broken chain, a handler's error, the stream gone: restart resumes from the checkpoint
}

// Each event must continue the chain from the checkpoint: the next
// position, prev_hash the checkpoint's hash, a hash that matches the event.
func ExampleCheckpoint_Next() {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	asset := eventstore.Record{Ledger: "main", Position: 1, Type: domain.TypeAssetDefined, SchemaVersion: domain.SchemaVersion,
		RecordedAt: at, CommandID: "USD", Payload: domain.AppendEvent(nil, domain.AssetDefined{Code: "USD", Scale: 2})}
	asset.Seal(eventstore.Hash{})
	opened := eventstore.Record{Ledger: "main", Position: 2, Type: domain.TypeAccountOpened, SchemaVersion: domain.SchemaVersion,
		RecordedAt: at, CommandID: "users:42:wallet",
		Payload: domain.AppendEvent(nil, domain.AccountOpened{ID: "users:42:wallet", Asset: "USD", Normal: domain.SideCredit})}
	opened.Seal(asset.Hash)

	var cp consumer.Checkpoint // the start of the ledger
	for _, rec := range []eventstore.Record{asset, opened} {
		ev, next, err := cp.Next(rec)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d %s %T\n", ev.Position, ev.Type, ev.Data)
		cp = next
	}

	// The same event with its payload altered on the way.
	opened.Payload = []byte(strings.Replace(string(opened.Payload), "users:42", "users:666", 1))
	_, _, err := consumer.Checkpoint{Position: 1, Hash: asset.Hash}.Next(opened)
	fmt.Println(err)
	// Output:
	// 1 AssetDefined domain.AssetDefined
	// 2 AccountOpened domain.AccountOpened
	// ledger main at position 2: the hash does not match the event: the hash chain is broken
}
