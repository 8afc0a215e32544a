package queries

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/internal/testenv"
)

func TestTransfersCursorRoundTrip(t *testing.T) {
	f := TransferFilter{Account: "alice", Status: "posted"}
	fp := transfersFingerprint("main", f)
	for _, pos := range []uint64{0, 1, 255, 1 << 40, 1<<63 - 1} {
		c := encodeTransfersCursor(pos, fp)
		got, err := decodeTransfersCursor(c, fp)
		if err != nil || got != pos {
			t.Errorf("cursor of %d (%q): %d, %v", pos, c, got, err)
		}
	}
	if got, err := decodeTransfersCursor("", fp); got != 0 || err != nil {
		t.Errorf("empty cursor: %d, %v, want the start", got, err)
	}
}

func TestTransfersCursorRefused(t *testing.T) {
	f := TransferFilter{Account: "alice"}
	fp := transfersFingerprint("main", f)
	good := encodeTransfersCursor(42, fp)
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	version2 := append([]byte{2}, raw[1:]...)
	huge := append([]byte{transfersCursorVersion}, 0x80, 0, 0, 0, 0, 0, 0, 0)
	huge = append(huge, raw[9:]...)
	for _, c := range []struct{ name, cursor string }{
		{"not base64", "!!!!"},
		{"padded", good + "=="},
		{"with a newline", good[:9] + "\n" + good[9:]},
		{"too short", good[:len(good)-2]},
		{"too long", good + "AA"},
		{"other version", base64.RawURLEncoding.EncodeToString(version2)},
		{"position over int64", base64.RawURLEncoding.EncodeToString(huge)},
		{"non-canonical padding bits", good[:len(good)-1] + string(rune(good[len(good)-1]+1))},
		{"other ledger", encodeTransfersCursor(42, transfersFingerprint("other", f))},
		{"other account", encodeTransfersCursor(42, transfersFingerprint("main", TransferFilter{Account: "bob"}))},
		{"other basis", encodeTransfersCursor(42, transfersFingerprint("main", TransferFilter{Account: "alice", Effective: true}))},
		{"other range", encodeTransfersCursor(42, transfersFingerprint("main", TransferFilter{Account: "alice", From: time.Unix(1, 0)}))},
	} {
		if _, err := decodeTransfersCursor(c.cursor, fp); !errors.Is(err, ErrBadTransfersCursor) {
			t.Errorf("%s (%q): %v, want ErrBadTransfersCursor", c.name, c.cursor, err)
		}
	}
}

// The fingerprint's fields cannot run into each other.
func TestTransfersFingerprintSeparatesFields(t *testing.T) {
	a := transfersFingerprint("main", TransferFilter{Account: "ab", Reference: "c"})
	b := transfersFingerprint("main", TransferFilter{Account: "a", Reference: "bc"})
	if a == b {
		t.Errorf("account ab + reference c and account a + reference bc share fingerprint %x", a)
	}
}

// Requests over a bound are refused before any database access: the
// service has no pool here.
func TestTransfersBounds(t *testing.T) {
	s := &Service{}
	ctx := context.Background()
	ids := make([]string, TransferIDsPerRequestMax+1)
	if _, err := s.GetTransfers(ctx, "main", ids, 0); !errors.Is(err, ErrTooManyTransferIDs) {
		t.Errorf("GetTransfers of %d ids: %v, want ErrTooManyTransferIDs", len(ids), err)
	}
	for _, limit := range []int{-1, TransfersPageMax + 1} {
		if _, err := s.ListTransfers(ctx, "main", TransferFilter{}, "", limit, 0); !errors.Is(err, ErrTransfersPageTooLarge) {
			t.Errorf("limit %d: %v, want ErrTransfersPageTooLarge", limit, err)
		}
	}
	if _, err := s.ListTransfers(ctx, "main", TransferFilter{}, "x", 10, 0); !errors.Is(err, ErrBadTransfersCursor) {
		t.Errorf("bad cursor: %v, want ErrBadTransfersCursor", err)
	}
	now := time.Now()
	f := TransferFilter{From: now, To: now.Add(-time.Microsecond)}
	if _, err := s.ListTransfers(ctx, "main", f, "", 10, 0); !errors.Is(err, ErrTransfersTimeRange) {
		t.Errorf("from after to: %v, want ErrTransfersTimeRange", err)
	}
}

