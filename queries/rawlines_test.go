package queries

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/internal/testenv"
)

// TestLinesReadRawAsScanned: statement lines of every shape the table
// holds (counter accounts empty, quoted, non-ASCII; metadata NULL, empty
// and escaped; references NULL and empty; pending releases; totals of 38
// digits at scales 0, 2 and 8; times before 1970, at PostgreSQL's epoch
// and in 9999) read from the rows' raw values are what pgx's Scan of the
// same rows in text reads, in the bulk read (StatementLines) and in
// statement pages (first, middle, last, empty, of an unknown account);
// and both reads take the raw path (a test that compared two scans would
// pass whatever the raw path did).
func TestLinesReadRawAsScanned(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	ledger := testenv.Name(t)
	const accounts, events = 6, 400
	number := writeLineShapes(t, pool, ledger, accounts, events)

	// The bulk read, both ways.
	bulk := func(formats ...any) (map[string]StatementLine, bool) {
		t.Helper()
		rows, err := pool.Query(t.Context(), statementLinesSQL, append(formats, ledger, int64(linesFar+2), number)...)
		testenv.NoError(t, err)
		defer rows.Close()
		lines := map[string]StatementLine{}
		raw, err := readStatementLines(rows, func(account string, seq uint32, line *StatementLine) error {
			key := fmt.Sprintf("%s@%d/%d", account, line.Position, seq)
			if _, ok := lines[key]; ok {
				return fmt.Errorf("line %s read twice", key)
			}
			lines[key] = *line
			return nil
		})
		testenv.NoError(t, err)
		return lines, raw
	}
	viaRaw, raw := bulk()
	viaScan, scanned := bulk(pgx.QueryResultFormats{pgx.TextFormatCode})
	if !raw || scanned {
		t.Fatalf("the bulk read took the raw path: %v, want true; the text read: %v, want false", raw, scanned)
	}
	if len(viaRaw) < events || !reflect.DeepEqual(viaRaw, viaScan) {
		for key, l := range viaRaw {
			if !reflect.DeepEqual(l, viaScan[key]) {
				t.Fatalf("line %s read raw as %+v, scanned as %+v", key, l, viaScan[key])
			}
		}
		t.Fatalf("%d lines read raw, %d scanned (at least %d written)", len(viaRaw), len(viaScan), events)
	}
	var shapes struct{ emptyCounter, noMetadata, emptyMetadata, pending, negative, before1970, wide bool }
	for key, l := range viaRaw {
		shapes.emptyCounter = shapes.emptyCounter || (l.CounterAccounts != nil && len(l.CounterAccounts) == 0)
		shapes.noMetadata = shapes.noMetadata || l.Metadata == nil
		shapes.emptyMetadata = shapes.emptyMetadata || (l.Metadata != nil && len(l.Metadata) == 0)
		shapes.pending = shapes.pending || l.Pending
		shapes.negative = shapes.negative || l.Amount[0] == '-'
		shapes.before1970 = shapes.before1970 || l.EffectiveAt.Year() == 1969
		shapes.wide = shapes.wide || (l.Position > 1<<32 && l.PostingIndex == 1<<32-1 && strings.HasSuffix(key, "/302"))
	}
	if shapes != (struct{ emptyCounter, noMetadata, emptyMetadata, pending, negative, before1970, wide bool }{
		true, true, true, true, true, true, true}) {
		t.Fatalf("the lines written lack a shape: %+v", shapes)
	}
	// What StatementLines serves is the raw read's.
	q := New(pool, nil)
	served := 0
	testenv.NoError(t, q.StatementLines(t.Context(), ledger, linesFar+2, func(account string, seq uint32, line *StatementLine) error {
		key := fmt.Sprintf("%s@%d/%d", account, line.Position, seq)
		if !reflect.DeepEqual(*line, viaRaw[key]) {
			return fmt.Errorf("line %s served as %+v, read as %+v", key, *line, viaRaw[key])
		}
		served++
		return nil
	}))
	if served != len(viaRaw) {
		t.Fatalf("%d lines served, %d read", served, len(viaRaw))
	}

	// Pages, both ways: each account's (and an unknown one's) statement
	// walked page by page, with and without the pending lines.
	page := func(q *StatementQuery, limit int, cursor *statementCursor, formats ...any) (Statement, bool, bool, error) {
		t.Helper()
		var pin *int64
		afterPos, afterSeq := int64(0), int64(-1)
		if cursor != nil {
			p := int64(cursor.pin)
			pin, afterPos, afterSeq = &p, int64(cursor.position), int64(cursor.seq)
		}
		rows, err := pool.Query(t.Context(), statementPageSQL, append(formats, q.Ledger, q.Account, pin, (*int64)(nil),
			int64(1), afterPos, afterSeq, q.IncludePending, limit+1)...)
		testenv.NoError(t, err)
		out, known, raw, err := readStatementPage(rows, q, limit, cursor)
		return out, known, raw, err
	}
	pages := 0
	for a := 1; a <= accounts+1; a++ {
		for _, pending := range []bool{false, true} {
			q := &StatementQuery{Ledger: ledger, Account: fmt.Sprintf("acc-%d", a), IncludePending: pending}
			var cursor *statementCursor
			for {
				got, known, raw, err := page(q, 7, cursor)
				want, wantKnown, scanned, wantErr := page(q, 7, cursor, pgx.QueryResultFormats{pgx.TextFormatCode})
				if !raw || scanned {
					t.Fatalf("%s: the page took the raw path: %v, want true; the text read: %v, want false", q.Account, raw, scanned)
				}
				if fmt.Sprint(err) != fmt.Sprint(wantErr) || known != wantKnown || !reflect.DeepEqual(got, want) {
					t.Fatalf("%s after %+v: read raw as %+v, %v, %v; scanned as %+v, %v, %v",
						q.Account, cursor, got, known, err, want, wantKnown, wantErr)
				}
				pages++
				if err != nil || got.NextCursor == "" {
					break
				}
				last := got.Lines[len(got.Lines)-1]
				next, err := decodeStatementCursor(got.NextCursor, q.fingerprint())
				testenv.NoError(t, err)
				if next.position != last.Position {
					t.Fatalf("%s: the next page after %d, the last line at %d", q.Account, next.position, last.Position)
				}
				cursor = &next
			}
		}
	}
	if pages < 2*(accounts+1)+events/7 {
		t.Fatalf("%d pages compared: the walk stopped early", pages)
	}
}

