package eventstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// ProjectorLeaseApplicationName is the application_name of the session that
// holds a process's projector leases.
const ProjectorLeaseApplicationName = "ledgerd-projector-lease"

// projectorPingTimeout bounds one ping, or one unlock, on the projector
// leases' session. It is longer than a writer lease's (leasePingTimeout):
// one that times out ends the session, and with it every projector lease
// of the process, which stops the relays and projections until the next
// write or sweep starts them again. A loaded box (a benchmark beside
// ledgerd) answered a ping later than 1 s, and nothing is gained by giving
// up sooner: these leases fence nothing, and a session cut off for good is
// ended by PostgreSQL's keepalives (leaseSessionConfig) whatever this
// process does.
const projectorPingTimeout = 5 * time.Second

// Locks hands out per-ledger projector leases: session-level advisory locks,
// all on one session of their own, which a process holds for as many ledgers
// as it projects. A projector lease says where a ledger's relay and
// projections run; it fences nothing (the stream's expected sequence and the
// projections' checkpoints keep every event applied once, whoever runs
// them), so one session serves them all and one ping watches them all.
//
// When the session dies every lease on it is lost at once: Lost's channel
// closes, and the next TryAcquire opens a new session.
type Locks struct {
	cfg  *pgx.ConnConfig
	node string

	// ops serializes the uses of the session (a pgx.Conn is not safe for
	// concurrent use): connecting, locking, unlocking, pinging. mu guards
	// the fields below and is never held across a database call, so that
	// Release, which callers make under their own locks, never waits on
	// the database.
	ops  sync.Mutex
	mu   sync.Mutex
	conn *pgx.Conn
	held map[string]bool
	lost chan struct{} // closed when conn's session is found gone
	stop chan struct{}
}

// NewLocks returns projector leases on sessions made with cfg (copied),
// recorded as node's (ledger_placements).
func NewLocks(cfg *pgx.ConnConfig, node string) *Locks {
	return &Locks{cfg: leaseSessionConfig(cfg, ProjectorLeaseApplicationName), node: node, held: map[string]bool{}}
}

// TryAcquire takes ledger's projector lease unless another session holds
// it; one this process holds is answered ok. lost closes when the lease is
// lost with its session (Release does not close it).
//
// Errors: the error of connecting or of the lock query.
func (l *Locks) TryAcquire(ctx context.Context, ledger string) (lost <-chan struct{}, ok bool, err error) {
	l.ops.Lock()
	defer l.ops.Unlock()
	// The caller's context may end while this waits for the session (a
	// restart cancels it): it is checked here, and the statements run on
	// their own bound, so that one caller giving up never ends the session
	// every lease of the process lives on.
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	conn, lostCh, err := l.session(ctx)
	if err != nil {
		return nil, false, err
	}
	l.mu.Lock()
	held := l.held[ledger]
	l.mu.Unlock()
	if held {
		return lostCh, true, nil
	}
	qctx, cancel := context.WithTimeout(context.Background(), leaseConnectTimeout)
	defer cancel()
	// Advisory locks count: taken again on this session after a Release
	// whose unlock has not run yet, the lock outlives that unlock.
	if err := conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1)`, ProjectorKey(ledger)).Scan(&ok); err != nil {
		l.endSession(conn) // the session failed: its locks are gone or in doubt
		return nil, false, fmt.Errorf("projector lease of %s: %w", ledger, err)
	}
	if !ok {
		return nil, false, nil
	}
	if err := placeOn(qctx, conn, ledger, RoleProjector, l.node); err != nil {
		if _, uerr := conn.Exec(qctx, `SELECT pg_advisory_unlock($1)`, ProjectorKey(ledger)); uerr != nil {
			l.endSession(conn)
		}
		return nil, false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != conn {
		return nil, false, fmt.Errorf("projector lease of %s: %w", ledger, ErrLeaseLost)
	}
	l.held[ledger] = true
	return lostCh, true, nil
}

// Release gives ledger's projector lease up, if this process holds it. It
// does not wait for the database: the unlock runs on a goroutine of its
// own, after which another process may take the lease.
func (l *Locks) Release(ledger string) {
	l.mu.Lock()
	conn, held := l.conn, l.held[ledger]
	delete(l.held, ledger)
	l.mu.Unlock()
	if !held || conn == nil {
		return
	}
	go func() {
		l.ops.Lock()
		defer l.ops.Unlock()
		l.mu.Lock()
		current := l.conn == conn
		l.mu.Unlock()
		if !current {
			return // the session ended: the lock went with it
		}
		// As long as a ping may take: an unlock that times out ends the
		// session, and every other lease of the process with it.
		ctx, cancel := context.WithTimeout(context.Background(), projectorPingTimeout)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, ProjectorKey(ledger)); err != nil {
			l.endSession(conn)
		}
	}()
}

// Close ends the session: every lease goes with it.
func (l *Locks) Close() {
	l.ops.Lock()
	defer l.ops.Unlock()
	l.mu.Lock()
	conn := l.conn
	l.mu.Unlock()
	if conn != nil {
		l.endSession(conn)
	}
}

// session returns the open session, opening one if none is. l.ops is held.
func (l *Locks) session(ctx context.Context) (*pgx.Conn, chan struct{}, error) {
	l.mu.Lock()
	conn, lost := l.conn, l.lost
	l.mu.Unlock()
	if conn != nil && !conn.IsClosed() {
		return conn, lost, nil
	}
	if conn != nil {
		l.endSession(conn)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseConnectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, l.cfg.Copy())
	if err != nil {
		return nil, nil, fmt.Errorf("projector lease connection: %w", err)
	}
	lost, stop := make(chan struct{}), make(chan struct{})
	l.mu.Lock()
	l.conn, l.lost, l.stop = conn, lost, stop
	l.mu.Unlock()
	go l.watch(conn, lost, stop)
	return conn, lost, nil
}

// endSession ends conn's session, if it is still the current one, and
// forgets its leases: their lost channel closes (watch). l.ops is held:
// nothing else uses conn meanwhile.
func (l *Locks) endSession(conn *pgx.Conn) {
	l.mu.Lock()
	if l.conn != conn {
		l.mu.Unlock()
		return
	}
	close(l.stop)
	l.conn = nil
	clear(l.held)
	l.mu.Unlock()
	closeConn(conn) // outside mu: it may take the ping timeout
}

// watch pings conn every LeasePingEvery; when a ping fails it ends the
// session. It closes lost as it returns, whichever way.
func (l *Locks) watch(conn *pgx.Conn, lost, stop chan struct{}) {
	defer close(lost)
	t := time.NewTicker(LeasePingEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		l.ops.Lock()
		l.mu.Lock()
		current := l.conn == conn
		l.mu.Unlock()
		if !current {
			l.ops.Unlock()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), projectorPingTimeout)
		err := conn.Ping(ctx)
		cancel()
		if err != nil {
			l.endSession(conn)
		}
		l.ops.Unlock()
		if err != nil {
			return
		}
	}
}
