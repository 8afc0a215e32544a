package projections_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// groupOf runs a group of the projections on the ledger's stream (batches of
// size) until the end of parent or of the test; it returns the group's
// members. A member that leaves the group runs alone on its own source.
func (e *env) groupOf(parent context.Context, size int, projs ...projections.Projector) []*projections.Runner {
	return e.groupWith(parent, size, nil, 0, projs...)
}

// groupWith is groupOf with alone, when set, instead of running a member
// that leaves, and a lag bound (0: the default).
func (e *env) groupWith(parent context.Context, size int, alone func(context.Context, *projections.Runner), lag uint64,
	projs ...projections.Projector) []*projections.Runner {
	runners := make([]*projections.Runner, len(projs))
	for i, p := range projs {
		runners[i] = projections.NewRunner(e.pool, e.ledger, p, nil, testLogger(e.t))
	}
	if alone == nil {
		alone = e.runAlone
	}
	// Each batch read ahead, however small: the tests' batches are.
	g := projections.NewGroup(e.pool, e.ledger, runners, batches{src: e.natsSource(), size: size}, alone,
		testLogger(e.t)).WithAheadFrom(1)
	if lag > 0 {
		g.WithLagMax(lag)
	}
	stop := start(e.t, parent, "group", g.Run)
	e.t.Cleanup(stop)
	return runners
}

// runAlone runs r on a source of its own until ctx ends, as ledgerd does
// with a member that leaves its group (the source closes after the runner).
func (e *env) runAlone(ctx context.Context, r *projections.Runner) {
	src := natsbus.NewSource(e.ledger, jetStream(e.t), e.store, natsbus.StreamOptions{}, testLogger(e.t))
	defer src.Close()
	_ = r.WithSource(src).Run(ctx)
}

func waitAll(t *testing.T, runners []*projections.Runner, pos uint64) {
	t.Helper()
	for _, r := range runners {
		waitFor(t, &runningRunner{Runner: r}, pos)
	}
}

