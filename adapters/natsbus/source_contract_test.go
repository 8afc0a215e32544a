package natsbus_test

import (
	"sync"
	"testing"

	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/projections/sourcetest"
)

// TestSourceContract runs the projections.Source contract on the stream: a
// relay per ledger publishes what the suite appends to the log.
func TestSourceContract(t *testing.T) {
	t.Parallel()
	sourcetest.Run(t, func(t *testing.T) sourcetest.Harness {
		store := openStore(t)
		var (
			mu     sync.Mutex
			relays = map[string]*runningRelay{}
		)
		return sourcetest.Harness{
			Store: store,
			Open: func(t *testing.T, ledger string) projections.Source {
				mu.Lock()
				defer mu.Unlock()
				if relays[ledger] == nil {
					relays[ledger] = startRelay(t, ledger, jetStream(t), store)
				}
				return newSource(t, store, ledger)
			},
			Appended: func(ledger string) {
				mu.Lock()
				defer mu.Unlock()
				if r := relays[ledger]; r != nil {
					r.Wake()
				}
			},
		}
	})
}
