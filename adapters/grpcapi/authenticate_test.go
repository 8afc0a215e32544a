package grpcapi

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestAuthenticateFromABlockedSource: Authenticate asks the key cache
// before the failure limiter, and keeps the limiter's answer for what the
// cache cannot tell. From a source over its limit, a key in memory is
// still answered; a valid key not in memory is refused with
// ResourceExhausted (no look-up), and a remembered unknown key with
// Unauthenticated; from another source the same key is looked up and
// verified.
func TestAuthenticateFromABlockedSource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	defer pool.Close()
	store := apikeys.New(pool, apikeys.Options{})
	create := func() string {
		text, _, err := store.Create(ctx, apikeys.NewKey{Roles: []apikeys.Role{apikeys.RoleReader}})
		testenv.NoError(t, err)
		return text
	}
	known, other := create(), create()
	newUnknown := func() string {
		text, err := apikeys.Generate(nil)
		testenv.NoError(t, err)
		return text
	}
	remembered := newUnknown()
	bearer := func(key string) []string { return []string{"Bearer " + key} }
	a := NewAuth(store, nil)
	const source, elsewhere = "192.0.2.1:4000", "198.51.100.7:4000"

	if _, err := a.Authenticate(ctx, source, bearer(known)); err != nil {
		t.Fatalf("known key, first look-up: %v", err)
	}
	if _, err := a.Authenticate(ctx, source, bearer(remembered)); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("unknown key: %v, want Unauthenticated", err)
	}
	// New unknown keys until the source is over its limit (the bucket
	// refills while they are looked up: it may take more than the burst).
	for i := 0; ; i++ {
		_, err := a.Authenticate(ctx, source, bearer(newUnknown()))
		if status.Code(err) == codes.ResourceExhausted {
			break
		}
		if status.Code(err) != codes.Unauthenticated || i > 10*FailedAuthBurst {
			t.Fatalf("unknown key %d from %s: %v, want Unauthenticated until ResourceExhausted", i, source, err)
		}
	}
	if _, err := a.Authenticate(ctx, source, bearer(known)); err != nil {
		t.Errorf("key in memory from the blocked source: %v, want it answered", err)
	}
	if _, err := a.Authenticate(ctx, source, bearer(remembered)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("remembered unknown key from the blocked source: %v, want Unauthenticated", err)
	}
	if _, err := a.Authenticate(ctx, source, bearer(other)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("valid key not in memory from the blocked source: %v, want ResourceExhausted", err)
	}
	if _, err := a.Authenticate(ctx, elsewhere, bearer(other)); err != nil {
		t.Errorf("the same key from another source: %v, want it looked up and verified", err)
	}
	if _, err := a.Authenticate(ctx, source, bearer(other)); err != nil {
		t.Errorf("that key, now in memory, from the blocked source: %v, want it answered", err)
	}
}

// TestFailedAuthenticationsPerSource: Authenticate counts a failure
// against its source, not its address: addresses of one IPv6 /64 share a
// bucket (a client may use each in turn), and an IPv4-mapped address
// shares its IPv4 address's; another /64 and another IPv4 address have
// their own. Once a source made FailedAuthBurst failures (the limiter's
// clock stands still: none comes back), a new key from any of its
// addresses is refused with ResourceExhausted, not looked up; from another
// source it is looked up (Unauthenticated: unknown).
func TestFailedAuthenticationsPerSource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	defer pool.Close()
	store := apikeys.New(pool, apikeys.Options{})
	// A key never seen: the cache cannot answer for it, a look-up must.
	newUnknown := func() []string {
		text, err := apikeys.Generate(nil)
		testenv.NoError(t, err)
		return []string{"Bearer " + text}
	}
	malformed := []string{"Bearer lk_malformed"}
	for _, tc := range []struct {
		name string
		// failing makes the failures, one address after the other.
		failing []string
		// shared are other addresses of the source; others are not.
		shared, others []string
	}{
		{"IPv6 /64", []string{"[2001:db8:1:2::1]:4000", "[2001:db8:1:2::2]:4000", "[2001:db8:1:2:ffff::3]:4001"},
			[]string{"[2001:db8:1:2:abcd::1]:5000", "[2001:db8:1:2::1]:5001"},
			[]string{"[2001:db8:1:3::1]:4000", "[2001:db8:1::1]:4000", "192.0.2.1:4000"}},
		{"IPv4 address", []string{"192.0.2.1:4000", "192.0.2.1:4001", "[::ffff:192.0.2.1]:4002"},
			[]string{"[::ffff:192.0.2.1]:5000", "192.0.2.1:5001"},
			[]string{"192.0.2.2:4000", "[2001:db8:1:2::1]:4000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAuth(store, nil)
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			a.failures = newFailureLimiter(func() time.Time { return now })
			for i := range FailedAuthBurst {
				addr := tc.failing[i%len(tc.failing)]
				if _, err := a.Authenticate(ctx, addr, malformed); status.Code(err) != codes.Unauthenticated {
					t.Fatalf("failure %d, from %s: %v, want Unauthenticated", i, addr, err)
				}
			}
			for _, addr := range append(tc.failing, tc.shared...) {
				if _, err := a.Authenticate(ctx, addr, newUnknown()); status.Code(err) != codes.ResourceExhausted {
					t.Errorf("a new key from %s, of the source over its limit: %v, want ResourceExhausted", addr, err)
				}
			}
			for _, addr := range tc.others {
				if _, err := a.Authenticate(ctx, addr, newUnknown()); status.Code(err) != codes.Unauthenticated {
					t.Errorf("a new key from %s, another source: %v, want Unauthenticated (looked up)", addr, err)
				}
			}
		})
	}
}
