package projections

import (
	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
)

// NumericValue is u minor units at scale as the movements projector writes
// a NUMERIC; UseUnitsCodec makes conn encode it without math/big.
func NumericValue(u domain.Units, scale uint8) any { return unitsNumeric{u, scale} }

// UseUnitsCodec is useUnitsCodec, for tests.
func UseUnitsCodec(conn *pgx.Conn) { useUnitsCodec(conn) }

// WithLagMax sets how far behind the group's lead a member may be (lagMax).
func (g *Group) WithLagMax(n uint64) *Group {
	g.lagMax = n
	return g
}
