package testenv_test

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestPostgresURLFreshDatabasePerTest(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		urls = map[string]string{} // database name -> url
	)
	t.Run("group", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				url := testenv.PostgresURL(t)
				conn, err := pgx.Connect(t.Context(), url)
				testenv.NoError(t, err)
				defer conn.Close(t.Context())
				var db string
				var tables int
				err = conn.QueryRow(t.Context(), `SELECT current_database(),
					(SELECT count(*) FROM pg_tables WHERE schemaname = 'public')`).Scan(&db, &tables)
				testenv.NoError(t, err)
				if tables != 0 {
					t.Fatalf("fresh database %s has %d tables, want 0", db, tables)
				}
				_, err = conn.Exec(t.Context(), "CREATE TABLE mine (v int); INSERT INTO mine VALUES (1)")
				testenv.NoError(t, err)
				mu.Lock()
				urls[db] = url
				mu.Unlock()
			})
		}
	})
	if len(urls) != 2 {
		t.Fatalf("got %d distinct databases %v, want 2", len(urls), urls)
	}
	// The subtests' cleanups have run: their databases are gone.
	for db, url := range urls {
		conn, err := pgx.Connect(t.Context(), url)
		if err == nil {
			conn.Close(t.Context())
			t.Fatalf("database %s still exists after its test", db)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
			t.Fatalf("connect to dropped %s: got %v, want SQLSTATE 3D000", db, err)
		}
	}
}

func TestNATSURLJetStream(t *testing.T) {
	t.Parallel()
	nc, err := nats.Connect(testenv.NATSURL(t))
	testenv.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	stream := testenv.Name(t)
	s, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: stream, Subjects: []string{stream + ".>"}, Storage: jetstream.FileStorage,
	})
	testenv.NoError(t, err)
	_, err = js.Publish(t.Context(), stream+".x", []byte("hello"))
	testenv.NoError(t, err)
	msg, err := s.GetMsg(t.Context(), 1)
	testenv.NoError(t, err)
	if got := string(msg.Data); got != "hello" {
		t.Fatalf("read back %q, want %q", got, "hello")
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func TestName(t *testing.T) {
	t.Parallel()
	for _, tc := range []string{
		"plain",
		"Upper_And spaces/and#symbols",
		strings.Repeat("long", 40),
		"___",
	} {
		t.Run(tc, func(t *testing.T) {
			a, b := testenv.Name(t), testenv.Name(t)
			if !nameRE.MatchString(a) || !nameRE.MatchString(b) {
				t.Fatalf("names %q, %q do not match %v", a, b, nameRE)
			}
			if a == b {
				t.Fatalf("two calls gave the same name %q", a)
			}
		})
	}
}

// recordingTB is a testing.TB whose Fatalf records instead of stopping.
type recordingTB struct {
	testing.TB
	fatal string
}

func (r *recordingTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func TestEventually(t *testing.T) {
	t.Parallel()
	calls := 0
	testenv.Eventually(t, 5*time.Second, func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}

	rec := &recordingTB{TB: t}
	testenv.Eventually(rec, 20*time.Millisecond, func() error { return errors.New("never") })
	if !strings.Contains(rec.fatal, "never") {
		t.Fatalf("fatal message %q, want it to carry the last error", rec.fatal)
	}
}

func TestNoError(t *testing.T) {
	t.Parallel()
	rec := &recordingTB{TB: t}
	testenv.NoError(rec, nil)
	if rec.fatal != "" {
		t.Fatalf("nil error failed the test: %q", rec.fatal)
	}
	testenv.NoError(rec, errors.New("boom"))
	if !strings.Contains(rec.fatal, "boom") {
		t.Fatalf("fatal message %q, want it to carry the error", rec.fatal)
	}
}

// TestMigratedPostgresURLIsAPrivateCopy: each test gets its own copy of the
// migrated template: every component's migrations applied, and what one
// test writes is not seen by another.
func TestMigratedPostgresURLIsAPrivateCopy(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"a", "b", "c"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			conn, err := pgx.Connect(t.Context(), testenv.MigratedPostgresURL(t))
			testenv.NoError(t, err)
			defer conn.Close(t.Context())
			rows, err := conn.Query(t.Context(), `SELECT DISTINCT component FROM schema_migrations ORDER BY 1`)
			testenv.NoError(t, err)
			components, err := pgx.CollectRows(rows, pgx.RowTo[string])
			testenv.NoError(t, err)
			if want := []string{"apikeys", "eventstore", "projections", "webhooks"}; !slices.Equal(components, want) {
				t.Fatalf("migrated components %v, want %v", components, want)
			}
			// In a shared database the second test's CREATE would fail.
			_, err = conn.Exec(t.Context(), `CREATE TABLE mine (v int)`)
			testenv.NoError(t, err)
		})
	}
}
