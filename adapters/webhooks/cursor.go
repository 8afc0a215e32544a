package webhooks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/eventstore"
)

// claimed is a subscription a dispatcher holds the lease of, with what it
// needs to deliver.
type claimed struct {
	Subscription
	secret     []byte
	generation int64
	// hash is the hash of the event at the cursor; known is false when it
	// must be read from the log (after a replay from a position).
	hash  eventstore.Hash
	known bool
}

// claim renews this owner's leases and takes those no live dispatcher
// holds, for ttl; it returns those the owner now holds, at most limit. Its
// own come first, renewed apart from the taking: were they ranked with the
// free ones under one LIMIT, a dispatcher at its limit would take a free
// one in place of one of its own, whose lease would lapse and whose
// running worker would be stopped. One statement for all: a few hundred
// rows a poll.
//
// Errors: a database error, wrapped.
func (s *Store) claim(ctx context.Context, owner string, ttl time.Duration, limit int) ([]string, error) {
	rows, err := s.pool.Query(ctx, `WITH renewed AS (
			UPDATE webhook_subscriptions SET lease_until = now() + $2::interval
			WHERE id IN (SELECT id FROM webhook_subscriptions WHERE lease_owner = $1
				ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED)
			RETURNING id),
		taken AS (
			UPDATE webhook_subscriptions SET lease_owner = $1, lease_until = now() + $2::interval
			WHERE id IN (SELECT id FROM webhook_subscriptions
				WHERE lease_owner IS DISTINCT FROM $1 AND (lease_until IS NULL OR lease_until < now())
				ORDER BY created_at LIMIT greatest($3 - (SELECT count(*) FROM renewed), 0) FOR UPDATE SKIP LOCKED)
			RETURNING id)
		SELECT id FROM renewed UNION ALL SELECT id FROM taken`, owner, ttl, limit)
	if err != nil {
		return nil, fmt.Errorf("claim webhook subscriptions: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("claim webhook subscriptions: %w", err)
	}
	return ids, nil
}

// owned returns claimed and those of ids that owner still holds: the
// claim skips rows locked at that instant, which does not make them
// another's.
//
// Errors: a database error, wrapped.
func (s *Store) owned(ctx context.Context, owner string, claimed, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return claimed, nil
	}
	if claimed == nil {
		claimed = []string{} // not NULL: NOT id = ANY(NULL) holds for no row
	}
	rows, err := s.pool.Query(ctx, `SELECT id FROM webhook_subscriptions
		WHERE id = ANY($2) AND NOT id = ANY($3) AND lease_owner = $1 AND lease_until >= now()`, owner, ids, claimed)
	if err != nil {
		return nil, fmt.Errorf("webhook subscriptions held: %w", err)
	}
	more, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("webhook subscriptions held: %w", err)
	}
	return append(claimed, more...), nil
}

// giveBack gives up owner's leases of ids.
func (s *Store) giveBack(ctx context.Context, owner string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `UPDATE webhook_subscriptions SET lease_owner = NULL, lease_until = NULL
		WHERE id = ANY($2) AND lease_owner = $1`, owner, ids)
	return err
}

// release gives up owner's leases, so that another ledgerd takes them at
// once rather than when they expire.
func (s *Store) release(ctx context.Context, owner string) error {
	_, err := s.pool.Exec(ctx, `UPDATE webhook_subscriptions SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1`, owner)
	return err
}

// load reads a claimed subscription.
//
// Errors: errMoved when the owner no longer holds it (or it was deleted); a
// database error, wrapped.
func (s *Store) load(ctx context.Context, id, owner string) (claimed, error) {
	var c claimed
	var pos int64
	var hash []byte
	err := s.pool.QueryRow(ctx, `SELECT id, ledger, url, event_types, account_pattern, created_at, delivered_position,
			circuit, fault, secret, generation, delivered_hash
		FROM webhook_subscriptions WHERE id = $1 AND lease_owner = $2`, id, owner).Scan(&c.ID, &c.Ledger, &c.URL,
		&c.EventTypes, &c.AccountPattern, &c.CreatedAt, &pos, &c.Circuit, &c.Fault, &c.secret, &c.generation, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return claimed{}, fmt.Errorf("subscription %s: %w", id, errMoved)
	}
	if err != nil {
		return claimed{}, fmt.Errorf("load subscription %s: %w", id, err)
	}
	c.DeliveredPosition = uint64(pos)
	switch {
	case len(hash) == eventstore.HashSize:
		c.hash, c.known = eventstore.Hash(hash), true
	case pos == 0:
		c.known = true // the first event's prev_hash is all zeros
	}
	return c, nil
}

