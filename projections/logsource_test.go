package projections_test

import (
	"testing"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/projections/sourcetest"
)

// TestLogSourceContract runs the projections.Source contract on the
// PostgreSQL log, a rebuild's source.
func TestLogSourceContract(t *testing.T) {
	t.Parallel()
	sourcetest.Run(t, func(t *testing.T) sourcetest.Harness {
		store := eventstore.New(xferPool(t))
		return sourcetest.Harness{
			Store: store,
			Open: func(_ *testing.T, ledger string) projections.Source {
				return projections.NewLogSource(store, ledger)
			},
		}
	})
}
