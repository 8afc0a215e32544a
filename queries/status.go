package queries

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ledgerd/ledger/domain"
)

// ProjectionStatusMax bounds GetProjectionStatus: 1,024 ledgers (what one
// process writes) with up to 16 projections each.
const ProjectionStatusMax = 16384

// ErrTooManyProjections means more than ProjectionStatusMax projections match:
// ask per ledger.
var ErrTooManyProjections error = domain.NewError(domain.KindExhausted, "too many projections", "")

// ProjectionStatus is where one projection of one ledger stands.
type ProjectionStatus struct {
	Ledger, Name string
	Version      int
	// Position is the projection's checkpoint; Head the ledger's last position.
	Position, Head, LagPositions uint64
	// LagSeconds is the recorded time of the head's event less that of the
	// checkpoint's (of the ledger's first event when nothing is applied yet):
	// how much of the log's time the projection has still to apply. Zero when
	// caught up, never negative.
	LagSeconds float64
	// UpdatedAt is when the checkpoint last moved (or was created).
	UpdatedAt time.Time
	// State says whether the projection goes on (StateOK) or what stops
	// it; Reason, what is wrong (the position and the refusal), when not.
	State, Reason string
	// StreamFault is what the relay found wrong with the ledger's stream,
	// "" when nothing: a projection's own fault, which names the event it
	// refused, is its State even when its stream's is set too.
	StreamFault string
}

// States of a projection (ProjectionStatus.State).
const (
	// StateOK: nothing stops the projection.
	StateOK = "ok"
	// StateChainBroken: the projection refused an event that does not
	// continue the hash chain or is not the log's.
	StateChainBroken = "chain_broken"
	// StateStreamDiverged: the relay found the ledger's stream ahead of the
	// log or different from it, and publishes nothing on top.
	StateStreamDiverged = "stream_diverged"
)

// stateOf is a projection's state from its own fault and its stream's:
// its own names the event it refused, so it comes first.
func stateOf(fault, streamFault *string) (state, reason string) {
	switch {
	case fault != nil:
		return StateChainBroken, *fault
	case streamFault != nil:
		return StateStreamDiverged, *streamFault
	}
	return StateOK, ""
}

