// Package webhooks delivers a ledger's events to HTTP endpoints: signed, in
// position order per subscription, at least once, retried with back-off up
// to a maximum age, isolated per endpoint by a circuit breaker and limits,
// with a delivery log, dead letters and replay. Subscriptions and the log
// are PostgreSQL tables of their own (migrations/), written by the
// projector's database role. docs/webhooks.md is the user's side.
package webhooks

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates the webhooks' tables; safe to run from several processes.
//
// Errors: a database error, wrapped.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return eventstore.ApplyMigrations(ctx, pool, "webhooks", migrations, "migrations")
}

// Pending returns the webhooks' migrations not applied yet.
//
// Errors: a database error, wrapped.
func Pending(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	return eventstore.PendingMigrations(ctx, pool, "webhooks", migrations, "migrations")
}

// Limits of the store.
const (
	// SubscriptionsPerLedgerMax bounds a ledger's subscriptions (and so a
	// listing, and the dispatchers of a ledger).
	SubscriptionsPerLedgerMax = 100
	// URLBytesMax bounds a subscription's URL.
	URLBytesMax = 2048
	// EventTypesMax bounds a subscription's event types.
	EventTypesMax = 64
	// DeliveriesPageMax bounds a page of deliveries; DeliveriesPageDefault
	// is a page's size when none is asked.
	DeliveriesPageMax     = 1000
	DeliveriesPageDefault = 100
	// SecretBytes is the size of a signing secret: 256 bits.
	SecretBytes = 32
	// errorBytesMax bounds the error kept with a delivery, and a
	// subscription's fault (both columns check it).
	errorBytesMax = 1024
	// createLockKey serialises creations (pg_advisory_xact_lock): counting a
	// ledger's subscriptions and inserting one is then no race.
	createLockKey = 0x6c6b5f77686b /* "lk_whk" */
)

// Errors of the store.
var (
	// ErrNotFound means no subscription of the ledger has the id.
	ErrNotFound = errors.New("webhook subscription not found")
	// ErrTooMany means the ledger has SubscriptionsPerLedgerMax subscriptions.
	ErrTooMany = errors.New("too many webhook subscriptions")
	// ErrAfterCursor means a replay from a position the subscription has
	// not reached yet: there is nothing to deliver again.
	ErrAfterCursor = errors.New("replay from a position not delivered yet")
	// ErrPastHead means a delivery from a position past the one after the
	// ledger's head: the dispatcher would find no event at its cursor to
	// continue the hash chain from.
	ErrPastHead = errors.New("from a position past the ledger's head")
	// errMoved means the subscription's row changed under its dispatcher
	// (replayed, deleted, or its lease taken): it reloads.
	errMoved = errors.New("the subscription changed under its dispatcher")
)

// Status is where a delivery stands.
type Status string

// Statuses of a delivery.
const (
	StatusPending   Status = "pending"
	StatusDelivered Status = "delivered"
	StatusDead      Status = "dead"
)

// Subscription is a subscription as listed (never its secret).
type Subscription struct {
	ID             string
	Ledger         string
	URL            string
	EventTypes     []string
	AccountPattern string
	CreatedAt      time.Time
	// DeliveredPosition is the cursor: every position up to it was
	// delivered, given up or filtered out.
	DeliveredPosition uint64
	// DeadLetters counts the dead letters waiting for a replay.
	DeadLetters uint64
	Circuit     string
	// Fault says why the dispatcher stopped ("" when it did not).
	Fault string
}

// NewSubscription is what CreateSubscription asks for; the server checked it.
type NewSubscription struct {
	Ledger         string
	URL            string
	EventTypes     []string
	AccountPattern string
	// FromPosition: deliver from here on; 0: after the head at creation.
	FromPosition uint64
}

// Delivery is one row of the delivery log.
type Delivery struct {
	SubscriptionID string
	Ledger         string
	Position       uint64
	EventType      string
	Status         Status
	Attempts       int
	// ResponseCode, LatencyMS and Error are the last attempt's.
	ResponseCode int
	LatencyMS    int
	Error        string
	// The zero time: none yet.
	FirstAttemptAt, LastAttemptAt, NextAttemptAt time.Time
}

// DeliveryID is what receivers dedupe on: "<ledger>:<position>:<subscription>".
func DeliveryID(ledger string, position uint64, subscription string) string {
	return fmt.Sprintf("%s:%d:%s", ledger, position, subscription)
}

// ID is the delivery's id (DeliveryID).
func (d *Delivery) ID() string { return DeliveryID(d.Ledger, d.Position, d.SubscriptionID) }

