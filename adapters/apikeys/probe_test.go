package apikeys_test

import (
	"strings"
	"testing"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestWrongSecretCostsWhatAnUnknownIDCosts: docs/auth.md promises that an
// unknown id and a wrong secret are one error, so probing tells nothing about
// which ids exist. The error was one, but not the work: a wrong secret for
// an id in the cache was answered from memory, an unknown id cost a
// PostgreSQL round trip, and the difference told a prober which ids are
// keys in use. Both now cost one look-up.
func TestWrongSecretCostsWhatAnUnknownIDCosts(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	s := apikeys.New(pool, apikeys.Options{})
	text, k, err := s.Create(ctx(t), apikeys.NewKey{Roles: []apikeys.Role{apikeys.RoleReader}})
	testenv.NoError(t, err)
	_, err = s.Verify(ctx(t), text) // in use: cached
	testenv.NoError(t, err)

	queries := func(probe string) int64 {
		before := pool.Stat().AcquireCount()
		_, err := s.Verify(ctx(t), probe)
		if err == nil {
			t.Fatalf("probe %s verified", probe)
		}
		return pool.Stat().AcquireCount() - before
	}
	secret := strings.Repeat("a", 52)
	wrongSecret := queries("lk_" + k.ID + "_" + secret)
	unknownID := queries("lk_" + strings.Repeat("0", 12) + "_" + secret)
	if wrongSecret != unknownID {
		t.Errorf("a wrong secret for live id %s cost %d queries, an unknown id %d: the cost tells which ids exist",
			k.ID, wrongSecret, unknownID)
	}
}
