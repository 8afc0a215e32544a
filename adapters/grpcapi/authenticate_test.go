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
