package queries

import (
	"reflect"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/internal/testenv"
)

// TestTransfersReadRawAsScanned: transfer rows of every shape the table
// holds (references, pending ids, resolutions and reversals NULL and set;
// reversed_by empty and of several ids; expiries NULL and set; times
// before 1970 and in 9999; positions past 2^32; metadata empty, NULL and
// escaped) read from the rows' raw values are what pgx's Scan of the same
// rows in text reads: in pages walked to the end (a plain listing and one
// filtered by asset, whose rows carry a hit and the scan's last), and in
// GetTransfers' read with its ids missing among them; and both take the
// raw path. (pgx's Scan in binary, which the reads used before, agreed
// with both when this was written; in text it is the fallback kept.)
func TestTransfersReadRawAsScanned(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	ledger := testenv.Name(t)
	const n, far = 300, int64(5_000_000_000)
	writeTransferShapes(t, pool, ledger, n, far)

	text := pgx.QueryResultFormats{pgx.TextFormatCode}
	both := func(what, sql string, args []any, page bool) ([]Transfer, uint64) {
		t.Helper()
		var viaRaw, viaScan []Transfer
		var raw [2]bool
		var cp, bound [2]uint64
		for i, formats := range [][]any{nil, {text}} {
			rows, err := pool.Query(t.Context(), sql, append(formats, args...)...)
			testenv.NoError(t, err)
			out := &viaRaw
			if i == 1 {
				out = &viaScan
			}
			cp[i], bound[i], raw[i], err = readTransferRows(rows, out, page)
			testenv.NoError(t, err)
		}
		if !raw[0] || raw[1] {
			t.Fatalf("%s: the read took the raw path: %v, want true; the text read: %v, want false", what, raw[0], raw[1])
		}
		if cp != [2]uint64{uint64(far + n), uint64(far + n)} || bound[0] != bound[1] || !reflect.DeepEqual(viaRaw, viaScan) {
			for i := range min(len(viaRaw), len(viaScan)) {
				if !reflect.DeepEqual(viaRaw[i], viaScan[i]) {
					t.Fatalf("%s: %s read raw as %+v, scanned as %+v", what, viaRaw[i].ID, viaRaw[i], viaScan[i])
				}
			}
			t.Fatalf("%s: %d read raw, %d scanned; checkpoints %v, bounds %v", what, len(viaRaw), len(viaScan), cp, bound)
		}
		return viaRaw, bound[0]
	}
	// A third of the transfers hold EUR 7.50: a scan of 20 rows finds
	// fewer than a page's 11, so the filtered walk's pages end at the
	// scan's last row (a boundary), which is not a hit.
	for _, f := range []TransferFilter{{}, {Asset: "EUR", MinAmount: "7", MaxAmount: "8"}} {
		seen, after, bounded := 0, uint64(0), 0
		for range n {
			sql, args, err := listTransfersSQL(ledger, f, after, 11, 20)
			testenv.NoError(t, err)
			page, bound := both("a page after "+strconv.FormatUint(after, 10), sql, args, true)
			seen += len(page)
			switch {
			case len(page) == 11:
				after = page[10].Position - 1
				seen--
				continue
			case bound != 0:
				after, bounded = bound, bounded+1
				continue
			}
			break
		}
		if want := map[bool]int{true: n, false: n / 3}[f.Asset == ""]; seen != want || (f.Asset != "" && bounded < 5) {
			t.Fatalf("the listing %+v walked %d transfers, want %d (%d pages ended at the scan's bound)", f, seen, want, bounded)
		}
	}
	ids := []string{"t-1é", "nope", "t-" + strconv.Itoa(n), "t-2éé", "t-7é"}
	got, _ := both("GetTransfers", getTransfersSQL, []any{ledger, ids}, false)
	if len(got) != 4 || got[0].ReversedBy == nil || got[1].Position < uint64(far) || got[1].ExpiresAt.IsZero() == got[3].ExpiresAt.IsZero() {
		t.Fatalf("GetTransfers' rows: %+v", got)
	}
}

