package apikeys_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestReviewKeysMaxUnderConcurrency: many Creates racing for the last places
// take exactly those places; the others get ErrTooManyKeys.
func TestReviewKeysMaxUnderConcurrency(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	_, err := pool.Exec(ctx(t), `INSERT INTO api_keys (id, secret_hash, roles)
		SELECT lpad(to_hex(i), 12, '0'), sha256(i::text::bytea), ARRAY['reader'] FROM generate_series(1, $1) AS i`, apikeys.KeysMax-3)
	testenv.NoError(t, err)
	const racers = 24
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each racer its own Store: as many ledgerds on one database.
			s := apikeys.New(pool, apikeys.Options{})
			_, _, errs[i] = s.Create(ctx(t), apikeys.NewKey{Roles: []apikeys.Role{apikeys.RoleReader}})
		}()
	}
	wg.Wait()
	ok, full := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, apikeys.ErrTooManyKeys):
			full++
		default:
			t.Errorf("Create: %v, want nil or ErrTooManyKeys", err)
		}
	}
	n, err := apikeys.New(pool, apikeys.Options{}).Count(ctx(t), "")
	testenv.NoError(t, err)
	if ok != 3 || full != racers-3 || n != apikeys.KeysMax {
		t.Errorf("%d created, %d refused, %d active; want 3, %d, %d", ok, full, n, racers-3, apikeys.KeysMax)
	}
}

// TestReviewRevokeRacesVerify: Revoke deletes the id from the cache after
// its UPDATE; a Verify whose look-up read the row before that UPDATE
// committed inserts it again afterwards, as freshly checked. The revoked key
// then keeps working on the very ledgerd that revoked it, until the next
// refresh (RefreshEvery) or, when refreshes fail, for StaleMax. auth.md
// promises "at once on the one that revoked".
func TestReviewRevokeRacesVerify(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	// A frozen clock: an entry once cached stays fresh, as it does for
	// StaleMax while the refresh loop is failing.
	now := time.Unix(1_700_000_000, 0)
	s := apikeys.New(pool, apikeys.Options{StaleMax: time.Hour, Now: func() time.Time { return now }})
	const tries = 300
	for try := range tries {
		text, k, err := s.Create(ctx(t), apikeys.NewKey{Roles: []apikeys.Role{apikeys.RoleReader}})
		testenv.NoError(t, err)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, _ = s.Verify(context.Background(), text)
			}()
		}
		close(start)
		_, err = s.Revoke(ctx(t), k.ID)
		testenv.NoError(t, err)
		wg.Wait()
		// Revoke has returned and every racing Verify is done.
		if _, err := s.Verify(ctx(t), text); err == nil {
			t.Fatalf("a key revoked on this ledgerd still verifies after Revoke returned (try %d): Verify re-cached it after Revoke's delete", try)
		}
	}
	t.Logf("race not hit in %d tries", tries)
}

// TestReviewDatabaseAway: with the database gone, a fresh cached key still
// verifies, a stale or unknown one fails with an error that is neither
// ErrUnknown nor ErrRevoked (the API answers Unavailable, never a pass).
func TestReviewDatabaseAway(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	now := time.Unix(1_700_000_000, 0)
	s := apikeys.New(pool, apikeys.Options{Now: func() time.Time { return now }})
	text, _, err := s.Create(ctx(t), apikeys.NewKey{Roles: []apikeys.Role{apikeys.RoleReader}})
	testenv.NoError(t, err)
	_, err = s.Verify(ctx(t), text)
	testenv.NoError(t, err)
	other, _, err := s.Create(ctx(t), apikeys.NewKey{Roles: []apikeys.Role{apikeys.RoleReader}})
	testenv.NoError(t, err)
	pool.Close()
	if _, err := s.Verify(ctx(t), text); err != nil {
		t.Errorf("fresh cached key, database away: %v, want it verified from the cache", err)
	}
	for name, key := range map[string]string{"uncached key": other, "unknown key": mustGenerate(t)} {
		_, err := s.Verify(ctx(t), key)
		if err == nil || errors.Is(err, apikeys.ErrUnknown) || errors.Is(err, apikeys.ErrRevoked) {
			t.Errorf("%s, database away: %v, want a database error", name, err)
		}
	}
	now = now.Add(apikeys.StaleMaxDefault + time.Nanosecond)
	if _, err := s.Verify(ctx(t), text); err == nil || errors.Is(err, apikeys.ErrUnknown) {
		t.Errorf("stale cached key, database away: %v, want a database error", err)
	}
}

// TestReviewWrongSecretDoesNotPoison: a wrong secret for a known id neither
// evicts nor replaces the cached key, and is never cached itself.
func TestReviewWrongSecretDoesNotPoison(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	now := time.Unix(1_700_000_000, 0)
	s := apikeys.New(pool, apikeys.Options{Now: func() time.Time { return now }})
	text, k, err := s.Create(ctx(t), apikeys.NewKey{Roles: []apikeys.Role{apikeys.RoleReader}})
	testenv.NoError(t, err)
	wrong := "lk_" + k.ID + "_" + "0123456789abcdef0123456789abcdef0123456789abcdef0123"
	for _, step := range []string{"uncached", "cached", "stale"} {
		if step == "stale" {
			now = now.Add(time.Hour)
		}
		if _, err := s.Verify(ctx(t), wrong); !errors.Is(err, apikeys.ErrUnknown) {
			t.Errorf("%s: wrong secret: %v, want ErrUnknown", step, err)
		}
		if _, err := s.Verify(ctx(t), text); err != nil {
			t.Errorf("%s: right secret after a wrong one: %v", step, err)
		}
	}
}

func mustGenerate(t *testing.T) string {
	t.Helper()
	k, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	return k
}

// TestLookupsBounded: keys not in the cache are looked up at most
// LookupsMax at a time, however many arrive: a flood of unknown keys takes
// no more of the shared pool.
func TestLookupsBounded(t *testing.T) {
	t.Parallel()
	pool := newPool(t) // the lock and the observer
	cfg, err := pgxpool.ParseConfig(pool.Config().ConnString())
	testenv.NoError(t, err)
	cfg.MaxConns = 4 * apikeys.LookupsMax // room for more than the bound
	storePool, err := pgxpool.NewWithConfig(ctx(t), cfg)
	testenv.NoError(t, err)
	t.Cleanup(storePool.Close)
	s := apikeys.New(storePool, apikeys.Options{})
	// Hold the table: every look-up waits in PostgreSQL, where it can be seen.
	tx, err := pool.Begin(ctx(t))
	testenv.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	_, err = tx.Exec(ctx(t), `LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE`)
	testenv.NoError(t, err)
	const callers = apikeys.LookupsMax + 3
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("lk_%012x_%s", i, strings.Repeat("a", 52))
			_, _ = s.Verify(ctx(t), key)
		}()
	}
	waiting := func() (int, error) {
		var n int
		err := pool.QueryRow(ctx(t), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM api_keys WHERE id = %'`).Scan(&n)
		return n, err
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		n, err := waiting()
		if err == nil && n != apikeys.LookupsMax {
			err = fmt.Errorf("%d look-ups waiting in PostgreSQL, want %d", n, apikeys.LookupsMax)
		}
		return err
	})
	// The others must not follow. That something does not happen can only
	// be watched for a while: 200 ms, polled.
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); {
		if n, err := waiting(); err != nil || n > apikeys.LookupsMax {
			t.Fatalf("%d look-ups in PostgreSQL (%v), want at most %d", n, err, apikeys.LookupsMax)
		}
	}
	testenv.NoError(t, tx.Rollback(ctx(t)))
	wg.Wait()
}
