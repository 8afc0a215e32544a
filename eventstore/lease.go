package eventstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Limits of a lease.
const (
	// LeasePingEvery is how often a held lease checks its session is alive.
	LeasePingEvery = 500 * time.Millisecond
	// leasePingTimeout bounds one check: a session that does not answer in
	// time is taken for dead.
	leasePingTimeout = 1 * time.Second
	// leaseConnectTimeout bounds opening a lease's connection.
	leaseConnectTimeout = 5 * time.Second
	// leaseIdleMax bounds the connections kept between attempts to acquire.
	leaseIdleMax = 4
)

// LeaseApplicationName is the application_name of lease sessions, so that an
// operator (or a test) can find the session that holds a ledger's lease:
// pg_stat_activity joined to pg_locks (locktype 'advisory', granted).
const LeaseApplicationName = "ledgerd-lease"

// ErrLeaseLost means an append was refused because its lease's session is
// gone: the writer lost the lease, and another process may write the ledger.
var ErrLeaseLost = errors.New("lease lost")

// Lease hands out per-ledger writer leases: session-level PostgreSQL advisory
// locks, each on a connection of its own (the lock lives and dies with the
// session, so it cannot share a pool's connections).
//
// The holder appends on that same session (Held.Append): the fencing token is
// the lock itself. A session that committed held the lock when it committed,
// and a session that was ended (crash, pg_terminate_backend, an append timeout)
// rolled back whatever it had not committed and gave the lock up in the same
// instant, so a writer that lost its lease cannot commit afterwards, and its
// successor never waits on the head-row lock of a dead session.
type Lease struct {
	cfg  *pgx.ConnConfig
	idle chan *pgx.Conn // connections holding no lock, for the next attempt
	// beforeCommit is Store.beforeCommit for the appends of this Lease's leases.
	beforeCommit func()
	// node, when set, is recorded as the holder of each lease taken
	// (ledger_placements), for ledgerctl ledgers.
	node string
}

// WithNode makes l record node as the holder of each lease it takes.
func (l *Lease) WithNode(node string) *Lease {
	l.node = node
	return l
}

// NewLease returns a Lease that connects with cfg (copied).
func NewLease(cfg *pgx.ConnConfig) *Lease {
	return &Lease{cfg: leaseSessionConfig(cfg, LeaseApplicationName), idle: make(chan *pgx.Conn, leaseIdleMax)}
}

// leaseSessionConfig is a copy of cfg for the sessions leases live on,
// named app in pg_stat_activity. Their TCP keepalives make the server find
// out within about 20 s that a session's host is gone without a word (power
// lost, a partition): its locks are freed then, not after the system's TCP
// keepalive (two hours by default). Any login may set these; over a Unix
// socket they do nothing, and nothing is needed.
func leaseSessionConfig(cfg *pgx.ConnConfig, app string) *pgx.ConnConfig {
	c := cfg.Copy()
	if c.RuntimeParams == nil {
		c.RuntimeParams = map[string]string{}
	}
	c.RuntimeParams["application_name"] = app
	for k, v := range map[string]string{"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "3",
		"tcp_keepalives_count": "3", "tcp_user_timeout": "20000"} {
		c.RuntimeParams[k] = v
	}
	return c
}

// TryAcquire takes ledger's lease if no other session holds it. ok is false,
// with a nil error, when another session holds it.
//
// Errors: the error of connecting or of the lock query.
func (l *Lease) TryAcquire(ctx context.Context, ledger string) (*Held, bool, error) {
	conn, err := l.conn(ctx)
	if err != nil {
		return nil, false, err
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, LeaseKey(ledger)).Scan(&ok); err != nil {
		closeConn(conn)
		return nil, false, fmt.Errorf("lease of %s: %w", ledger, err)
	}
	if !ok {
		l.putIdle(conn)
		return nil, false, nil
	}
	if err := placeOn(ctx, conn, ledger, RoleWriter, l.node); err != nil {
		closeConn(conn) // ends the session: the lock goes with it
		return nil, false, err
	}
	h := &Held{ledger: ledger, conn: conn, beforeCommit: l.beforeCommit, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go h.watch()
	return h, true, nil
}

// Close closes the idle connections. Held leases are released separately.
func (l *Lease) Close() {
	for {
		select {
		case c := <-l.idle:
			closeConn(c)
		default:
			return
		}
	}
}

func (l *Lease) conn(ctx context.Context) (*pgx.Conn, error) {
	select {
	case c := <-l.idle:
		if !c.IsClosed() {
			return c, nil
		}
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, leaseConnectTimeout)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, l.cfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("lease connection: %w", err)
	}
	return c, nil
}

func (l *Lease) putIdle(c *pgx.Conn) {
	select {
	case l.idle <- c:
	default:
		closeConn(c)
	}
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), leasePingTimeout)
	defer cancel()
	_ = c.Close(ctx)
}

// Held is a ledger's lease, held by this process until Release or until its
// session dies (Lost).
type Held struct {
	ledger string
	// mu serializes the uses of conn (a pgx.Conn is not safe for concurrent
	// use): the appends and the watcher's pings.
	mu           sync.Mutex
	conn         *pgx.Conn
	beforeCommit func()
	lost         chan struct{}
	stop         chan struct{}
	done         chan struct{}
	once         sync.Once
}

// Lost is closed when the lease is gone: its session died (or stopped
// answering) or Release was called. Another process may hold it by then.
func (h *Held) Lost() <-chan struct{} { return h.lost }

// Release gives the lease up by ending its session, and waits for that.
func (h *Held) Release() {
	h.once.Do(func() { close(h.stop) })
	<-h.done
}

// Ledger is the ledger the lease is for.
func (h *Held) Ledger() string { return h.ledger }

// Append is Store.Append on the lease's own session: it commits only if this
// session still holds the lease when it commits.
//
// Errors: ErrLeaseLost when the session is already gone (the lease is lost);
// those of Store.Append otherwise; a connection error when the session ends
// during the append, which rolls it back unless the COMMIT had been received,
// so the outcome is unknown: read the head to learn it.
func (h *Held) Append(ctx context.Context, expected uint64, prevHash Hash, recs []Record) error {
	if err := checkBatch(h.ledger, expected, prevHash, recs); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn.IsClosed() {
		return fmt.Errorf("append to %s at %d: %w", h.ledger, expected, ErrLeaseLost)
	}
	return appendOn(ctx, h.conn, h.ledger, expected, recs, StatusActive, false, h.beforeCommit)
}

// watch pings the session until it fails or Release; either way it closes the
// connection (which frees the lock) and signals Lost. A tick that finds an
// append running skips its ping: the append uses the session, and fails if
// the session is gone.
func (h *Held) watch() {
	defer close(h.done)
	defer close(h.lost)
	defer func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		closeConn(h.conn)
	}()
	t := time.NewTicker(LeasePingEvery)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		if !h.mu.TryLock() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), leasePingTimeout)
		err := h.conn.Ping(ctx)
		cancel()
		h.mu.Unlock()
		if err != nil {
			return
		}
	}
}