// writeLineShapes writes a ledger of accounts accounts (the last one
// without a line) whose lines, at positions accounts+1..events and three
// at linesFar, take every shape the table holds, checkpointed at
// linesFar+2; it returns the ledger's number.
func writeLineShapes(t testing.TB, pool *pgxpool.Pool, ledger string, accounts, events int) int64 {
	t.Helper()
	exec(t, pool, `INSERT INTO ledger_heads (ledger, position, hash) VALUES ($1, $2, decode(repeat('00', 32), 'hex'))`,
		ledger, events)
	exec(t, pool, `INSERT INTO projection_checkpoints (ledger, projection, version, position) VALUES ($1, $2, 1, $3)`,
		ledger, movementsProjection, events)
	exec(t, pool, `INSERT INTO movement_ledgers (ledger) VALUES ($1)`, ledger)
	// Account a has scale (0, 2, 8)[a % 3] and a normal balance by parity;
	// the last one has no line.
	exec(t, pool, `INSERT INTO movement_heads (ledger, ledger_no, account, asset, scale, normal_balance, opened_position)
		SELECT $1, ledger_no, 'acc-' || a, 'A' || a % 3, (ARRAY[0, 2, 8])[1 + a % 3],
			CASE a % 2 WHEN 0 THEN 'debit' ELSE 'credit' END, a
		FROM movement_ledgers, generate_series(1, $2) a WHERE ledger = $1`, ledger, accounts)
	exec(t, pool, `INSERT INTO movements (ledger_no, account_no, position, seq, posting_index, side, pending, kind,
			transfer_id, counter_accounts, amount, debits_posted, credits_posted, debits_pending, credits_pending,
			effective_at, recorded_at, reference, metadata)
		SELECT ledger_no, a, p, s, p % 7, CASE (p + s) % 2 WHEN 0 THEN 'debit' ELSE 'credit' END, p % 5 = 0,
			(ARRAY['TransferCommitted', 'PendingPosted', 'PendingVoided', 'TransferReversed'])[1 + p % 4],
			't-' || p || '-' || repeat('é', p % 3),
			CASE p % 3 WHEN 0 THEN ARRAY[]::text[] WHEN 1 THEN ARRAY['acc-1'] ELSE ARRAY['x,y', '{b}', '"q"', 'ü', '', 'NULL'] END,
			round(CASE WHEN p % 5 = 0 THEN -(p * 1.5) ELSE p * 1.5 END, sc),
			CASE WHEN p % 11 = 0 THEN trunc(99999999999999999999999999999999999999 / power(10::numeric, sc), sc)
				ELSE p * 1000 + a END,
			p * 997, p % 13, 0,
			(ARRAY[TIMESTAMPTZ '1969-12-31 23:59:59.999999+00', '2000-01-01 00:00:00+00', '9999-12-31 23:59:59.999999+00',
				'2026-12-06 12:34:56.000001+00'])[1 + p % 4],
			TIMESTAMPTZ '2026-01-01 00:00:00+00' + p * INTERVAL '1.000003 second',
			(ARRAY[NULL, '', 'ref-' || p])[1 + p % 3],
			(ARRAY[NULL, '{}'::jsonb, jsonb_build_object('k', 'v' || p, 'ü', E'"q\n', 'empty', '')])[1 + p % 3]
		FROM movement_ledgers, generate_series($2 + 1, $3) p, generate_series(0, p % 3) s,
			LATERAL (SELECT 1 + (p + s) % ($2 - 1) AS a) acc,
			LATERAL (SELECT (ARRAY[0, 2, 8])[1 + acc.a % 3] AS sc) scale
		WHERE ledger = $1`, ledger, accounts, events)
	// Three lines of account 1 far past the rest, whose numbers need
	// their every byte (positions past 2^32, a posting index past 2^16 and
	// one of -1, ranks past 255), one with the JSON null for metadata; the
	// head and the checkpoint move to the last of them.
	exec(t, pool, `INSERT INTO movements (ledger_no, account_no, position, seq, posting_index, side, pending, kind,
			transfer_id, counter_accounts, amount, debits_posted, credits_posted, debits_pending, credits_pending,
			effective_at, recorded_at, reference, metadata)
		SELECT ledger_no, 1, $2::bigint + k, 300 + k, (ARRAY[70000, 2147483647, -1])[1 + k], 'debit', false,
			'TransferCommitted', 'far-' || k, ARRAY['acc-2'], 1, k, 0, 0, 0, now(), now(), NULL,
			CASE k WHEN 0 THEN 'null'::jsonb END
		FROM movement_ledgers, generate_series(0, 2) k WHERE ledger = $1`, ledger, linesFar)
	exec(t, pool, `UPDATE ledger_heads SET position = $2 WHERE ledger = $1`, ledger, linesFar+2)
	exec(t, pool, `UPDATE projection_checkpoints SET position = $2 WHERE ledger = $1`, ledger, linesFar+2)
	var number int64
	testenv.NoError(t, pool.QueryRow(t.Context(), `SELECT ledger_no FROM movement_ledgers WHERE ledger = $1`, ledger).Scan(&number))
	return number
}