// Store keeps subscriptions and the delivery log in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store over pool, whose tables Migrate made.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Create makes a subscription and returns it with its secret.
//
// Errors: ErrTooMany; ErrPastHead; a database error, wrapped.
func (s *Store) Create(ctx context.Context, n NewSubscription) (Subscription, []byte, error) {
	var idb [8]byte
	secret := make([]byte, SecretBytes)
	if _, err := rand.Read(idb[:]); err != nil {
		return Subscription{}, nil, fmt.Errorf("subscription id: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return Subscription{}, nil, fmt.Errorf("subscription secret: %w", err)
	}
	id := "wh_" + hex.EncodeToString(idb[:])
	types := n.EventTypes
	if types == nil {
		types = []string{}
	}
	var sub Subscription
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(createLockKey)); err != nil {
			return err
		}
		var count int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM webhook_subscriptions WHERE ledger = $1`, n.Ledger).Scan(&count); err != nil {
			return err
		}
		if count >= SubscriptionsPerLedgerMax {
			return fmt.Errorf("ledger %s has %d: %w", n.Ledger, count, ErrTooMany)
		}
		if n.FromPosition > 0 {
			if err := checkFrom(ctx, tx, n.Ledger, n.FromPosition); err != nil {
				return err
			}
		}
		// From the head: the cursor is the head and its hash, which the
		// dispatcher's chain check starts from.
		row := tx.QueryRow(ctx, `INSERT INTO webhook_subscriptions (id, ledger, url, secret, event_types, account_pattern,
				delivered_position, delivered_hash)
			SELECT $1, $2, $3, $4, $5, $6, coalesce(h.position, 0), CASE WHEN h.position > 0 THEN h.hash END
			FROM (SELECT $2::text AS ledger) l LEFT JOIN ledger_heads h ON h.ledger = l.ledger AND $7::bigint = 0
			RETURNING `+subColumns, id, n.Ledger, n.URL, secret, types, n.AccountPattern, int64(n.FromPosition))
		var err error
		if sub, err = scanSubscription(row); err != nil {
			return err
		}
		if n.FromPosition > 0 {
			sub.DeliveredPosition = n.FromPosition - 1
			_, err = tx.Exec(ctx, `UPDATE webhook_subscriptions SET delivered_position = $2 WHERE id = $1`,
				id, int64(sub.DeliveredPosition))
		}
		return err
	})
	if err != nil {
		return Subscription{}, nil, fmt.Errorf("create a subscription of %s: %w", n.Ledger, err)
	}
	return sub, secret, nil
}

const subColumns = `id, ledger, url, event_types, account_pattern, created_at, delivered_position, circuit, fault,
	(SELECT count(*) FROM webhook_deliveries d WHERE d.subscription_id = id AND d.status = 'dead')`

func scanSubscription(row pgx.Row) (Subscription, error) {
	var sub Subscription
	var pos, dead int64
	if err := row.Scan(&sub.ID, &sub.Ledger, &sub.URL, &sub.EventTypes, &sub.AccountPattern, &sub.CreatedAt, &pos,
		&sub.Circuit, &sub.Fault, &dead); err != nil {
		return Subscription{}, err
	}
	sub.DeliveredPosition, sub.DeadLetters = uint64(pos), uint64(dead)
	return sub, nil
}

// List returns a ledger's subscriptions (at most SubscriptionsPerLedgerMax)
// by creation.
//
// Errors: a database error, wrapped.
func (s *Store) List(ctx context.Context, ledger string) ([]Subscription, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+subColumns+` FROM webhook_subscriptions s WHERE ledger = $1
		ORDER BY created_at, id LIMIT $2`, ledger, SubscriptionsPerLedgerMax)
	if err != nil {
		return nil, fmt.Errorf("list the subscriptions of %s: %w", ledger, err)
	}
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscription, error) { return scanSubscription(r) })
	if err != nil {
		return nil, fmt.Errorf("list the subscriptions of %s: %w", ledger, err)
	}
	return subs, nil
}

// Delete removes a subscription; its dispatcher stops on its next step. Its
// delivery log, dead letters queued for a replay included, stays until the
// retention removes it.
//
// Errors: ErrNotFound; a database error, wrapped.
func (s *Store) Delete(ctx context.Context, ledger, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_subscriptions WHERE ledger = $1 AND id = $2`, ledger, id)
	if err != nil {
		return fmt.Errorf("delete subscription %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("subscription %s of %s: %w", id, ledger, ErrNotFound)
	}
	return nil
}

// exists fails unless the ledger has the subscription.
func (s *Store) exists(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, ledger, id string) error {
	var one int
	err := q.QueryRow(ctx, `SELECT 1 FROM webhook_subscriptions WHERE ledger = $1 AND id = $2`, ledger, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("subscription %s of %s: %w", id, ledger, ErrNotFound)
	}
	return err
}

