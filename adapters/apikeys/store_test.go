package apikeys_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// newPool is a pool on the test's own database, migrated.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(ctx(t), testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, apikeys.Migrate(ctx(t), pool))
	return pool
}

func TestCreateVerifyRevoke(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	s := apikeys.New(pool, apikeys.Options{})
	text, k, err := s.Create(ctx(t), apikeys.NewKey{Roles: []apikeys.Role{apikeys.RoleReader, apikeys.RoleWriter},
		Ledgers: []string{"a", "b"}, Description: "payments service"})
	testenv.NoError(t, err)
	if !strings.HasPrefix(text, "lk_"+k.ID+"_") {
		t.Fatalf("key text %q does not carry its id %s", text, k.ID)
	}
	got, err := s.Verify(ctx(t), text)
	testenv.NoError(t, err)
	want := apikeys.Key{ID: k.ID, Roles: []apikeys.Role{apikeys.RoleWriter, apikeys.RoleReader}, Ledgers: []string{"a", "b"},
		Description: "payments service", CreatedAt: k.CreatedAt}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verified key (-want +got):\n%s", diff)
	}
	if !got.Has(apikeys.RoleWriter) || got.Has(apikeys.RoleAdmin) || !got.AllowsLedger("a") || got.AllowsLedger("c") || got.AllowsLedger("") {
		t.Errorf("key %+v: wrong roles or scope", got)
	}

	// The same id with another secret is unknown, as is another id.
	wrong := text[:len(text)-1] + map[bool]string{true: "b", false: "a"}[strings.HasSuffix(text, "a")]
	if _, err := s.Verify(ctx(t), wrong); !errors.Is(err, apikeys.ErrUnknown) {
		t.Errorf("wrong secret: %v, want ErrUnknown", err)
	}
	other, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	if _, err := s.Verify(ctx(t), other); !errors.Is(err, apikeys.ErrUnknown) {
		t.Errorf("unknown key: %v, want ErrUnknown", err)
	}
	for _, bad := range []string{"", "Bearer " + text, "lk_" + k.ID, strings.ToUpper(text), "lk_zz_" + strings.Repeat("a", 52),
		"lk_" + k.ID + "_" + strings.Repeat("a", 51), "lk_" + k.ID + "_" + strings.Repeat("a", 129)} {
		if _, err := s.Verify(ctx(t), bad); !errors.Is(err, apikeys.ErrMalformed) {
			t.Errorf("Verify(%q): %v, want ErrMalformed", bad, err)
		}
	}

	// Another ledgerd on the database has the key cached; a revocation here
	// reaches it within its refresh.
	s2 := apikeys.New(pool, apikeys.Options{RefreshEvery: 50 * time.Millisecond})
	_, err = s2.Verify(ctx(t), text)
	testenv.NoError(t, err)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s2.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	r, err := s.Revoke(ctx(t), k.ID)
	testenv.NoError(t, err)
	if r.RevokedAt.IsZero() {
		t.Errorf("revoked key %+v has no revoked_at", r)
	}
	if _, err := s.Verify(ctx(t), text); !errors.Is(err, apikeys.ErrRevoked) {
		t.Errorf("verify after revoke, same store: %v, want ErrRevoked", err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, err := s2.Verify(ctx(t), text); !errors.Is(err, apikeys.ErrRevoked) {
			return errors.New("the other store still accepts the revoked key")
		}
		return nil
	})
	again, err := s.Revoke(ctx(t), k.ID)
	testenv.NoError(t, err)
	if !again.RevokedAt.Equal(r.RevokedAt) {
		t.Errorf("revoking twice moved revoked_at from %v to %v", r.RevokedAt, again.RevokedAt)
	}
	if _, err := s.Revoke(ctx(t), "0123456789ab"); !errors.Is(err, apikeys.ErrNotFound) {
		t.Errorf("revoke of an unknown id: %v, want ErrNotFound", err)
	}
	var fe *apikeys.FieldError
	if _, err := s.Revoke(ctx(t), "nope"); !errors.As(err, &fe) || fe.Field != "id" {
		t.Errorf("revoke of a malformed id: %v, want a FieldError on id", err)
	}
}

