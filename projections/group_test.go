package projections_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// groupOf runs a group of the projections on the ledger's stream (batches of
// size) until the end of the test; it returns the members. A member that
// leaves the group is sent on left.
func (e *env) groupOf(parent context.Context, size int, left chan<- *projections.Runner, projs ...projections.Projector) []*projections.Runner {
	runners := make([]*projections.Runner, len(projs))
	for i, p := range projs {
		runners[i] = projections.NewRunner(e.pool, e.ledger, p, nil, testLogger(e.t))
	}
	alone := func(_ context.Context, r *projections.Runner) {
		if left == nil {
			e.t.Errorf("%v left the group", r)
			return
		}
		left <- r
	}
	g := projections.NewGroup(e.pool, e.ledger, runners, batches{src: e.natsSource(), size: size}, alone, testLogger(e.t))
	stop := start(e.t, parent, "group", g.Run)
	e.t.Cleanup(stop)
	return runners
}

func waitAll(t *testing.T, runners []*projections.Runner, pos uint64) {
	t.Helper()
	for _, r := range runners {
		waitFor(t, &runningRunner{Runner: r}, pos)
	}
}

// TestGroupAppliesEachMemberExactlyOnce: a group whose members stand at
// different checkpoints (a lone runner took balances part of the way) applies
// the log once to each. A record applied twice would fail the statement
// lines' and transfers' primary keys, and the member would leave the group.
func TestGroupAppliesEachMemberExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.runWorkload(200, 4)
	lone := e.startRunner(t.Context(), projections.Balances{}, batches{src: e.natsSource(), size: 7, end: head})
	waitFor(t, lone, head/2)
	lone.stop()
	if at := e.checkpoint(); at < head/2 || at >= head {
		t.Fatalf("balances alone stopped at %d, want %d..%d", at, head/2, head-1)
	}
	members := e.groupOf(t.Context(), 11, nil, projections.Transfers{}, projections.Balances{}, projections.NewMovements())
	waitAll(t, members, head)
	e.checkAt(head)
	var transfers, lines int
	testenv.NoError(t, e.pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM transfers WHERE ledger = $1),
		(SELECT count(*) FROM movements WHERE ledger = $1)`, e.ledger).Scan(&transfers, &lines))
	if transfers == 0 || lines < 2*transfers {
		t.Errorf("%d transfers and %d statement lines after the group", transfers, lines)
	}
}

// refusing is a projector that refuses every batch.
type refusing struct{ projections.Projector }

func (refusing) Apply(context.Context, pgx.Tx, string, []eventstore.Record) error {
	return errors.New("refused")
}

// TestGroupMemberThatFailsLeaves: a member that fails every batch leaves the
// group to run alone, and the others go on.
func TestGroupMemberThatFailsLeaves(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.runWorkload(50, 5)
	left := make(chan *projections.Runner, 1)
	members := e.groupOf(t.Context(), 1000, left, projections.Transfers{}, refusing{projections.Balances{}})
	select {
	case r := <-left:
		if r != members[1] {
			t.Fatalf("%p left the group, want the refusing member %p", r, members[1])
		}
	case <-time.After(waitMax):
		t.Fatal("the refusing member is still in the group")
	}
	waitAll(t, members[:1], head)
	if at := e.checkpoint(); at != 0 {
		t.Errorf("the refusing member's checkpoint moved to %d", at)
	}
}

// TestGroupKilledMidBatchAppliesOnce: a group killed after a member applied
// its part of a batch, before the commit, loses the whole batch; a new group
// applies it once.
func TestGroupKilledMidBatchAppliesOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.runWorkload(200, 6)
	ctx, kill := context.WithCancel(t.Context())
	killer := &killingProjector{Projector: projections.Balances{}, killAt: 3, kill: kill}
	e.groupOf(ctx, 13, nil, projections.Transfers{}, killer, projections.NewMovements())
	select {
	case <-ctx.Done():
	case <-time.After(waitMax):
		t.Fatal("the group was not killed")
	}
	at := e.checkpoint()
	if at >= head {
		t.Fatalf("killed at checkpoint %d, want < %d", at, head)
	}
	e.checkAt(at)
	members := e.groupOf(t.Context(), 13, nil, projections.Transfers{}, projections.Balances{}, projections.NewMovements())
	waitAll(t, members, head)
	e.checkAt(head)
}