func TestListTransfersSQL(t *testing.T) {
	f := TransferFilter{Account: "alice", Reference: "r", MetadataKey: "k", MetadataValue: `v"`, Status: "posted",
		From: time.Unix(10, 0), To: time.Unix(20, 0), Effective: true}
	sql, args, err := listTransfersSQL("main", f, 7, 11, TransfersScanMax)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"h.account = $4)", "m.position > $2", "m.position <= c.position", "t.reference = $5", "t.metadata @> $6::jsonb",
		"t.status = 'posted'", "t.effective_at >= $7", "t.effective_at <= $8", "DISTINCT ON (m.position)", "ORDER BY m.position LIMIT $3"} {
		if !strings.Contains(sql, want) {
			t.Errorf("SQL lacks %q:\n%s", want, sql)
		}
	}
	if len(args) != 8 || args[5] != `{"k":"v\""}` {
		t.Errorf("args %q", args)
	}
	if _, _, err := listTransfersSQL("main", TransferFilter{Status: "posted' OR true --"}, 0, 11, TransfersScanMax); !errors.Is(err, ErrUnknownTransferStatus) {
		t.Errorf("a status that is none: %v, want ErrUnknownTransferStatus", err)
	}
	sql, _, _ = listTransfersSQL("main", TransferFilter{MetadataKey: "k"}, 0, 11, TransfersScanMax)
	if !strings.Contains(sql, "t.metadata ? $4") || !strings.Contains(sql, "ORDER BY t.position LIMIT $3") ||
		strings.Contains(sql, "transfer_accounts") {
		t.Errorf("key-only SQL:\n%s", sql)
	}
}

func FuzzDecodeTransfersCursor(f *testing.F) {
	fp := transfersFingerprint("main", TransferFilter{})
	f.Add(encodeTransfersCursor(1, fp))
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, cursor string) {
		pos, err := decodeTransfersCursor(cursor, fp)
		if err != nil {
			if !errors.Is(err, ErrBadTransfersCursor) {
				t.Fatalf("%q: %v, want ErrBadTransfersCursor", cursor, err)
			}
			return
		}
		if cursor != "" && encodeTransfersCursor(pos, fp) != cursor {
			t.Fatalf("%q decodes to %d, which encodes to %q", cursor, pos, encodeTransfersCursor(pos, fp))
		}
	})
}

// An asset filter bounds the scan (no index serves it) and tests one posting
// for the asset and both amount bounds.
func TestListTransfersSQLAssetBounded(t *testing.T) {
	f := TransferFilter{Asset: "USD", MinAmount: "1.00", MaxAmount: "2", EffectiveFrom: time.Unix(1, 0), RecordedTo: time.Unix(2, 0)}
	sql, args, err := listTransfersSQL("main", f, 0, 11, TransfersScanMax)
	if err != nil {
		t.Fatal(err)
	}
	// $6 and $7 bound the positions by the recorded time, $8 the near
	// arm's by the effective time less projections.EffectiveNear.
	for _, want := range []string{"t.effective_at >= $4", "t.recorded_at < $5", "coalesce(k.max_at, k.recorded_at) > $6",
		"k.recorded_at < $8", "NOT t.effective_far", "AND t.effective_far", "p->>'asset' = $9",
		"(p->>'amount')::numeric >= $10::numeric", "(p->>'amount')::numeric <= $11::numeric",
		"ORDER BY t.position LIMIT $12", "WHERE s.hit OR s.n = $12", "t.n = $12"} {
		if !strings.Contains(sql, want) {
			t.Errorf("SQL lacks %q:\n%s", want, sql)
		}
	}
	if args[len(args)-1] != TransfersScanMax {
		t.Errorf("args %v, want the scan bound last", args)
	}
	if a, b := transfersFingerprint("main", TransferFilter{}), transfersFingerprint("main", TransferFilter{Asset: "USD"}); a == b {
		t.Errorf("asset filter shares the fingerprint %x", a)
	}
}