// TestStaleKeyIsLookedUpAgain: when nothing refreshes the cache (Run not
// running, as when the database is away), a cached key is trusted for
// StaleMax only, then looked up again, so a revocation is not missed.
func TestStaleKeyIsLookedUpAgain(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	now := time.Unix(1_700_000_000, 0)
	s := apikeys.New(pool, apikeys.Options{StaleMax: time.Minute, Now: func() time.Time { return now }})
	text, k, err := s.Create(ctx(t), apikeys.NewKey{Roles: []apikeys.Role{apikeys.RoleAdmin}})
	testenv.NoError(t, err)
	_, err = s.Verify(ctx(t), text)
	testenv.NoError(t, err)
	_, err = pool.Exec(ctx(t), `UPDATE api_keys SET revoked_at = now() WHERE id = $1`, k.ID)
	testenv.NoError(t, err)
	now = now.Add(time.Minute) // at the bound: still trusted
	if _, err := s.Verify(ctx(t), text); err != nil {
		t.Errorf("at StaleMax: %v, want the cached key", err)
	}
	now = now.Add(time.Nanosecond)
	if _, err := s.Verify(ctx(t), text); !errors.Is(err, apikeys.ErrRevoked) {
		t.Errorf("past StaleMax: %v, want ErrRevoked", err)
	}
}

// TestOnlyHashesAreStored: no column of the table holds the secret; the
// hash column is SHA-256 of it.
func TestOnlyHashesAreStored(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	s := apikeys.New(pool, apikeys.Options{})
	text, k, err := s.Create(ctx(t), apikeys.NewKey{Roles: []apikeys.Role{apikeys.RoleAuditor}, Description: "auditor"})
	testenv.NoError(t, err)
	_, secret, err := apikeys.Parse(text)
	testenv.NoError(t, err)
	var row string
	var hash []byte
	testenv.NoError(t, pool.QueryRow(ctx(t), `SELECT k::text, secret_hash FROM api_keys k WHERE id = $1`, k.ID).Scan(&row, &hash))
	if strings.Contains(row, secret) || strings.Contains(row, text) {
		t.Errorf("the row holds the secret: %s", row)
	}
	if want := sha256.Sum256([]byte(secret)); string(hash) != string(want[:]) {
		t.Errorf("secret_hash %x, want SHA-256 of the secret %x", hash, want)
	}
	keys, truncated, err := s.List(ctx(t), false)
	testenv.NoError(t, err)
	if truncated || len(keys) != 1 || keys[0].ID != k.ID {
		t.Errorf("List: %+v truncated %v, want the one key", keys, truncated)
	}
}

func TestNewKeyBounds(t *testing.T) {
	t.Parallel()
	s := apikeys.New(newPool(t), apikeys.Options{})
	ledgers := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "l" + strings.Repeat("x", i%10) + string(rune('a'+i%26)) + string(rune('a'+i/26))
		}
		return out
	}
	reader := []apikeys.Role{apikeys.RoleReader}
	for _, tc := range []struct {
		name  string
		key   apikeys.NewKey
		field string // "" for success
	}{
		{"ledgers at the bound", apikeys.NewKey{Roles: reader, Ledgers: ledgers(apikeys.LedgersPerKeyMax)}, ""},
		{"ledgers over the bound", apikeys.NewKey{Roles: reader, Ledgers: ledgers(apikeys.LedgersPerKeyMax + 1)}, "ledgers"},
		{"description at the bound", apikeys.NewKey{Roles: reader, Description: strings.Repeat("é", apikeys.DescriptionBytesMax/2)}, ""},
		{"description over the bound", apikeys.NewKey{Roles: reader, Description: strings.Repeat("d", apikeys.DescriptionBytesMax+1)}, "description"},
		{"description with a newline", apikeys.NewKey{Roles: reader, Description: "a\nb"}, "description"},
		{"every role", apikeys.NewKey{Roles: apikeys.Roles}, ""},
		{"no role", apikeys.NewKey{}, "roles"},
		{"unknown role", apikeys.NewKey{Roles: []apikeys.Role{"root"}}, "roles"},
		{"role twice", apikeys.NewKey{Roles: []apikeys.Role{apikeys.RoleReader, apikeys.RoleReader}}, "roles"},
		{"malformed ledger", apikeys.NewKey{Roles: reader, Ledgers: []string{"Bad"}}, "ledgers"},
		{"ledger twice", apikeys.NewKey{Roles: reader, Ledgers: []string{"a", "a"}}, "ledgers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, k, err := s.Create(ctx(t), tc.key)
			var fe *apikeys.FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("Create: %v", err)
			case tc.field == "" && len(k.Ledgers) != len(tc.key.Ledgers):
				t.Errorf("Create: %d ledgers stored, want %d", len(k.Ledgers), len(tc.key.Ledgers))
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, apikeys.ErrInvalid)):
				t.Errorf("Create: %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
}