// TestGroupAppliesEachMemberExactlyOnce: a group whose members stand at
// different checkpoints (a lone runner took movements part of the way)
// applies the log once to each. A record applied twice would fail the
// statement lines' and transfers' primary keys, and the member would leave
// the group; one skipped or applied twice moves the balances or the trial
// balance off the replay.
func TestGroupAppliesEachMemberExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.runWorkload(200, 4)
	lone := e.startRunner(t.Context(), projections.NewMovements(), batches{src: e.natsSource(), size: 7, end: head})
	waitFor(t, lone, head/2)
	lone.stop()
	if at := e.checkpoint(); at < head/2 || at >= head {
		t.Fatalf("movements alone stopped at %d, want %d..%d", at, head/2, head-1)
	}
	left := make(chan *projections.Runner, 3)
	alone := func(_ context.Context, r *projections.Runner) { left <- r }
	members := e.groupWith(t.Context(), 11, alone, 0, projections.Transfers{}, projections.Balances{}, projections.NewMovements())
	waitAll(t, members, head)
	e.checkAt(head)
	e.checkTrialAt(head)
	if len(left) > 0 {
		t.Errorf("%d members left the group", len(left))
	}
	var transfers, lines int
	testenv.NoError(t, e.pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM transfer_rows WHERE ledger = $1),
		(SELECT count(*) FROM movement_lines WHERE ledger = $1)`, e.ledger).Scan(&transfers, &lines))
	if transfers == 0 || lines < 2*transfers {
		t.Errorf("%d transfers and %d statement lines after the group", transfers, lines)
	}
}

// TestGroupFoldedAheadBatchRolledBack: a group reads, checks, decodes and
// (for its members that stage their batches) folds the next batch while
// the last one's transaction runs. Here the statement lines' COPY of the
// batch holding position failAt fails twice, after the batch after it was
// folded ahead over the movements projector's cache: nothing of that fold
// may stay, and each member ends where a replay of the log is.
func TestGroupFoldedAheadBatchRolledBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.runWorkload(300, 7)
	failAt := head / 2
	e.failCopiesAt("movements", failAt, 2)
	left := make(chan *projections.Runner, 3)
	alone := func(_ context.Context, r *projections.Runner) { left <- r }
	movements := projections.NewMovements()
	members := e.groupWith(t.Context(), 7, alone, 0, projections.Transfers{}, projections.Balances{}, movements)
	waitAll(t, members, head)
	if n := e.copyFailures(); n < 3 {
		t.Fatalf("the COPY of position %d was tried %d times, want 3: the failure was not exercised", failAt, n)
	}
	if len(left) > 0 {
		t.Fatalf("%d members left the group", len(left))
	}
	e.checkAt(head)
	e.checkTrialAt(head)
	e.checkSameAsOneTransaction(movements, head)
}

// TestGroupRefusesAForgedUndecodableBatch: a batch that chains but is not
// the log's, and whose last event cannot be decoded, is refused as a broken
// chain at once (every member leaves to run alone), not retried as one
// member's failure until it is ejected: the group decodes before its
// transaction, whose move of the checkpoint would have found the forgery.
func TestGroupRefusesAForgedUndecodableBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.runWorkload(40, 3)
	src := &faultySource{src: batches{src: e.natsSource(), size: 5, end: head}, fault: forgedGarbage, at: 33}
	src.active.Store(true)
	projs := []projections.Projector{projections.Transfers{}, projections.Balances{}, projections.NewMovements()}
	runners := make([]*projections.Runner, len(projs))
	for i, p := range projs {
		runners[i] = projections.NewRunner(e.pool, e.ledger, p, nil, testLogger(t))
	}
	left := make(chan *projections.Runner, len(runners))
	alone := func(ctx context.Context, r *projections.Runner) { left <- r; e.runAlone(ctx, r) }
	g := projections.NewGroup(e.pool, e.ledger, runners, src, alone, testLogger(t)).WithAheadFrom(1)
	stop := start(t, t.Context(), "group", g.Run)
	t.Cleanup(stop)
	for range runners {
		select {
		case <-left:
		case <-time.After(waitMax):
			t.Fatal("a member is still in the group after the forged batch")
		}
	}
	// One refusal (two: the batch may have been read ahead once, then
	// again): a member's failure would have been retried three times.
	if n := src.served.Load(); n > 2 {
		t.Fatalf("the forged batch was served %d times, want it refused at once", n)
	}
	waitAll(t, runners, head)
	e.checkAt(head)
	e.checkTrialAt(head)
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
	alone := func(ctx context.Context, r *projections.Runner) { left <- r; <-ctx.Done() }
	members := e.groupWith(t.Context(), 1000, alone, 0, projections.Transfers{}, refusing{projections.Balances{}})
	select {
	case r := <-left:
		if r != members[1] {
			t.Fatalf("%p left the group, want the refusing member %p", r, members[1])
		}
	case <-time.After(waitMax):
		t.Fatal("the refusing member is still in the group")
	}
	waitAll(t, members[:1], head)
	if at := e.checkpointOf(projections.Balances{}, e.ledger); at != 0 {
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
	killer := &killingProjector{Projector: projections.NewMovements(), killAt: 3, kill: kill}
	e.groupOf(ctx, 13, projections.Transfers{}, killer, projections.Balances{})
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
	e.checkTrialAt(at)
	members := e.groupOf(t.Context(), 13, projections.Transfers{}, projections.Balances{}, projections.NewMovements())
	waitAll(t, members, head)
	e.checkAt(head)
	e.checkTrialAt(head)
}

// TestGroupMemberFarBehindCatchesUpAloneAndRejoins: a member further behind
// than the lag bound does not hold the group back; it catches up alone and
// rejoins, and the group then carries it on.
func TestGroupMemberFarBehindCatchesUpAloneAndRejoins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.runWorkload(150, 7)
	lone := e.startRunner(t.Context(), projections.NewMovements(), batches{src: e.natsSource(), size: 50, end: head})
	waitFor(t, lone, head)
	lone.stop()
	var alone atomic.Int32
	run := func(ctx context.Context, r *projections.Runner) {
		alone.Add(1)
		e.runAlone(ctx, r)
	}
	members := e.groupWith(t.Context(), 5, run, 20, projections.NewMovements(), projections.Transfers{})
	waitAll(t, members, head)
	if alone.Load() != 1 {
		t.Errorf("%d members ran alone, want the transfers projection only", alone.Load())
	}
	// Rejoined, it moves with the group: alone, stopped, it would not.
	more := make([]domain.Command, 30)
	for i := range more {
		more[i] = &domain.CreateTransfer{ID: fmt.Sprintf("more-%d", i), Postings: []domain.PostingInput{
			{Debit: accountID("USD", 0), Credit: accountID("USD", 1), Asset: "USD", Amount: "1.00"}}}
	}
	e.submit(more)
	head += uint64(len(more))
	waitAll(t, members, head)
	e.checkAt(head)
}

// TestGroupMemberWithLockedCheckpointWaitsAlone: a member whose checkpoint
// another transaction holds (a rebuild's swap) leaves to wait for it alone;
// the others go on, and it catches up and rejoins once the lock is gone.
func TestGroupMemberWithLockedCheckpointWaitsAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	locked := projections.NewMovements()
	_, err := e.pool.Exec(ctx, `INSERT INTO projection_checkpoints (ledger, projection, version, position)
		VALUES ($1, $2, $3, 0)`, e.ledger, locked.Name(), locked.Version())
	testenv.NoError(t, err)
	swap, err := e.pool.Begin(ctx)
	testenv.NoError(t, err)
	defer func() { _ = swap.Rollback(context.Background()) }()
	_, err = swap.Exec(ctx, `SELECT 1 FROM projection_checkpoints WHERE ledger = $1 AND projection = $2 FOR UPDATE`,
		e.ledger, locked.Name())
	testenv.NoError(t, err)

	head := e.runWorkload(100, 9)
	var alone atomic.Int32
	run := func(ctx context.Context, r *projections.Runner) {
		alone.Add(1)
		e.runAlone(ctx, r)
	}
	members := e.groupWith(ctx, 17, run, 0, locked, projections.Transfers{})
	waitAll(t, members[1:], head)
	if at := members[0].Position(); at != 0 {
		t.Fatalf("the locked member applied up to %d", at)
	}
	testenv.NoError(t, swap.Rollback(ctx))
	waitAll(t, members, head)
	e.checkAt(head)
	if alone.Load() != 1 {
		t.Errorf("%d members ran alone, want the locked one", alone.Load())
	}
}
