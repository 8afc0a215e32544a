package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
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

// Lease hands out per-ledger writer leases: session-level PostgreSQL advisory
// locks, each on a connection of its own (the lock lives and dies with the
// session, so it cannot share a pool's connections).
type Lease struct {
	cfg  *pgx.ConnConfig
	idle chan *pgx.Conn // connections holding no lock, for the next attempt
}

// NewLease returns a Lease that connects with cfg (copied).
func NewLease(cfg *pgx.ConnConfig) *Lease {
	return &Lease{cfg: cfg.Copy(), idle: make(chan *pgx.Conn, leaseIdleMax)}
}

// LeaseKey is the advisory-lock key of a ledger's lease.
func LeaseKey(ledger string) int64 {
	sum := sha256.Sum256([]byte("ledger-lease:" + ledger))
	return int64(binary.BigEndian.Uint64(sum[:8]))
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
	h := &Held{ledger: ledger, conn: conn, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
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
	conn   *pgx.Conn // used by watch only, after TryAcquire returns
	lost   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
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

// watch pings the session until it fails or Release; either way it closes the
// connection (which frees the lock) and signals Lost.
func (h *Held) watch() {
	defer close(h.done)
	defer close(h.lost)
	defer closeConn(h.conn)
	t := time.NewTicker(LeasePingEvery)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), leasePingTimeout)
		err := h.conn.Ping(ctx)
		cancel()
		if err != nil {
			return
		}
	}
}
