package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
)

// Placement roles: what a ledger's lease lets its holder do.
const (
	// RoleWriter is a ledger's writer lease (Lease).
	RoleWriter = "writer"
	// RoleProjector is a ledger's projector lease (Locks): its relay and
	// projections run on the holder.
	RoleProjector = "projector"
)

// NodesMax bounds ListNodes: more processes than this on one database is
// not a topology ledgerd is built for.
const NodesMax = 1000

// ErrUnknownNode means no node of that id is registered.
var ErrUnknownNode error = domain.NewError(domain.KindNotFound, "unknown node", "ledgerctl nodes lists them")

// Node is a ledgerd process as its row in ledgerd_nodes says.
type Node struct {
	ID        string
	Roles     []string
	GRPCAddr  string
	HTTPAddr  string
	Host      string
	PID       int
	Version   string
	StartedAt time.Time
	// SeenAt is its last heartbeat; Live says it came within NodeLiveWithin
	// by the database's clock (List), the one all nodes share.
	SeenAt   time.Time
	Live     bool
	Draining bool
}

// Bounds of the registry of nodes.
const (
	// NodeLiveWithin is how recent a node's heartbeat (every 2 s) must be
	// for it to be live: five heartbeats.
	NodeLiveWithin = 10 * time.Second
	// NodeListedWithin is how recent it must be for the node to be listed
	// at all: rows of processes gone for a day are left out (ids that
	// change at each start, such as those of ephemeral ports, would
	// otherwise pile up).
	NodeListedWithin = 24 * time.Hour
)

// Placement is a ledger's lease as held now: which node holds it, since when.
type Placement struct {
	Ledger     string
	Role       string // RoleWriter or RoleProjector
	Node       string
	AcquiredAt time.Time
}

// Nodes reads and writes the registry of ledgerd processes and their leases
// (migration 0008), on any pool whose login is in one of ledgerd's roles.
type Nodes struct {
	pool *pgxpool.Pool
}

// NewNodes returns the registry on pool.
func NewNodes(pool *pgxpool.Pool) *Nodes { return &Nodes{pool: pool} }

