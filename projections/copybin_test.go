package projections_test

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// TestCopyRowsTypes: each kind of field the projectors copy in binary reads
// back as it was written (the NUMERIC has TestNumericEncoding): strings
// with quotes and non-ASCII, NULLs, the integers' extremes, times to the
// microsecond either side of PostgreSQL's epoch, empty and non-empty text
// arrays, JSON that needs escaping.
func TestCopyRowsTypes(t *testing.T) {
	t.Parallel()
	conn, err := pgx.Connect(t.Context(), testenv.PostgresURL(t))
	testenv.NoError(t, err)
	defer conn.Close(t.Context())
	_, err = conn.Exec(t.Context(), `CREATE TEMP TABLE kinds (i int PRIMARY KEY, t text NOT NULL, n text, s int2, i4 int4,
		i8 int8, b bool, at timestamptz, a text[] NOT NULL, j jsonb)`)
	testenv.NoError(t, err)
	rows := []projections.CopyTypesRow{
		{Text: "user:1", MaybeText: "ref-1", Small: 32767, Int: 2147483647, Big: 9223372036854775807, Flag: true,
			At: time.Date(2026, 12, 5, 10, 11, 12, 123456789, time.UTC), Texts: []string{"user:2"},
			Metadata: map[string]string{"k": "v", "a<b>": "\"quoted\" \\ é \u2028"}},
		{Text: "é ü \"'", Small: -32768, Int: -2147483648, Big: -9223372036854775808,
			At: time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.FixedZone("x", -5*3600)), Texts: nil, Metadata: map[string]string{}},
		{Text: "", At: time.Date(1969, 7, 20, 20, 17, 40, 500_000_000, time.UTC), Texts: []string{"a", "", "c,d"}},
	}
	testenv.NoError(t, projections.CopyTypes(t.Context(), conn, "kinds", rows))
	got, err := conn.Query(t.Context(), `SELECT t, n, s, i4, i8, b, at, a, j FROM kinds ORDER BY i`)
	testenv.NoError(t, err)
	defer got.Close()
	for i := 0; got.Next(); i++ {
		var (
			r        projections.CopyTypesRow
			maybe    *string
			metadata []byte
		)
		testenv.NoError(t, got.Scan(&r.Text, &maybe, &r.Small, &r.Int, &r.Big, &r.Flag, &r.At, &r.Texts, &metadata))
		want := rows[i]
		if maybe != nil {
			r.MaybeText = *maybe
		}
		if metadata != nil {
			testenv.NoError(t, json.Unmarshal(metadata, &r.Metadata))
		}
		want.At = want.At.Truncate(time.Microsecond)
		if want.Texts == nil {
			want.Texts = []string{}
		}
		if r.Text != want.Text || r.MaybeText != want.MaybeText || r.Small != want.Small || r.Int != want.Int ||
			r.Big != want.Big || r.Flag != want.Flag || !r.At.Equal(want.At) || !slices.Equal(r.Texts, want.Texts) ||
			!maps.Equal(r.Metadata, want.Metadata) || (r.Metadata == nil) != (want.Metadata == nil) {
			t.Errorf("row %d reads back as %+v, want %+v", i, r, want)
		}
	}
	testenv.NoError(t, got.Err())
}