// Deliveries returns a page of a subscription's deliveries, newest (highest
// position) first, before position `before` (0: from the newest), only
// those in status (""; all); and the position to pass as before for the
// next page (0: none).
//
// Errors: ErrNotFound; a database error, wrapped.
func (s *Store) Deliveries(ctx context.Context, ledger, id string, status Status, before uint64, limit int) ([]Delivery, uint64, error) {
	if err := s.exists(ctx, s.pool, ledger, id); err != nil {
		return nil, 0, err
	}
	if before == 0 {
		before = 1 << 62
	}
	limit = min(max(limit, 1), DeliveriesPageMax)
	rows, err := s.pool.Query(ctx, `SELECT subscription_id, ledger, position, event_type, status, attempts, response_code,
			latency_ms, error, first_attempt_at, last_attempt_at, next_attempt_at
		FROM webhook_deliveries WHERE subscription_id = $1 AND position < $2 AND ($3 = '' OR status = $3)
		ORDER BY position DESC LIMIT $4`, id, int64(before), string(status), limit+1)
	if err != nil {
		return nil, 0, fmt.Errorf("deliveries of %s: %w", id, err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
		var d Delivery
		var pos int64
		var first, last, next *time.Time
		err := r.Scan(&d.SubscriptionID, &d.Ledger, &pos, &d.EventType, &d.Status, &d.Attempts, &d.ResponseCode,
			&d.LatencyMS, &d.Error, &first, &last, &next)
		d.Position = uint64(pos)
		for _, t := range []struct {
			src *time.Time
			dst *time.Time
		}{{first, &d.FirstAttemptAt}, {last, &d.LastAttemptAt}, {next, &d.NextAttemptAt}} {
			if t.src != nil {
				*t.dst = *t.src
			}
		}
		return d, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("deliveries of %s: %w", id, err)
	}
	var next uint64
	if len(ds) > limit {
		ds = ds[:limit]
		next = ds[limit-1].Position
	}
	return ds, next, nil
}

// ReplayDead queues a subscription's dead letters again: its dispatcher
// delivers them, in position order, before going on. It returns how many.
//
// Errors: ErrNotFound; a database error, wrapped.
func (s *Store) ReplayDead(ctx context.Context, ledger, id string) (uint64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE webhook_subscriptions SET generation = generation + 1 WHERE ledger = $1 AND id = $2`, ledger, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("subscription %s of %s: %w", id, ledger, ErrNotFound)
		}
		tag, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET status = 'pending', replay = true, attempts = 0,
				first_attempt_at = NULL, next_attempt_at = NULL, updated_at = now()
			WHERE subscription_id = $1 AND status = 'dead'`, id)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("replay the dead letters of %s: %w", id, err)
	}
	return uint64(n), nil
}

// ReplayFrom moves a subscription's cursor back to just before from: every
// event from there on is delivered again (same delivery ids). It returns
// how many positions that is.
//
// Errors: ErrNotFound; ErrAfterCursor; ErrPastHead (a cursor past the head
// is a subscription created from past it before Create refused that: a
// replay from the head's next or before mends it); a database error,
// wrapped.
func (s *Store) ReplayFrom(ctx context.Context, ledger, id string, from uint64) (uint64, error) {
	var n uint64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var cursor int64
		err := tx.QueryRow(ctx, `SELECT delivered_position FROM webhook_subscriptions WHERE ledger = $1 AND id = $2 FOR UPDATE`,
			ledger, id).Scan(&cursor)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("subscription %s of %s: %w", id, ledger, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if from > uint64(cursor) {
			return fmt.Errorf("from %d, delivered up to %d: %w", from, cursor, ErrAfterCursor)
		}
		if err := checkFrom(ctx, tx, ledger, from); err != nil {
			return err
		}
		n = uint64(cursor) - from + 1
		_, err = tx.Exec(ctx, `UPDATE webhook_subscriptions SET delivered_position = $2, delivered_hash = NULL,
			generation = generation + 1, fault = '' WHERE id = $1`, id, int64(from-1))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("replay %s from %d: %w", id, from, err)
	}
	return n, nil
}

// checkFrom refuses a cursor moved to from-1 past the ledger's head: no
// event would be there for the dispatcher's chain check to start from, and
// it would report the chain broken instead of waiting for the event.
//
// Errors: ErrPastHead; a database error.
func checkFrom(ctx context.Context, tx pgx.Tx, ledger string, from uint64) error {
	var head int64
	err := tx.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM ledger_heads WHERE ledger = $1`, ledger).Scan(&head)
	if err != nil {
		return err
	}
	if from > uint64(head)+1 {
		return fmt.Errorf("from %d, the head is at %d (at most %d): %w", from, head, head+1, ErrPastHead)
	}
	return nil
}

// Cleanup removes the delivery log's rows untouched for retention, at most
// limit of them; it returns how many. A dead letter queued for a replay is
// kept while its subscription exists, for its worker to deliver however
// long the endpoint is down; a deleted subscription's has no worker left,
// and goes like the other rows.
//
// Errors: a database error, wrapped.
func (s *Store) Cleanup(ctx context.Context, retention time.Duration, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_deliveries WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM webhook_deliveries d WHERE updated_at < now() - $1::interval
			AND NOT (replay AND EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.id = d.subscription_id))
		LIMIT $2))`,
		retention, limit)
	if err != nil {
		return 0, fmt.Errorf("clean up the delivery log: %w", err)
	}
	return tag.RowsAffected(), nil
}

// storableError is an error's text as a text column takes it: valid UTF-8
// without NUL, at most errorBytesMax bytes, cut between two runes. The
// text may quote what an endpoint answered (a malformed status line, a
// header): PostgreSQL refuses invalid UTF-8 and NUL (SQLSTATE 22021), and
// a refused row fails the worker's step again at each restart, its
// subscription stuck without a back-off or a dead letter.
func storableError(s string) string { return domain.StorableText(s, errorBytesMax) }