// linesFar is the position of writeLineShapes' far lines; the last of
// the three, linesFar+2, is its ledger's head.
const linesFar = 5_000_000_000

// BenchmarkStatementPage reads pages of 100 lines of an account of about
// 5,000, from the rows' raw values and through pgx's Scan of the same rows
// in text: what ledgerd spends reading a ListStatement's page (the
// query's time in PostgreSQL included in ns/op, not in the process's CPU).
//
//	go test -run '^$' -bench BenchmarkStatementPage ./queries/
func BenchmarkStatementPage(b *testing.B) {
	pool := migrated(b)
	const accounts, events = 3, 10_000
	writeLineShapes(b, pool, "bench", accounts, events)
	q := &StatementQuery{Ledger: "bench", Account: "acc-1", IncludePending: true}
	for _, c := range []struct {
		name    string
		formats []any
	}{{"raw", nil}, {"scanned", []any{pgx.QueryResultFormats{pgx.TextFormatCode}}}} {
		b.Run(c.name, func(b *testing.B) {
			pos := int64(0)
			for b.Loop() {
				rows, err := pool.Query(b.Context(), statementPageSQL, append(c.formats, q.Ledger, q.Account, (*int64)(nil),
					(*int64)(nil), int64(1), pos, int64(-1), true, 101)...)
				testenv.NoError(b, err)
				out, _, _, err := readStatementPage(rows, q, 100, nil)
				testenv.NoError(b, err)
				if pos = 0; len(out.Lines) == 100 {
					pos = int64(out.Lines[99].Position)
				}
			}
		})
	}
}
