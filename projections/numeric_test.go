package projections_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// TestNumericEncoding writes amounts around every boundary of NUMERIC's
// base-10,000 digits, both signs and the 38 digits a Units holds, at scales
// 0 to 18, with COPY as the projectors do, through their binary encoder and
// through pgx's own (math/big); PostgreSQL must print each exactly
// as domain formats it ("0.00", not "0").
func TestNumericEncoding(t *testing.T) {
	t.Parallel()
	values := []string{"0", "1", "-1", "5", "9", "10", "99", "100", "999", "1000", "9999", "10000", "10001",
		"12345", "99990000", "100000000", "-123456789", "9223372036854775807", "-9223372036854775808",
		"18446744073709551616", "99999999999999999999999999999999999999", "-99999999999999999999999999999999999999",
		"10000000000000000000000000000000000000", "-10000000000000000000000000000000000000"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		values = append(values, fmt.Sprint(rng.Int64()>>rng.IntN(63)))
	}
	type amount struct {
		u     domain.Units
		scale uint8
	}
	var cases []amount
	for _, v := range values {
		d, err := domain.ParseDecimal(v)
		testenv.NoError(t, err)
		u, err := d.Units(0)
		testenv.NoError(t, err)
		for _, scale := range []uint8{0, 1, 2, 3, 4, 5, 7, 8, 12, 18} {
			cases = append(cases, amount{u, scale})
		}
	}
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("without math/big=%v", fast), func(t *testing.T) {
			conn, err := pgx.Connect(t.Context(), testenv.PostgresURL(t))
			testenv.NoError(t, err)
			defer conn.Close(t.Context())
			_, err = conn.Exec(t.Context(), `CREATE TEMP TABLE amounts (i int PRIMARY KEY, v numeric NOT NULL)`)
			testenv.NoError(t, err)
			if fast {
				us, scales := make([]domain.Units, len(cases)), make([]uint8, len(cases))
				for i, c := range cases {
					us[i], scales[i] = c.u, c.scale
				}
				testenv.NoError(t, projections.CopyAmounts(t.Context(), conn, "amounts", us, scales))
			} else {
				rows := make([][]any, len(cases))
				for i, c := range cases {
					rows[i] = []any{int32(i), projections.NumericOf(c.u, c.scale)}
				}
				_, err = conn.CopyFrom(t.Context(), pgx.Identifier{"amounts"}, []string{"i", "v"}, pgx.CopyFromRows(rows))
				testenv.NoError(t, err)
			}
			got, err := pgx.CollectRows(must(conn.Query(t.Context(), `SELECT v::text FROM amounts ORDER BY i`)), pgx.RowTo[string])
			testenv.NoError(t, err)
			for i, c := range cases {
				if want := c.u.Format(c.scale); got[i] != want {
					t.Errorf("%s minor units at scale %d: PostgreSQL has %s, want %s", c.u, c.scale, got[i], want)
				}
			}
		})
	}
}

func must(rows pgx.Rows, err error) pgx.Rows {
	if err != nil {
		panic(err)
	}
	return rows
}