// ProjectionLags returns, for each of ledgers that has projections, how
// many events its furthest-behind projection has still to apply: one
// statement over their checkpoints and heads (a ledger without events has
// no head, and lags 0).
//
// Errors: database errors.
func (s *Service) ProjectionLags(ctx context.Context, ledgers []string) (map[string]uint64, error) {
	s = s.route()
	rows, err := s.pool.Query(ctx, `SELECT c.ledger, max(greatest(coalesce(h.position, 0) - c.position, 0))
		FROM projection_checkpoints c LEFT JOIN ledger_heads h ON h.ledger = c.ledger
		WHERE c.ledger = ANY($1) GROUP BY c.ledger`, ledgers)
	if err != nil {
		return nil, fmt.Errorf("projection lags: %w", err)
	}
	out := make(map[string]uint64, len(ledgers))
	var (
		ledger string
		lag    int64
	)
	_, err = pgx.ForEachRow(rows, []any{&ledger, &lag}, func() error {
		out[ledger] = uint64(lag)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("projection lags: %w", err)
	}
	return out, nil
}

// GetProjectionStatus returns every projection checkpoint of ledger, or of all
// ledgers when ledger is "", by ledger and name, in one statement.
//
// Errors: domain.ErrUnknownLedger; ErrTooManyProjections; database errors.
func (s *Service) GetProjectionStatus(ctx context.Context, ledger string) ([]ProjectionStatus, error) {
	s = s.route()
	if ledger != "" {
		if _, err := s.head(ctx, ledger); err != nil {
			return nil, err
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT c.ledger, c.projection, c.version, c.position, coalesce(h.position, 0),
			CASE WHEN h.position > c.position THEN
				greatest(extract(epoch FROM he.recorded_at - coalesce(c.event_at, fe.recorded_at)), 0)::float8
			ELSE 0 END,
			c.updated_at, c.fault, sf.fault
		FROM projection_checkpoints c
		LEFT JOIN ledger_heads h ON h.ledger = c.ledger
		LEFT JOIN stream_faults sf ON sf.ledger = c.ledger
		-- OFFSET 0 keeps each probe a lookup by the whole key: flattened into a
		-- join on the ledger, it scanned a new ledger's events (its statistics
		-- said one row).
		LEFT JOIN LATERAL (SELECT recorded_at FROM events WHERE ledger = c.ledger AND position = h.position OFFSET 0) he
			ON true
		LEFT JOIN LATERAL (SELECT recorded_at FROM events
			WHERE c.event_at IS NULL AND ledger = c.ledger AND position = 1 OFFSET 0) fe ON true
		-- A rebuild's shadow (ledger~rebuild) is not a ledger: '~' is in no ledger name.
		WHERE ($1 = '' OR c.ledger = $1) AND strpos(c.ledger, '~') = 0
		ORDER BY c.ledger, c.projection
		LIMIT $2`, ledger, ProjectionStatusMax+1)
	if err != nil {
		return nil, fmt.Errorf("projection status: %w", err)
	}
	var (
		out        []ProjectionStatus
		st         ProjectionStatus
		version    int32
		pos, head  int64
		lagSeconds *float64
		fault, sf  *string
	)
	_, err = pgx.ForEachRow(rows, []any{&st.Ledger, &st.Name, &version, &pos, &head, &lagSeconds, &st.UpdatedAt, &fault, &sf}, func() error {
		st.Version, st.Position, st.Head = int(version), uint64(pos), uint64(head)
		st.State, st.Reason = stateOf(fault, sf)
		st.StreamFault = ""
		if sf != nil {
			st.StreamFault = *sf
		}
		st.LagPositions = uint64(max(head-pos, 0))
		st.LagSeconds = 0
		if lagSeconds != nil {
			st.LagSeconds = *lagSeconds
		}
		out = append(out, st)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("projection status: %w", err)
	}
	if len(out) > ProjectionStatusMax {
		return nil, fmt.Errorf("%d+ projection checkpoints, at most %d: %w", len(out), ProjectionStatusMax, ErrTooManyProjections)
	}
	return out, nil
}

// head returns the ledger's head position: the one look-up by which every
// query tells an unknown ledger; for a query, a ledger exists once it has an
// event.
//
// Errors: domain.ErrUnknownLedger; database errors.
func (s *Service) head(ctx context.Context, ledger string) (uint64, error) {
	return s.headAtLeast(ctx, ledger, 0)
}

// headAtLeast is head, for a call about position pos: on a replica, whose
// head may lag what a command was acknowledged at, a ledger it does not
// know yet or a head short of pos is the primary's to say (one look-up
// there, only then: replica reads go on while the primary is away).
func (s *Service) headAtLeast(ctx context.Context, ledger string, pos uint64) (uint64, error) {
	head, err := s.readHead(ctx, ledger)
	if s.primary != nil && (errors.Is(err, domain.ErrUnknownLedger) || err == nil && head < pos) {
		return s.primary.readHead(ctx, ledger)
	}
	return head, err
}

// readHead reads the ledger's head in s's database.
func (s *Service) readHead(ctx context.Context, ledger string) (uint64, error) {
	var pos int64
	err := s.pool.QueryRow(ctx, `SELECT position FROM ledger_heads WHERE ledger = $1`, ledger).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("ledger %q: %w", ledger, domain.ErrUnknownLedger)
	}
	if err != nil {
		return 0, fmt.Errorf("head of %s: %w", ledger, err)
	}
	return uint64(pos), nil
}

// FaultsMax bounds Faults.
const FaultsMax = 16

// Fault is one thing that stops the read side: a projection that refused an
// event (Projection set), or a ledger's stream that the relay found ahead of
// the log or different from it (Projection empty).
type Fault struct {
	Ledger, Projection, Reason string
}

// Faults returns up to FaultsMax of the read side's faults, by ledger and
// projection, and whether there are more.
//
// Errors: database errors.
func (s *Service) Faults(ctx context.Context) ([]Fault, bool, error) {
	s = s.route()
	rows, err := s.pool.Query(ctx, `SELECT ledger, projection, fault FROM projection_checkpoints
			WHERE fault IS NOT NULL AND strpos(ledger, '~') = 0
		UNION ALL
		SELECT ledger, '', fault FROM stream_faults
		ORDER BY 1, 2 LIMIT $1`, FaultsMax+1)
	if err != nil {
		return nil, false, fmt.Errorf("read side faults: %w", err)
	}
	var (
		out []Fault
		f   Fault
	)
	if _, err := pgx.ForEachRow(rows, []any{&f.Ledger, &f.Projection, &f.Reason}, func() error {
		out = append(out, f)
		return nil
	}); err != nil {
		return nil, false, fmt.Errorf("read side faults: %w", err)
	}
	if len(out) > FaultsMax {
		return out[:FaultsMax], true, nil
	}
	return out, false, nil
}
