package apikeys

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/eventstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates the api_keys table; safe to run from several processes at
// once (eventstore.ApplyMigrations holds an advisory lock).
//
// Errors: a database error, wrapped.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return eventstore.ApplyMigrations(ctx, pool, "apikeys", migrations, "migrations")
}

// Pending returns the migrations of api_keys not applied yet.
//
// Errors: a database error, wrapped.
func Pending(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	return eventstore.PendingMigrations(ctx, pool, "apikeys", migrations, "migrations")
}

// Defaults of Options.
const (
	// RefreshEveryDefault is how often the cached keys are re-checked
	// against the table: a key revoked elsewhere stops working within this.
	RefreshEveryDefault = time.Second
	// StaleMaxDefault is how long a cached key is trusted without a
	// re-check: when refreshing fails (the database is away), a key is looked
	// up again on its next use, so a revocation is never missed for long.
	StaleMaxDefault = 5 * time.Second
)

// createAttemptsMax bounds the retries of a key whose random id was taken.
const createAttemptsMax = 3

// createLockKey serialises key creation (pg_advisory_xact_lock), so that
// counting the active keys and inserting one is not a read-then-check race
// between ledgerds. Creation is rare: the lock costs nothing that matters.
const createLockKey = 0x6c6b5f6170696b /* "lk_apik" */

// uniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// RefreshEvery: RefreshEveryDefault when 0.
	RefreshEvery time.Duration
	// StaleMax: StaleMaxDefault when 0.
	StaleMax time.Duration
	// NegativeTTL: NegativeTTLDefault when 0.
	NegativeTTL time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Random makes keys; nil: crypto/rand.Reader.
	Random io.Reader
	// Logger reports failed re-checks of the cache; nil: slog.Default().
	Logger *slog.Logger
}

// Store keeps API keys in PostgreSQL and verifies them from a cache. Run
// keeps the cache fresh.
type Store struct {
	pool *pgxpool.Pool
	opts Options

	mu sync.RWMutex
	// cache holds verified, active keys by id; at most KeysMax.
	cache map[string]cached
	// negative holds keys that failed, at most NegativeMax (negative.go).
	negative map[negativeKey]negativeEntry
	// lookups bounds the look-ups in flight: keys not in the cache (unknown
	// ones included) cost a query each, and must not take the pool the
	// writers and projectors share.
	lookups chan struct{}
	// revocations counts this process's revocations: a look-up that
	// overlapped one may have read the row just before it, and is not
	// cached (it would put the revoked key back).
	revocations uint64
}

type cached struct {
	key  Key
	hash [32]byte
	// checked is when the key was last seen active in the table.
	checked time.Time
}

