package queries

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/internal/testenv"
)

// TestProjectionStatusFaults: a projection's own fault makes it
// CHAIN_BROKEN, its stream's fault STREAM_DIVERGED (its own first); Faults
// lists both kinds, up to FaultsMax, and says when there are more.
func TestProjectionStatusFaults(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	ledger, other := testenv.Name(t), testenv.Name(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fakeLedger(t, pool, ledger, 10, 10, t0)
	fakeLedger(t, pool, other, 2, 2, t0)
	for _, name := range []string{"broken", "waiting"} {
		checkpoint(t, pool, ledger, name, 4, &t0)
	}
	checkpoint(t, pool, other, "fine", 2, &t0)
	checkpoint(t, pool, ledger+"~rebuild", "broken", 1, &t0) // a shadow is no ledger
	exec(t, pool, `UPDATE projection_checkpoints SET fault = 'broken at 5' WHERE projection = 'broken'`)
	exec(t, pool, `INSERT INTO stream_faults (ledger, fault) VALUES ($1, 'ahead')`, ledger)

	type state struct{ Ledger, Name, State, Reason, Stream string }
	var got []state
	for _, l := range []string{ledger, other} {
		sts, err := q.GetProjectionStatus(t.Context(), l)
		testenv.NoError(t, err)
		for _, s := range sts {
			got = append(got, state{s.Ledger, s.Name, s.State, s.Reason, s.StreamFault})
		}
	}
	want := []state{
		{ledger, "broken", StateChainBroken, "broken at 5", "ahead"},
		{ledger, "waiting", StateStreamDiverged, "ahead", "ahead"},
		{other, "fine", StateOK, "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	faults, more, err := q.Faults(t.Context())
	testenv.NoError(t, err)
	wantFaults := []Fault{{ledger, "", "ahead"}, {ledger, "broken", "broken at 5"}}
	if diff := cmp.Diff(wantFaults, faults); diff != "" || more {
		t.Errorf("faults (-want +got), more %v:\n%s", more, diff)
	}

	// At the bound, and past it.
	exec(t, pool, `INSERT INTO stream_faults (ledger, fault) SELECT 'z' || i, 'x' FROM generate_series(1, $1::int) i`, FaultsMax-2)
	if faults, more, err = q.Faults(t.Context()); err != nil || len(faults) != FaultsMax || more {
		t.Errorf("%d faults: %d, more %v, %v; want %d, no more", FaultsMax, len(faults), more, err, FaultsMax)
	}
	exec(t, pool, `INSERT INTO stream_faults (ledger, fault) VALUES ('zz', 'x')`)
	if faults, more, err = q.Faults(t.Context()); err != nil || len(faults) != FaultsMax || !more {
		t.Errorf("%d faults: %d, more %v, %v; want %d and more", FaultsMax+1, len(faults), more, err, FaultsMax)
	}
}