// Register makes or replaces n's row (a restarted process takes its id's
// row back), not draining, seen now.
//
// Errors: the database error.
func (s *Nodes) Register(ctx context.Context, n Node) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO ledgerd_nodes (id, roles, grpc_addr, http_addr, host, pid, version, started_at, seen_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
		ON CONFLICT (id) DO UPDATE SET roles = EXCLUDED.roles, grpc_addr = EXCLUDED.grpc_addr, http_addr = EXCLUDED.http_addr,
			host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version, started_at = EXCLUDED.started_at,
			seen_at = now(), draining = false`,
		n.ID, n.Roles, n.GRPCAddr, n.HTTPAddr, n.Host, n.PID, n.Version, n.StartedAt)
	if err != nil {
		return fmt.Errorf("register node %s: %w", n.ID, err)
	}
	return nil
}

// Heartbeat marks node id seen now and returns whether it is to drain.
//
// Errors: ErrUnknownNode when its row is gone (register again); the
// database error.
func (s *Nodes) Heartbeat(ctx context.Context, id string) (draining bool, err error) {
	err = s.pool.QueryRow(ctx, `UPDATE ledgerd_nodes SET seen_at = now() WHERE id = $1 RETURNING draining`, id).Scan(&draining)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("heartbeat of %s: %w", id, ErrUnknownNode)
	}
	if err != nil {
		return false, fmt.Errorf("heartbeat of %s: %w", id, err)
	}
	return draining, nil
}

// SetDraining sets or clears node id's draining flag; the node acts on it
// at its next heartbeat.
//
// Errors: ErrUnknownNode; the database error.
func (s *Nodes) SetDraining(ctx context.Context, id string, draining bool) (Node, error) {
	rows, err := s.pool.Query(ctx, `UPDATE ledgerd_nodes SET draining = $2 WHERE id = $1 RETURNING `+nodeColumns,
		id, draining)
	if err != nil {
		return Node{}, fmt.Errorf("drain %s: %w", id, err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, scanNode)
	if errors.Is(err, pgx.ErrNoRows) {
		return Node{}, fmt.Errorf("%q: %w", id, ErrUnknownNode)
	}
	if err != nil {
		return Node{}, fmt.Errorf("drain %s: %w", id, err)
	}
	return n, nil
}

// List returns the nodes seen within NodeListedWithin, the most recently
// seen first, at most NodesMax.
//
// Errors: the database error.
func (s *Nodes) List(ctx context.Context) ([]Node, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+nodeColumns+` FROM ledgerd_nodes
		WHERE seen_at > now() - make_interval(secs => $2) ORDER BY seen_at DESC, id LIMIT $1`,
		NodesMax, NodeListedWithin.Seconds())
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanNode)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}

// nodeColumns are a node's columns, live meaning seen within NodeLiveWithin.
var nodeColumns = fmt.Sprintf(`id, roles, grpc_addr, http_addr, host, pid, version, started_at, seen_at,
	seen_at > now() - interval '%d milliseconds', draining`, NodeLiveWithin.Milliseconds())

func scanNode(row pgx.CollectableRow) (Node, error) {
	var n Node
	err := row.Scan(&n.ID, &n.Roles, &n.GRPCAddr, &n.HTTPAddr, &n.Host, &n.PID, &n.Version, &n.StartedAt, &n.SeenAt, &n.Live, &n.Draining)
	return n, err
}

// Placements returns the leases held now, by ledger then role: a row whose
// backend no longer holds the ledger's advisory lock (its holder died or
// released it) is left out.
//
// Errors: the database error.
func (s *Nodes) Placements(ctx context.Context) ([]Placement, error) {
	// Both reads in one snapshot of pg_locks would need a function; a lease
	// taken between them shows at the next call.
	rows, err := s.pool.Query(ctx, `SELECT ledger, role, node, backend_pid, acquired_at FROM ledger_placements ORDER BY ledger, role`)
	if err != nil {
		return nil, fmt.Errorf("placements: %w", err)
	}
	type row struct {
		p   Placement
		pid int32
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.p.Ledger, &x.p.Role, &x.p.Node, &x.pid, &x.p.AcquiredAt)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("placements: %w", err)
	}
	held, err := s.advisoryLocks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Placement, 0, len(all))
	for _, x := range all {
		key := LeaseKey(x.p.Ledger)
		if x.p.Role == RoleProjector {
			key = ProjectorKey(x.p.Ledger)
		}
		if held[lockHolder{key: key, pid: x.pid}] {
			out = append(out, x.p)
		}
	}
	return out, nil
}

// lockHolder is a granted bigint advisory lock and the backend holding it.
type lockHolder struct {
	key int64
	pid int32
}

// thisDatabase restricts pg_locks to this database's locks: advisory keys
// are per database, and the server may hold other ledger databases.
const thisDatabase = `database = (SELECT oid FROM pg_database WHERE datname = current_database())`

// lockKeySQL is the bigint key of pg_locks row l's advisory lock: pg_locks
// shows a bigint key as its high half in classid and its low half in objid
// (objsubid 1).
const lockKeySQL = `(l.classid::bigint << 32 | l.objid::bigint)`

// advisoryLocks returns the bigint advisory locks granted now.
func (s *Nodes) advisoryLocks(ctx context.Context) (map[lockHolder]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+lockKeySQL+`, pid FROM pg_locks l
		WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid IS NOT NULL AND `+thisDatabase)
	if err != nil {
		return nil, fmt.Errorf("advisory locks: %w", err)
	}
	defer rows.Close()
	out := map[lockHolder]bool{}
	for rows.Next() {
		var h lockHolder
		if err := rows.Scan(&h.key, &h.pid); err != nil {
			return nil, fmt.Errorf("advisory locks: %w", err)
		}
		out[h] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("advisory locks: %w", err)
	}
	return out, nil
}

// LeaseKey is the advisory-lock key of a ledger's writer lease.
func LeaseKey(ledger string) int64 { return lockKey("ledger-lease:", ledger) }

// ProjectorKey is the advisory-lock key of a ledger's projector lease.
func ProjectorKey(ledger string) int64 { return lockKey("ledger-projector:", ledger) }

func lockKey(kind, ledger string) int64 {
	sum := sha256.Sum256([]byte(kind + ledger))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// placeOn records on conn, the session that just took ledger's lease of
// role, that node holds it from now.
func placeOn(ctx context.Context, conn *pgx.Conn, ledger, role, node string) error {
	if node == "" {
		return nil
	}
	_, err := conn.Exec(ctx, `INSERT INTO ledger_placements (ledger, role, node, backend_pid, acquired_at)
		VALUES ($1, $2, $3, pg_backend_pid(), now())
		ON CONFLICT (ledger, role) DO UPDATE SET node = EXCLUDED.node, backend_pid = EXCLUDED.backend_pid, acquired_at = EXCLUDED.acquired_at`,
		ledger, role, node)
	if err != nil {
		return fmt.Errorf("placement of %s's %s lease: %w", ledger, role, err)
	}
	return nil
}

// WriterOf returns the node that holds ledger's writer lease now; ok is
// false when none does (or its row names a node that is not registered).
//
// Errors: the database error.
func (s *Nodes) WriterOf(ctx context.Context, ledger string) (n Node, ok bool, err error) {
	rows, err := s.pool.Query(ctx, `SELECT `+nodeColumns+` FROM ledgerd_nodes WHERE id = (
		SELECT p.node FROM ledger_placements p WHERE p.ledger = $1 AND p.role = 'writer' AND EXISTS (
			SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.pid = p.backend_pid
				AND l.objsubid = 1 AND `+lockKeySQL+` = $2 AND l.`+thisDatabase+`))`,
		ledger, LeaseKey(ledger))
	if err != nil {
		return Node{}, false, fmt.Errorf("writer of %s: %w", ledger, err)
	}
	n, err = pgx.CollectExactlyOneRow(rows, scanNode)
	if errors.Is(err, pgx.ErrNoRows) {
		return Node{}, false, nil
	}
	if err != nil {
		return Node{}, false, fmt.Errorf("writer of %s: %w", ledger, err)
	}
	return n, true, nil
}