// TestListTransfersAssetScanBound: an asset filter over more than
// TransfersScanMax transfers answers a first page that is empty but has a
// cursor (it examined TransfersScanMax rows), then the one match; and a
// multi-leg transfer matches by its one posting within both bounds.
func TestListTransfersAssetScanBound(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	ledger := testenv.Name(t)
	n := TransfersScanMax + 20
	exec(t, pool, `INSERT INTO ledger_heads (ledger, position, hash) VALUES ($1, $2, decode(repeat('00', 32), 'hex'))`,
		ledger, n+1)
	exec(t, pool, `INSERT INTO assets (ledger, code, scale, position) VALUES ($1, 'USD', 2, 1), ($1, 'EUR', 2, 1)`, ledger)
	exec(t, pool, `INSERT INTO projection_checkpoints (ledger, projection, version, position) VALUES ($1, 'transfers', 1, $2)`,
		ledger, n+1)
	exec(t, pool, `INSERT INTO transfer_ledgers (ledger) VALUES ($1)`, ledger)
	exec(t, pool, `INSERT INTO transfers (ledger_no, id, kind, status, position, postings, effective_at, recorded_at, updated_position)
		SELECT (SELECT ledger_no FROM transfer_ledgers WHERE ledger = $1), 't-' || p, 'transfer', 'posted', p,
			CASE WHEN p = $2 THEN '[{"debit":"a","credit":"b","asset":"USD","amount":"1.00"},{"debit":"c","credit":"d","asset":"EUR","amount":"7.50"}]'
			ELSE '[{"debit":"a","credit":"b","asset":"USD","amount":"7.50"}]' END::jsonb,
			now(), now(), p
		FROM generate_series(2, $2) p`, ledger, n+1)

	f := TransferFilter{Asset: "EUR", MinAmount: "7", MaxAmount: "8"}
	first, err := q.ListTransfers(t.Context(), ledger, f, "", 10, 0)
	testenv.NoError(t, err)
	if len(first.Transfers) != 0 || first.NextCursor == "" {
		t.Fatalf("first page: %d transfers, cursor %q; want none and a cursor (the scan bound)", len(first.Transfers), first.NextCursor)
	}
	second, err := q.ListTransfers(t.Context(), ledger, f, first.NextCursor, 10, 0)
	testenv.NoError(t, err)
	if len(second.Transfers) != 1 || second.Transfers[0].ID != "t-"+strconv.Itoa(n+1) || second.NextCursor != "" {
		t.Fatalf("second page: %+v, want t-%d and no cursor", second, n+1)
	}
	// USD 1.00 and EUR 7.50 in one transfer: no posting in USD within 7..8.
	usd := TransferFilter{Asset: "USD", MinAmount: "7", MaxAmount: "8"}
	page, err := q.ListTransfers(t.Context(), ledger, usd, "", 1000, 0)
	testenv.NoError(t, err)
	if len(page.Transfers) != 1000 || page.Transfers[0].ID != "t-2" {
		t.Fatalf("USD 7..8: %d transfers from %v", len(page.Transfers), page.Transfers[:min(1, len(page.Transfers))])
	}
	for cursor := page.NextCursor; cursor != ""; {
		p, err := q.ListTransfers(t.Context(), ledger, usd, cursor, 1000, 0)
		testenv.NoError(t, err)
		for _, tr := range p.Transfers {
			if tr.ID == "t-"+strconv.Itoa(n+1) {
				t.Fatalf("USD 7..8 lists %s, whose USD posting is 1.00", tr.ID)
			}
		}
		cursor = p.NextCursor
	}
}

// TestListTransfersAmountBoundsWaitForAssets: ListTransfers checks an amount
// bound's scale against the assets table, which the balances projection
// writes: with that projection behind, an asset defined at or before
// min_position is waited for, not refused as unknown.
func TestListTransfersAmountBoundsWaitForAssets(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	ledger := testenv.Name(t)
	fakeLedger(t, pool, ledger, 10, 10, time.Now())
	checkpoint(t, pool, ledger, "transfers", 10, nil)
	checkpoint(t, pool, ledger, "movements", 10, nil)
	// The balances projection is behind: USD (defined at 1 say) not there yet.
	checkpoint(t, pool, ledger, "balances", 0, nil)
	done := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, err := pool.Exec(t.Context(), `INSERT INTO assets (ledger, code, scale, position) VALUES ($1, 'USD', 2, 1)`, ledger)
		if err == nil {
			_, err = pool.Exec(t.Context(), `UPDATE projection_checkpoints SET position = 10
				WHERE ledger = $1 AND projection = 'balances'`, ledger)
		}
		done <- err
	}()
	defer func() {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	_, err := q.ListTransfers(t.Context(), ledger, TransferFilter{Asset: "USD", MinAmount: "1.001"}, "", 10, 10)
	if !errors.Is(err, ErrTransfersMinAmount) {
		t.Errorf("ListTransfers(USD, min 1.001) at min_position 10 with balances behind: %v; want ErrTransfersMinAmount "+
			"once the balances projection (which writes assets) reaches 10", err)
	}
}
