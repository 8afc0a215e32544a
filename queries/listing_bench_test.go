package queries

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// listingBenchAccounts is the ledger's size; LEDGER_BENCH_ACCOUNTS changes
// it (a quick run).
const listingBenchAccounts = 1_000_000

// listingBenchKinds are each owner's accounts: users:NNNNNN:KIND.
var listingBenchKinds = [...]string{"wallet", "savings", "fees", "hold"}

// BenchmarkListings measures ListAccounts and ListAssets on a ledger of 1M
// accounts, written straight into the read models with COPY (no writer, no
// log): users:000000:wallet .. users:249999:hold, 90% USD, 9% EUR, 1% over
// 8 other assets; metadata tier=gold on 10%, region=eu on 0.1%; 1% closed.
// Each sub-benchmark walks its listing page by page (100 a page), starting
// again at the end, and reports the latency of a page at p50 and p99.
//
//	nice -n 19 go test -run '^$' -bench BenchmarkListings -benchtime 300x ./queries/
func BenchmarkListings(b *testing.B) {
	n := listingBenchAccounts
	if s := os.Getenv("LEDGER_BENCH_ACCOUNTS"); s != "" {
		v, err := strconv.Atoi(s)
		testenv.NoError(b, err)
		n = v
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(b))
	testenv.NoError(b, err)
	b.Cleanup(pool.Close)
	testenv.NoError(b, eventstore.Migrate(ctx, pool))
	testenv.NoError(b, projections.Migrate(ctx, pool))
	ledger := "bench"
	began := time.Now()
	loadListingBench(b, pool, ledger, n)
	b.Logf("%d accounts loaded in %s", n, time.Since(began).Round(time.Millisecond))
	q := New(pool, nil)

	for _, c := range []struct {
		name string
		f    AccountFilter
	}{
		{"accounts/all", AccountFilter{}},
		{"accounts/prefix", AccountFilter{Prefix: "users:01"}},
		{"accounts/prefix+balances", AccountFilter{Prefix: "users:01", Balances: true}},
		{"accounts/pattern", AccountFilter{Pattern: "users:*:wallet"}},
		{"accounts/pattern-rare", AccountFilter{Pattern: "users:*:vault"}},
		{"accounts/pattern+asset+open", AccountFilter{Pattern: "users:*:fees", Asset: "EUR", Status: AccountStatusOpen}},
		{"accounts/metadata", AccountFilter{Metadata: map[string]string{"tier": "gold"}}},
		{"accounts/metadata-rare", AccountFilter{Metadata: map[string]string{"region": "eu"}}},
		{"accounts/metadata+balances", AccountFilter{Metadata: map[string]string{"tier": "gold"}, Balances: true}},
		{"accounts/asset", AccountFilter{Asset: "EUR"}},
		{"accounts/closed", AccountFilter{Status: AccountStatusClosed}},
	} {
		b.Run(c.name, func(b *testing.B) {
			cursor, rows := "", 0
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				page, err := q.ListAccounts(ctx, ledger, c.f, cursor, 100, 0)
				lat = append(lat, time.Since(t0))
				testenv.NoError(b, err)
				rows += len(page.Accounts)
				cursor = page.NextCursor
			}
			reportLatency(b, lat)
			b.ReportMetric(float64(rows)/float64(len(lat)), "rows/page")
		})
	}
	b.Run("assets", func(b *testing.B) {
		cursor := ""
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			t0 := time.Now()
			page, err := q.ListAssets(ctx, ledger, cursor, 5, 0)
			lat = append(lat, time.Since(t0))
			testenv.NoError(b, err)
			cursor = page.NextCursor
		}
		reportLatency(b, lat)
	})
}

// reportLatency reports a page's latency at p50 and p99, in milliseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	at := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // the percentiles say it
}

// loadListingBench writes n accounts, their balances, 10 assets, the
// ledger's head and the balances checkpoint, with COPY, then analyzes.
func loadListingBench(b *testing.B, pool *pgxpool.Pool, ledger string, n int) {
	ctx := context.Background()
	assets := []string{"USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "BTC", "ETH", "NGN"}
	assetOf := func(i int) string {
		switch {
		case i%100 < 90:
			return "USD"
		case i%100 < 99:
			return "EUR"
		}
		return assets[2+i/100%8]
	}
	var assetRows [][]any
	for i, a := range assets {
		assetRows = append(assetRows, []any{ledger, a, int16(2), int64(i + 1)})
	}
	_, err := pool.CopyFrom(ctx, pgx.Identifier{"assets"}, []string{"ledger", "code", "scale", "position"},
		pgx.CopyFromRows(assetRows))
	testenv.NoError(b, err)

	opened := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id := func(i int) string { return fmt.Sprintf("users:%06d:%s", i/4, listingBenchKinds[i%4]) }
	i := 0
	_, err = pool.CopyFrom(ctx, pgx.Identifier{"accounts"}, []string{"ledger", "account", "asset", "normal_balance",
		"metadata", "closed", "opened_position", "opened_at", "position"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			md := "{}"
			switch {
			case i%1000 == 0:
				md = `{"tier": "gold", "region": "eu"}`
			case i%10 == 0:
				md = `{"tier": "gold"}`
			}
			row := []any{ledger, id(i), assetOf(i), "credit", md, i%100 == 7, int64(i + 11), opened, int64(i + 11)}
			i++
			return row, nil
		}))
	testenv.NoError(b, err)
	// COPY's binary format wants numerics as such.
	numeric := func(s string) pgtype.Numeric {
		var v pgtype.Numeric
		testenv.NoError(b, v.Scan(s))
		return v
	}
	zero := numeric("0.00")
	credits := make([]pgtype.Numeric, 5000)
	for k := range credits {
		credits[k] = numeric(strconv.Itoa(k) + ".25")
	}
	i = 0
	_, err = pool.CopyFrom(ctx, pgx.Identifier{"balances"}, []string{"ledger", "account", "asset", "scale", "normal_balance",
		"debits_posted", "credits_posted", "debits_pending", "credits_pending", "position", "closed"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			row := []any{ledger, id(i), assetOf(i), int16(2), "credit", zero, credits[i%5000], zero, zero, int64(i + 11), i%100 == 7}
			i++
			return row, nil
		}))
	testenv.NoError(b, err)
	head := int64(n + 10)
	for _, sql := range []string{
		`INSERT INTO ledger_heads (ledger, position, hash) VALUES ($1, $2, decode(repeat('00', 32), 'hex'))`,
		`INSERT INTO projection_checkpoints (ledger, projection, version, position) VALUES ($1, 'balances', 3, $2)`,
	} {
		_, err := pool.Exec(ctx, sql, ledger, head)
		testenv.NoError(b, err)
	}
	for _, t := range []string{"assets", "accounts", "balances"} {
		_, err := pool.Exec(ctx, `VACUUM ANALYZE `+t)
		testenv.NoError(b, err)
	}
	var got int
	testenv.NoError(b, pool.QueryRow(ctx, `SELECT count(*) FROM accounts a JOIN balances b
		ON b.ledger = a.ledger AND b.account = a.account WHERE a.ledger = $1`, ledger).Scan(&got))
	if got != n {
		b.Fatalf("%d accounts with balances loaded, want %d", got, n)
	}
}