// New returns a Store over pool, whose api_keys table Migrate made.
func New(pool *pgxpool.Pool, opts Options) *Store {
	if opts.RefreshEvery <= 0 {
		opts.RefreshEvery = RefreshEveryDefault
	}
	if opts.StaleMax <= 0 {
		opts.StaleMax = StaleMaxDefault
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = NegativeTTLDefault
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{pool: pool, opts: opts, cache: map[string]cached{}, negative: map[negativeKey]negativeEntry{},
		lookups: make(chan struct{}, LookupsMax)}
}

const keyColumns = `id, roles, ledgers, description, created_at, revoked_at`

func scanKey(row pgx.Row, extra ...any) (Key, error) {
	var k Key
	var roles []string
	var revoked *time.Time
	if err := row.Scan(append([]any{&k.ID, &roles, &k.Ledgers, &k.Description, &k.CreatedAt, &revoked}, extra...)...); err != nil {
		return Key{}, err
	}
	for _, r := range roles {
		k.Roles = append(k.Roles, Role(r))
	}
	if revoked != nil {
		k.RevokedAt = *revoked
	}
	return k, nil
}

// Create makes a key and returns its text, which is not stored and cannot be
// shown again, and the key.
//
// Errors: *FieldError (ErrInvalid) on roles, ledgers or description;
// ErrTooManyKeys; a database error, wrapped.
func (s *Store) Create(ctx context.Context, n NewKey) (string, Key, error) {
	n, err := n.validate()
	if err != nil {
		return "", Key{}, err
	}
	for attempt := 1; ; attempt++ {
		text, err := Generate(s.opts.Random)
		if err != nil {
			return "", Key{}, err
		}
		id, secret, err := Parse(text)
		if err != nil {
			panic("apikeys: a generated key does not parse: " + err.Error())
		}
		k, err := s.insert(ctx, id, secret, n)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == uniqueViolation && attempt < createAttemptsMax {
			continue // another key drew the same id
		}
		if err != nil {
			return "", Key{}, err
		}
		return text, k, nil
	}
}

// insert adds a key unless KeysMax are active.
func (s *Store) insert(ctx context.Context, id, secret string, n NewKey) (Key, error) {
	hash := hashOf(secret)
	var k Key
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(createLockKey)); err != nil {
			return err
		}
		var active int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE revoked_at IS NULL`).Scan(&active); err != nil {
			return err
		}
		if active >= KeysMax {
			return fmt.Errorf("%d keys active: %w", active, ErrTooManyKeys)
		}
		roles := make([]string, len(n.Roles))
		for i, r := range n.Roles {
			roles[i] = string(r)
		}
		var err error
		k, err = scanKey(tx.QueryRow(ctx, `INSERT INTO api_keys (id, secret_hash, roles, ledgers, description)
			VALUES ($1, $2, $3, $4, $5) RETURNING `+keyColumns, id, hash[:], roles, n.Ledgers, n.Description))
		return err
	})
	if err != nil {
		return Key{}, fmt.Errorf("create api key: %w", err)
	}
	s.forgetFailures(id)
	return k, nil
}

// Ensure makes text an active admin key for every ledger unless it is one
// already: the bootstrap key an operator gives ledgerd (-admin-key). It is
// stored hashed like any other. created says whether it was new.
//
// Errors: ErrMalformed; ErrRevoked when it was revoked (a revoked key must
// not come back by a restart); ErrConflict when its id belongs to another
// key or the key is not an admin of every ledger; ErrTooManyKeys; a
// database error, wrapped.
func (s *Store) Ensure(ctx context.Context, text, description string) (k Key, created bool, err error) {
	id, secret, err := Parse(text)
	if err != nil {
		return Key{}, false, err
	}
	k, hash, err := s.lookup(ctx, id)
	if errors.Is(err, ErrUnknown) {
		k, err = s.insert(ctx, id, secret, NewKey{Roles: []Role{RoleAdmin}, Description: description})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != uniqueViolation {
			return k, err == nil, err
		}
		// Another ledgerd ensured it meanwhile: check what it stored.
		k, hash, err = s.lookup(ctx, id)
	}
	switch {
	case err != nil:
		return Key{}, false, err
	case subtle.ConstantTimeCompare(hash[:], func() []byte { h := hashOf(secret); return h[:] }()) != 1:
		return Key{}, false, fmt.Errorf("key %s: %w", id, ErrConflict)
	case !k.RevokedAt.IsZero():
		return Key{}, false, fmt.Errorf("key %s: %w", id, ErrRevoked)
	case !slices.Contains(k.Roles, RoleAdmin) || !k.AllLedgers():
		return Key{}, false, fmt.Errorf("key %s is not an admin of every ledger: %w", id, ErrConflict)
	}
	return k, false, nil
}

// lookup reads a key and its hash, revoked or not.
//
// Errors: ErrUnknown; a database error, wrapped.
func (s *Store) lookup(ctx context.Context, id string) (Key, [32]byte, error) {
	select {
	case s.lookups <- struct{}{}:
		defer func() { <-s.lookups }()
	case <-ctx.Done():
		return Key{}, [32]byte{}, fmt.Errorf("look up api key %s: %w", id, ctx.Err())
	}
	var hash []byte
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+`, secret_hash FROM api_keys WHERE id = $1`, id), &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, [32]byte{}, fmt.Errorf("key %s: %w", id, ErrUnknown)
	}
	if err != nil {
		return Key{}, [32]byte{}, fmt.Errorf("look up api key %s: %w", id, err)
	}
	if len(hash) != 32 {
		panic("apikeys: a stored hash is not 32 bytes: the table's CHECK was dropped")
	}
	return k, [32]byte(hash), nil
}

// Count returns the number of active keys with role (admin counts for every
// role); role "" counts every active key.
//
// Errors: a database error, wrapped.
func (s *Store) Count(ctx context.Context, role Role) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE revoked_at IS NULL
		AND ($1 = '' OR $1 = ANY(roles) OR 'admin' = ANY(roles))`, string(role)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count api keys: %w", err)
	}
	return n, nil
}

// List returns the active keys, and with includeRevoked the revoked ones
// too, oldest first; at most KeysMax, truncated says there were more.
// Secrets and hashes are never returned.
//
// Errors: a database error, wrapped.
func (s *Store) List(ctx context.Context, includeRevoked bool) (keys []Key, truncated bool, err error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE $1 OR revoked_at IS NULL
		ORDER BY created_at, id LIMIT $2`, includeRevoked, KeysMax+1)
	if err != nil {
		return nil, false, fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, false, fmt.Errorf("list api keys: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("list api keys: %w", err)
	}
	if len(keys) > KeysMax {
		return keys[:KeysMax], true, nil
	}
	return keys, false, nil
}

// Revoke revokes a key at once in this process, and within RefreshEvery in
// every other ledgerd on the database. Revoking a revoked key changes
// nothing and answers it as it is.
//
// Errors: *FieldError on id (malformed); ErrNotFound; a database error,
// wrapped.
func (s *Store) Revoke(ctx context.Context, id string) (Key, error) {
	if len(id) != 2*idBytes || !only(id, "0123456789abcdef") {
		return Key{}, &FieldError{"id", "want the 12 hex digits of a key's id (lk_<id>_...)"}
	}
	k, err := scanKey(s.pool.QueryRow(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
		WHERE id = $1 RETURNING `+keyColumns, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("key %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Key{}, fmt.Errorf("revoke api key %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.cache, id)
	s.revocations++
	s.mu.Unlock()
	return k, nil
}

