package apikeys_test

import (
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/internal/testenv"
)

// clock is a settable clock for a Store.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestNegativeCache: an unknown key is looked up once, then answered from
// memory for NegativeTTL: a row inserted behind the Store's back (as by
// another ledgerd) is not seen until the failure expires. A wrong secret
// for a real key is remembered as that pair only: the real key still works.
func TestNegativeCache(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := apikeys.New(pool, apikeys.Options{Now: clk.Now})
	const id = "0123456789ab"
	secret := strings.Repeat("s", 52)
	text := "lk_" + id + "_" + secret
	if _, err := s.Verify(ctx(t), text); !errors.Is(err, apikeys.ErrUnknown) {
		t.Fatalf("Verify of an unknown key: %v, want ErrUnknown", err)
	}
	if _, err := s.Cached(text); !errors.Is(err, apikeys.ErrUnknown) {
		t.Fatalf("Cached after a failure: %v, want ErrUnknown", err)
	}
	hash := sha256.Sum256([]byte(secret))
	_, err := pool.Exec(ctx(t), `INSERT INTO api_keys (id, secret_hash, roles) VALUES ($1, $2, ARRAY['reader'])`, id, hash[:])
	testenv.NoError(t, err)
	clk.add(apikeys.NegativeTTLDefault - time.Millisecond)
	if _, err := s.Verify(ctx(t), text); !errors.Is(err, apikeys.ErrUnknown) {
		t.Fatalf("Verify within the negative TTL: %v, want ErrUnknown from memory", err)
	}
	clk.add(time.Millisecond)
	if _, err := s.Verify(ctx(t), text); err != nil {
		t.Fatalf("Verify once the failure expired: %v", err)
	}
	// A wrong secret for that real id: refused, remembered, harmless.
	wrong := "lk_" + id + "_" + strings.Repeat("w", 52)
	for range 2 {
		if _, err := s.Verify(ctx(t), wrong); !errors.Is(err, apikeys.ErrUnknown) {
			t.Fatalf("Verify with a wrong secret: %v, want ErrUnknown", err)
		}
	}
	if _, err := s.Verify(ctx(t), text); err != nil {
		t.Fatalf("Verify of the real key after wrong secrets: %v", err)
	}
	if _, err := s.Cached(text); err != nil {
		t.Fatalf("Cached of the real key: %v", err)
	}
	if _, err := s.Cached("lk_ba9876543210_" + secret); !errors.Is(err, apikeys.ErrNotCached) {
		t.Fatalf("Cached of a key never seen: %v, want ErrNotCached", err)
	}
}