// writeTransferShapes writes a ledger of n transfers of every shape the
// table holds, the last five at far and past it, checkpointed at far+n.
func writeTransferShapes(t testing.TB, pool *pgxpool.Pool, ledger string, n, far int64) {
	t.Helper()
	exec(t, pool, `INSERT INTO ledger_heads (ledger, position, hash) VALUES ($1, $2, decode(repeat('00', 32), 'hex'))`,
		ledger, far+n)
	exec(t, pool, `INSERT INTO assets (ledger, code, scale, position) VALUES ($1, 'USD', 2, 1), ($1, 'EUR', 2, 1)`, ledger)
	exec(t, pool, `INSERT INTO projection_checkpoints (ledger, projection, version, position) VALUES ($1, 'transfers', 1, $2)`,
		ledger, far+n)
	exec(t, pool, `INSERT INTO transfer_ledgers (ledger) VALUES ($1)`, ledger)
	exec(t, pool, `INSERT INTO transfers (ledger_no, id, kind, status, position, postings, reference, metadata, effective_at,
			recorded_at, pending_id, resolved_by, reverses, reversed_by, expires_at, updated_position)
		SELECT (SELECT ledger_no FROM transfer_ledgers WHERE ledger = $1), 't-' || p || repeat('é', p % 3),
			(ARRAY['transfer', 'pending', 'post', 'void', 'reversal'])[1 + p % 5],
			(ARRAY['posted', 'pending', 'pending_posted', 'voided', 'expired', 'reversed', 'partially_reversed'])[1 + p % 7],
			pos,
			CASE p % 3 WHEN 0 THEN '[{"debit":"a","credit":"b","asset":"USD","amount":"1.50"}]'
				WHEN 1 THEN '[{"debit":"a\"q","credit":"b","asset":"EUR","amount":"7.50","reversed":"0.10"},{"debit":"c","credit":"d","asset":"USD","amount":"2.00"}]'
				ELSE '[{"debit":"x","credit":"y","asset":"EUR","amount":"99999999999999999999999999999999999.99"}]' END::jsonb,
			(ARRAY[NULL, '', 'ref-' || p])[1 + p % 3],
			(ARRAY['{}'::jsonb, jsonb_build_object('k', 'v' || p, 'ü', E'"q\n'), '{"e":""}'::jsonb])[1 + p % 3],
			(ARRAY[TIMESTAMPTZ '1969-12-31 23:59:59.999999+00', '2000-01-01 00:00:00+00', '9999-12-31 23:59:59.999999+00',
				'2026-12-06 12:34:56.000001+00'])[1 + p % 4],
			TIMESTAMPTZ '2026-01-01 00:00:00+00' + p * INTERVAL '1.000003 second',
			CASE WHEN p % 4 = 1 THEN 'h-' || p END, CASE WHEN p % 6 = 2 THEN 'r-' || p END,
			CASE WHEN p % 5 = 3 THEN 'o-' || p END,
			CASE p % 4 WHEN 0 THEN ARRAY[]::text[] WHEN 1 THEN ARRAY['v-1'] WHEN 2 THEN ARRAY['v-1', 'v,2', '"v3"', 'ü'] ELSE '{}' END,
			CASE WHEN p % 7 = 0 THEN TIMESTAMPTZ '2030-01-01 00:00:00.5+00' + p * INTERVAL '1 microsecond' END,
			pos + p % 9
		FROM generate_series(1, $2) p, LATERAL (SELECT CASE WHEN p > $2 - 5 THEN $3::bigint + p ELSE p END AS pos) x`,
		ledger, n, far)

}

// BenchmarkTransfersPage reads pages of 100 transfers from the rows' raw
// values and through pgx's Scan of the same rows in text: what ledgerd
// spends reading a ListTransfers page (PostgreSQL's time included in
// ns/op).
//
//	go test -run '^$' -bench BenchmarkTransfersPage ./queries/
func BenchmarkTransfersPage(b *testing.B) {
	pool := migrated(b)
	const n, far = 10_000, int64(5_000_000_000)
	writeTransferShapes(b, pool, "bench", n, far)
	for _, c := range []struct {
		name    string
		formats []any
	}{{"raw", nil}, {"scanned", []any{pgx.QueryResultFormats{pgx.TextFormatCode}}}} {
		b.Run(c.name, func(b *testing.B) {
			after := uint64(0)
			for b.Loop() {
				sql, args, err := listTransfersSQL("bench", TransferFilter{}, after, 101, TransfersScanMax)
				testenv.NoError(b, err)
				rows, err := pool.Query(b.Context(), sql, append(c.formats, args...)...)
				testenv.NoError(b, err)
				var page []Transfer
				_, _, _, err = readTransferRows(rows, &page, true)
				testenv.NoError(b, err)
				if after = 0; len(page) == 101 {
					after = page[99].Position
				}
			}
		})
	}
}