// advance moves the cursor from c's to pos, whose event's hash is hash, if
// the subscription is as c loaded it.
//
// Errors: errMoved; a database error, wrapped.
func (s *Store) advance(ctx context.Context, c *claimed, owner string, pos uint64, hash eventstore.Hash) error {
	tag, err := s.pool.Exec(ctx, `UPDATE webhook_subscriptions SET delivered_position = $4, delivered_hash = $5, fault = ''
		WHERE id = $1 AND lease_owner = $2 AND generation = $3 AND delivered_position = $6`,
		c.ID, owner, c.generation, int64(pos), hash[:], int64(c.DeliveredPosition))
	if err != nil {
		return fmt.Errorf("advance subscription %s to %d: %w", c.ID, pos, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("advance subscription %s to %d: %w", c.ID, pos, errMoved)
	}
	c.DeliveredPosition, c.hash, c.known = pos, hash, true
	return nil
}

// current fails with errMoved unless the subscription is still as c loaded
// it: a dispatcher waiting for events notices a replay or a deletion.
func (s *Store) current(ctx context.Context, c *claimed, owner string) error {
	var one int
	err := s.pool.QueryRow(ctx, `SELECT 1 FROM webhook_subscriptions WHERE id = $1 AND lease_owner = $2 AND generation = $3`,
		c.ID, owner, c.generation).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("subscription %s: %w", c.ID, errMoved)
	}
	return err
}

// replays returns the positions of the dead letters queued again, in
// order, at most limit.
func (s *Store) replays(ctx context.Context, id string, limit int) ([]uint64, error) {
	rows, err := s.pool.Query(ctx, `SELECT position FROM webhook_deliveries WHERE subscription_id = $1 AND replay
		ORDER BY position LIMIT $2`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("replays of %s: %w", id, err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (uint64, error) {
		var p int64
		err := r.Scan(&p)
		return uint64(p), err
	})
	if err != nil {
		return nil, fmt.Errorf("replays of %s: %w", id, err)
	}
	return ps, nil
}

// record writes a delivery's row as it now stands, under the
// subscription's generation (resumed compares it): made at its first
// attempt, updated after each.
//
// Errors: a database error, wrapped.
func (s *Store) record(ctx context.Context, d *Delivery, generation int64) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO webhook_deliveries (subscription_id, position, ledger, event_type, status,
			attempts, response_code, latency_ms, error, first_attempt_at, last_attempt_at, next_attempt_at, replay,
			generation, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, false, $13, now())
		ON CONFLICT (subscription_id, position) DO UPDATE SET status = $5, attempts = $6, response_code = $7,
			latency_ms = $8, error = $9, first_attempt_at = $10, last_attempt_at = $11, next_attempt_at = $12,
			replay = webhook_deliveries.replay AND $5 = 'pending', generation = $13, updated_at = now()`,
		d.SubscriptionID, int64(d.Position), d.Ledger, d.EventType, string(d.Status), d.Attempts, d.ResponseCode,
		d.LatencyMS, storableError(d.Error), nullTime(d.FirstAttemptAt), nullTime(d.LastAttemptAt), nullTime(d.NextAttemptAt),
		generation)
	if err != nil {
		return fmt.Errorf("record delivery %s: %w", d.ID(), err)
	}
	return nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// setState records what the dispatcher sees: the endpoint's circuit and
// its fault ("" for none).
func (s *Store) setState(ctx context.Context, id, circuit, fault string) error {
	_, err := s.pool.Exec(ctx, `UPDATE webhook_subscriptions SET circuit = $2, fault = $3 WHERE id = $1
		AND (circuit <> $2 OR fault <> $3)`, id, circuit, storableError(fault))
	return err
}
