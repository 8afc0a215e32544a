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

	// mu serializes the uses of conn (a pgx.Conn is not safe for
	// concurrent use) and guards the fields below.
	mu   sync.Mutex
	conn *pgx.Conn
	held map[string]bool
	lost chan struct{} // closed when conn's session is found gone
	stop chan struct{}
}

// NewLocks returns projector leases on sessions made with cfg (copied),
// recorded as node's (ledger_placements).
func NewLocks(cfg *pgx.ConnConfig, node string) *Locks {
	c := cfg.Copy()
	if c.RuntimeParams == nil {
		c.RuntimeParams = map[string]string{}
	}
	c.RuntimeParams["application_name"] = ProjectorLeaseApplicationName
	return &Locks{cfg: c, node: node, held: map[string]bool{}}
}

// TryAcquire takes ledger's projector lease unless another session holds
// it; one this process holds is answered ok. lost closes when the lease is
// lost with its session (Release does not close it).
//
// Errors: the error of connecting or of the lock query.
func (l *Locks) TryAcquire(ctx context.Context, ledger string) (lost <-chan struct{}, ok bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.session(ctx); err != nil {
		return nil, false, err
	}
	if l.held[ledger] {
		return l.lost, true, nil
	}
	if err := l.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, ProjectorKey(ledger)).Scan(&ok); err != nil {
		l.endSession()
		return nil, false, fmt.Errorf("projector lease of %s: %w", ledger, err)
	}
	if !ok {
		return nil, false, nil
	}
	if err := placeOn(ctx, l.conn, ledger, RoleProjector, l.node); err != nil {
		l.unlock(ctx, ledger)
		return nil, false, err
	}
	l.held[ledger] = true
	return l.lost, true, nil
}

// Release gives ledger's projector lease up, if this process holds it.
func (l *Locks) Release(ledger string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.held[ledger] || l.conn == nil {
		return
	}
	delete(l.held, ledger)
	ctx, cancel := context.WithTimeout(context.Background(), leasePingTimeout)
	defer cancel()
	l.unlock(ctx, ledger)
}

// Held is how many projector leases this process holds.
func (l *Locks) Held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held)
}

// Close ends the session: every lease goes with it.
func (l *Locks) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.endSession()
}

// unlock unlocks ledger's key; a failure ends the session, which unlocks
// everything (and says so through lost). l.mu is held.
func (l *Locks) unlock(ctx context.Context, ledger string) {
	if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, ProjectorKey(ledger)); err != nil {
		l.endSession()
	}
}

// session opens the session if none is open. l.mu is held.
func (l *Locks) session(ctx context.Context) error {
	if l.conn != nil && !l.conn.IsClosed() {
		return nil
	}
	l.endSession()
	cctx, cancel := context.WithTimeout(ctx, leaseConnectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, l.cfg.Copy())
	if err != nil {
		return fmt.Errorf("projector lease connection: %w", err)
	}
	l.conn, l.lost, l.stop = conn, make(chan struct{}), make(chan struct{})
	go l.watch(conn, l.lost, l.stop)
	return nil
}

// endSession closes the session, if one is open, and forgets its leases:
// their lost channel closes. l.mu is held.
func (l *Locks) endSession() {
	if l.conn == nil {
		return
	}
	close(l.stop)
	closeConn(l.conn)
	l.conn = nil
	clear(l.held) // watch closes lost once it sees stop
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
		l.mu.Lock()
		if l.conn != conn { // ended meanwhile
			l.mu.Unlock()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), leasePingTimeout)
		err := conn.Ping(ctx)
		cancel()
		if err != nil {
			l.endSession()
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
	}
}