// TestKeysMax: KeysMax active keys at most; a revoked one frees a place.
func TestKeysMax(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	s := apikeys.New(pool, apikeys.Options{})
	_, err := pool.Exec(ctx(t), `INSERT INTO api_keys (id, secret_hash, roles)
		SELECT lpad(to_hex(i), 12, '0'), sha256(i::text::bytea), ARRAY['reader'] FROM generate_series(1, $1) AS i`, apikeys.KeysMax-1)
	testenv.NoError(t, err)
	reader := apikeys.NewKey{Roles: []apikeys.Role{apikeys.RoleReader}}
	_, _, err = s.Create(ctx(t), reader)
	testenv.NoError(t, err) // the KeysMax-th
	if _, _, err := s.Create(ctx(t), reader); !errors.Is(err, apikeys.ErrTooManyKeys) {
		t.Fatalf("key %d: %v, want ErrTooManyKeys", apikeys.KeysMax+1, err)
	}
	keys, truncated, err := s.List(ctx(t), false)
	testenv.NoError(t, err)
	if len(keys) != apikeys.KeysMax || truncated {
		t.Errorf("List: %d keys, truncated %v; want %d, false", len(keys), truncated, apikeys.KeysMax)
	}
	_, err = s.Revoke(ctx(t), "000000000001")
	testenv.NoError(t, err)
	_, _, err = s.Create(ctx(t), reader)
	testenv.NoError(t, err)
	keys, truncated, err = s.List(ctx(t), true)
	testenv.NoError(t, err)
	if len(keys) != apikeys.KeysMax || !truncated {
		t.Errorf("List with revoked: %d keys, truncated %v; want %d, true", len(keys), truncated, apikeys.KeysMax)
	}
}

func TestEnsure(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	s := apikeys.New(pool, apikeys.Options{})
	text := "lk_00000000abcd_" + strings.Repeat("0123456789abcdef", 4) // openssl rand -hex 32 works
	k, created, err := s.Ensure(ctx(t), text, "bootstrap")
	testenv.NoError(t, err)
	if !created || !k.Has(apikeys.RoleAdmin) || !k.AllLedgers() {
		t.Errorf("Ensure: %+v created %v, want a new admin key of every ledger", k, created)
	}
	if _, created, err := s.Ensure(ctx(t), text, "bootstrap"); err != nil || created {
		t.Errorf("Ensure again: created %v, %v; want it as it was", created, err)
	}
	if _, err := s.Verify(ctx(t), text); err != nil {
		t.Errorf("Verify the ensured key: %v", err)
	}
	if _, _, err := s.Ensure(ctx(t), "lk_00000000abcd_"+strings.Repeat("f", 64), ""); !errors.Is(err, apikeys.ErrConflict) {
		t.Errorf("Ensure of the id with another secret: %v, want ErrConflict", err)
	}
	if _, _, err := s.Ensure(ctx(t), "admin", ""); !errors.Is(err, apikeys.ErrMalformed) {
		t.Errorf("Ensure of a malformed key: %v, want ErrMalformed", err)
	}
	_, err = s.Revoke(ctx(t), k.ID)
	testenv.NoError(t, err)
	if _, _, err := s.Ensure(ctx(t), text, ""); !errors.Is(err, apikeys.ErrRevoked) {
		t.Errorf("Ensure of a revoked key: %v, want ErrRevoked", err)
	}
	if n, err := s.Count(ctx(t), ""); err != nil || n != 0 {
		t.Errorf("Count: %d, %v; want 0 active keys", n, err)
	}
}

// TestParseBounds: a secret of 52 to 128 characters of [a-z0-9]; a
// generated key is one.
func TestParseBounds(t *testing.T) {
	t.Parallel()
	gen, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	for _, tc := range []struct {
		text string
		ok   bool
	}{
		{gen, true},
		{"lk_0123456789ab_" + strings.Repeat("a", 52), true},
		{"lk_0123456789ab_" + strings.Repeat("9", 128), true},
		{"lk_0123456789ab_" + strings.Repeat("a", 51), false},
		{"lk_0123456789ab_" + strings.Repeat("a", 129), false},
		{"lk_0123456789a_" + strings.Repeat("a", 52), false},
		{"lk_0123456789AB_" + strings.Repeat("a", 52), false},
		{"lk_0123456789ab_" + strings.Repeat("a", 51) + "_", false},
		{"xk_0123456789ab_" + strings.Repeat("a", 52), false},
	} {
		_, _, err := apikeys.Parse(tc.text)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, apikeys.ErrMalformed)) {
			t.Errorf("Parse(%q): %v, want ok %v", tc.text, err, tc.ok)
		}
	}
}