// Verify returns the active key whose text this is. A key verified within
// StaleMax is answered from memory; otherwise it is looked up, as is
// another secret for a cached id (once: the failure is remembered).
//
// Errors: ErrMalformed; ErrUnknown (no such id, or another secret);
// ErrRevoked; a database error, wrapped.
func (s *Store) Verify(ctx context.Context, text string) (Key, error) {
	id, secret, err := Parse(text)
	if err != nil {
		return Key{}, err
	}
	hash := hashOf(secret)
	now := s.opts.Now()
	s.mu.RLock()
	c, ok := s.cache[id]
	revocations := s.revocations
	failed := s.knownFailure(id, hash, now)
	s.mu.RUnlock()
	if failed != nil && (!ok || !equalHash(hash, c.hash)) {
		return Key{}, failed
	}
	// Another secret than the cached key's is looked up as an unknown id
	// is: answered from memory, its speed would tell a prober which ids
	// are keys in use.
	if !ok || now.Sub(c.checked) > s.opts.StaleMax || !equalHash(hash, c.hash) {
		k, stored, err := s.lookup(ctx, id)
		if errors.Is(err, ErrUnknown) {
			s.mu.Lock()
			s.rememberFailure(id, hash, err, now)
			s.mu.Unlock()
		}
		if err != nil {
			return Key{}, err
		}
		if !k.RevokedAt.IsZero() {
			err := fmt.Errorf("key %s: %w", id, ErrRevoked)
			s.mu.Lock()
			delete(s.cache, id)
			s.rememberFailure(id, hash, err, now)
			s.mu.Unlock()
			return Key{}, err
		}
		c = cached{key: k, hash: stored, checked: now}
		if equalHash(hash, stored) {
			s.mu.Lock()
			if _, present := s.cache[id]; s.revocations == revocations && (present || len(s.cache) < KeysMax) {
				s.cache[id] = c
			}
			s.mu.Unlock()
		}
	}
	if !equalHash(hash, c.hash) {
		err := fmt.Errorf("key %s: %w", id, ErrUnknown)
		s.mu.Lock()
		s.rememberFailure(id, hash, err, now)
		s.mu.Unlock()
		return Key{}, err
	}
	return c.key, nil
}

// equalHash compares two secret hashes in constant time.
func equalHash(a, b [32]byte) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }

// Run re-checks the cached keys every RefreshEvery until ctx ends: those
// revoked (or gone) leave the cache, the others are marked fresh. A failed
// re-check leaves them as they are; they turn stale after StaleMax and are
// looked up on their next use.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.RefreshEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Staleness covers a failure (see above); it is said, once a
			// re-check fails after one that did not.
			err := s.refresh(ctx)
			if err != nil && !failing && ctx.Err() == nil {
				s.logger().Warn("api keys: re-check failed; cached keys turn stale and are looked up again", "err", err)
			}
			failing = err != nil
		}
	}
}

// refresh is one re-check of the cache: one query for every cached key.
//
// Errors: a database error, wrapped.
func (s *Store) refresh(ctx context.Context) error {
	s.mu.RLock()
	ids := make([]string, 0, len(s.cache))
	for id := range s.cache {
		ids = append(ids, id)
	}
	s.mu.RUnlock()
	if len(ids) == 0 {
		return nil
	}
	now := s.opts.Now()
	rows, err := s.pool.Query(ctx, `SELECT id FROM api_keys WHERE id = ANY($1) AND revoked_at IS NULL`, ids)
	if err != nil {
		return fmt.Errorf("refresh api keys: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("refresh api keys: %w", err)
	}
	active := make(map[string]bool, len(list))
	for _, id := range list {
		active[id] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		c, ok := s.cache[id]
		switch {
		case !ok:
		case active[id]:
			if now.After(c.checked) { // a Verify meanwhile may have checked it later
				c.checked = now
				s.cache[id] = c
			}
		default:
			delete(s.cache, id)
		}
	}
	return nil
}

func (s *Store) logger() *slog.Logger {
	if s.opts.Logger != nil {
		return s.opts.Logger
	}
	return slog.Default()
}
