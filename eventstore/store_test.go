package eventstore_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newStore(t *testing.T) (*eventstore.Store, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(ctx, pool))
	return eventstore.New(pool), pool
}

// records builds n sealed records following (head, prev).
func records(ledger string, head uint64, prev eventstore.Hash, n int) []eventstore.Record {
	at := time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)
	recs := make([]eventstore.Record, n)
	for i := range recs {
		recs[i] = eventstore.Record{Ledger: ledger, Position: head + uint64(i) + 1, Type: "AssetDefined", SchemaVersion: 1,
			RecordedAt: at, CommandID: fmt.Sprintf("C%d", head+uint64(i)+1),
			Payload: []byte(fmt.Sprintf(`{"code":"C%d","scale":2}`, head+uint64(i)+1))}
		recs[i].Seal(prev)
		prev = recs[i].Hash
	}
	return recs
}

// readAll reads the whole log of ledger.
func readAll(t *testing.T, s *eventstore.Store, ledger string) []eventstore.Record {
	t.Helper()
	var all []eventstore.Record
	for {
		recs, err := s.Read(context.Background(), ledger, uint64(len(all))+1, eventstore.ReadMax)
		testenv.NoError(t, err)
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
	}
}

// checkChain asserts positions 1..n, each hash verifying and linking.
func checkChain(t *testing.T, recs []eventstore.Record) {
	t.Helper()
	var prev eventstore.Hash
	for i, r := range recs {
		if r.Position != uint64(i)+1 {
			t.Fatalf("record %d has position %d: not gapless", i, r.Position)
		}
		if r.PrevHash != prev {
			t.Fatalf("position %d: prev_hash %x, want %x", r.Position, r.PrevHash[:4], prev[:4])
		}
		if !r.VerifyHash() {
			t.Fatalf("position %d: hash does not verify", r.Position)
		}
		prev = r.Hash
	}
}

func TestAppendConcurrentCallersStayGapless(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	ledger := testenv.Name(t)
	const (
		callers = 8
		appends = 15
	)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		fenced int
	)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < appends; {
				head, hash, err := s.Head(ctx, ledger)
				if err != nil {
					t.Error(err)
					return
				}
				err = s.Append(ctx, ledger, head, hash, records(ledger, head, hash, 1+done%3))
				switch {
				case errors.Is(err, eventstore.ErrFenced):
					mu.Lock()
					fenced++
					mu.Unlock()
				case err != nil:
					t.Error(err)
					return
				default:
					done++
				}
			}
		}()
	}
	wg.Wait()
	all := readAll(t, s, ledger)
	want := 0
	for d := 0; d < appends; d++ {
		want += callers * (1 + d%3)
	}
	if len(all) != want {
		t.Fatalf("log holds %d records, want %d", len(all), want)
	}
	checkChain(t, all)
	head, hash, err := s.Head(ctx, ledger)
	testenv.NoError(t, err)
	if head != uint64(want) || hash != all[len(all)-1].Hash {
		t.Errorf("head = %d %x, want %d %x", head, hash[:4], want, all[len(all)-1].Hash[:4])
	}
	t.Logf("%d appends fenced off and retried", fenced)
}

func TestAppendStaleWriterIsFenced(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	ledger := testenv.Name(t)
	first := records(ledger, 0, eventstore.Hash{}, 3)
	testenv.NoError(t, s.Append(ctx, ledger, 0, eventstore.Hash{}, first))

	// Two writers believe the head is 3; the second to append is refused.
	a := records(ledger, 3, first[2].Hash, 2)
	b := records(ledger, 3, first[2].Hash, 5)
	testenv.NoError(t, s.Append(ctx, ledger, 3, first[2].Hash, a))
	err := s.Append(ctx, ledger, 3, first[2].Hash, b)
	if !errors.Is(err, eventstore.ErrFenced) {
		t.Fatalf("stale append: err = %v, want ErrFenced", err)
	}
	// A writer that believes the ledger is new is refused too.
	if err := s.Append(ctx, ledger, 0, eventstore.Hash{}, records(ledger, 0, eventstore.Hash{}, 1)); !errors.Is(err, eventstore.ErrFenced) {
		t.Fatalf("append at 0 on a ledger at 5: err = %v, want ErrFenced", err)
	}
	all := readAll(t, s, ledger)
	if len(all) != 5 {
		t.Fatalf("log holds %d records, want 5: the fenced batch must leave nothing", len(all))
	}
	checkChain(t, all)
}

func TestAppendRefusesBadBatches(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	ledger := testenv.Name(t)
	good := records(ledger, 0, eventstore.Hash{}, 3)
	gap := append([]eventstore.Record{}, good...)
	gap[1].Position = 7
	unchained := records(ledger, 0, eventstore.Hash{}, 3)
	unchained[2].PrevHash = eventstore.Hash{1}
	other := records("other", 0, eventstore.Hash{}, 1)
	for name, recs := range map[string][]eventstore.Record{
		"empty": nil, "gap": gap, "unchained": unchained, "other ledger": other,
		"too many": make([]eventstore.Record, eventstore.AppendMax+1),
	} {
		if err := s.Append(ctx, ledger, 0, eventstore.Hash{}, recs); !errors.Is(err, eventstore.ErrBadBatch) {
			t.Errorf("%s: err = %v, want ErrBadBatch", name, err)
		}
	}
	if head, _, err := s.Head(ctx, ledger); err != nil || head != 0 {
		t.Errorf("head = %d, %v after refused batches, want 0", head, err)
	}
}

func TestEventsAreAppendOnly(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	ledger := testenv.Name(t)
	testenv.NoError(t, s.Append(ctx, ledger, 0, eventstore.Hash{}, records(ledger, 0, eventstore.Hash{}, 2)))
	for _, sql := range []string{
		`UPDATE events SET payload = '{"code":"X","scale":0}' WHERE ledger = $1`,
		`UPDATE events SET position = position + 100 WHERE ledger = $1`,
		`DELETE FROM events WHERE ledger = $1`,
		`TRUNCATE events`,
	} {
		var err error
		if sql == `TRUNCATE events` {
			_, err = pool.Exec(ctx, sql)
		} else {
			_, err = pool.Exec(ctx, sql, ledger)
		}
		if err == nil {
			t.Errorf("%s: succeeded, want refused", sql)
		}
	}
	all := readAll(t, s, ledger)
	if len(all) != 2 {
		t.Fatalf("log holds %d records, want 2", len(all))
	}
	checkChain(t, all)
}

func TestReadRoundTripsEveryField(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	ledger := testenv.Name(t)
	want := records(ledger, 0, eventstore.Hash{}, 4)
	testenv.NoError(t, s.Append(ctx, ledger, 0, eventstore.Hash{}, want))
	got, err := s.Read(ctx, ledger, 2, 2)
	testenv.NoError(t, err)
	if len(got) != 2 {
		t.Fatalf("Read(2, limit 2) returned %d records", len(got))
	}
	for i, r := range got {
		w := want[i+1]
		if r.Position != w.Position || r.Type != w.Type || r.CommandID != w.CommandID || !r.RecordedAt.Equal(w.RecordedAt) ||
			string(r.Payload) != string(w.Payload) || r.Hash != w.Hash || r.PrevHash != w.PrevHash || r.SchemaVersion != w.SchemaVersion {
			t.Errorf("record %d read back as %+v, want %+v", w.Position, r, w)
		}
		if !r.VerifyHash() {
			t.Errorf("record %d: hash does not verify after the round trip", r.Position)
		}
	}
	names, err := s.Ledgers(ctx)
	testenv.NoError(t, err)
	if len(names) != 1 || names[0] != ledger {
		t.Errorf("Ledgers() = %v, want [%s]", names, ledger)
	}
}

// TestReadAcrossItsGrowth: Read answers the records appended, in order, for
// pages shorter than its first room, across its growths (16, 64, 256) and
// past the log's end, from several positions.
func TestReadAcrossItsGrowth(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	ledger := testenv.Name(t)
	const n = 300
	appended := records(ledger, 0, eventstore.Hash{}, n)
	testenv.NoError(t, s.Append(ctx, ledger, 0, eventstore.Hash{}, appended))
	for _, from := range []uint64{1, 2, 17, n, n + 1} {
		for _, limit := range []int{1, 16, 17, 64, 65, 257, n, n + 5, eventstore.ReadMax + 1} {
			got, err := s.Read(ctx, ledger, from, limit)
			testenv.NoError(t, err)
			want := appended[min(from-1, n):min(from-1+uint64(limit), n)]
			if len(got) != len(want) {
				t.Fatalf("Read(%d, limit %d): %d records, want %d", from, limit, len(got), len(want))
			}
			for i := range got {
				if got[i].Position != want[i].Position || got[i].Hash != want[i].Hash || string(got[i].Payload) != string(want[i].Payload) {
					t.Fatalf("Read(%d, limit %d): record %d is %d, want %d", from, limit, i, got[i].Position, want[i].Position)
				}
			}
		}
	}
}

// TestHashPinned pins the hash of one record: the canonical bytes are the
// auditors' contract, and any change to them must be deliberate.
func TestHashPinned(t *testing.T) {
	r := eventstore.Record{Ledger: "demo", Position: 1, Type: "AssetDefined", SchemaVersion: 1,
		RecordedAt: time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC), CommandID: "USD",
		Payload: []byte(`{"code":"USD","scale":2}`)}
	wantCanonical := `{"ledger":"demo","position":1,"type":"AssetDefined","schema_version":1,` +
		`"recorded_at":"2026-11-22T10:00:00.123456Z","command_id":"USD","payload":{"code":"USD","scale":2}}`
	if got := string(r.Canonical()); got != wantCanonical {
		t.Fatalf("canonical bytes:\n got %s\nwant %s", got, wantCanonical)
	}
	r.Seal(eventstore.Hash{})
	// Computed independently: sha256(32 zero bytes ‖ wantCanonical).
	const wantHash = "1e0a2bdcc82ad4ed1b8c7aa586520b7e126dabbfe6db8937ad73dd316bcb9c52"
	if got := hex.EncodeToString(r.Hash[:]); got != wantHash {
		t.Errorf("hash = %s, want %s", got, wantHash)
	}
	// The JSON form carries the same record.
	back, err := eventstore.ParseRecordJSON(r.AppendJSON(nil))
	testenv.NoError(t, err)
	if back.Hash != r.Hash || !back.VerifyHash() {
		t.Errorf("JSON round trip: hash %x verifies=%v", back.Hash[:4], back.VerifyHash())
	}
}

// TestAppRoleCannotEditEvents: as the application role, the database refuses
// to edit, delete or truncate events (grants, on top of the triggers), to
// insert one or to move a head directly, and lets the role append (through
// append_events) and read.
func TestAppRoleCannotEditEvents(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	var exists bool
	testenv.NoError(t, pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')`).Scan(&exists))
	if !exists {
		t.Skip("the test user may not create roles: no ledger_app role to check")
	}
	ledger := testenv.Name(t)
	recs := records(ledger, 0, eventstore.Hash{}, 3)
	testenv.NoError(t, s.Append(ctx, ledger, 0, eventstore.Hash{}, recs[:2]))
	conn, err := pool.Acquire(ctx)
	testenv.NoError(t, err)
	defer conn.Release()
	// Disable the triggers for this session so that only the grants stand in
	// the way: what is refused below is refused by the privileges alone.
	_, err = conn.Exec(ctx, `SET session_replication_role = replica`)
	testenv.NoError(t, err)
	_, err = conn.Exec(ctx, `SET ROLE ledger_app`)
	testenv.NoError(t, err)
	defer conn.Exec(context.Background(), `RESET ROLE; RESET session_replication_role`) //nolint:errcheck // the connection is released after
	for _, sql := range []string{
		`UPDATE events SET command_id = 'x' WHERE ledger = '` + ledger + `'`,
		`DELETE FROM events WHERE ledger = '` + ledger + `'`,
		`TRUNCATE events`,
	} {
		_, err := conn.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as ledger_app: %v, want insufficient_privilege (42501)", sql, err)
		}
	}
	r := recs[2]
	for _, c := range []struct {
		what string
		sql  string
		args []any
	}{
		{"INSERT INTO events", `INSERT INTO events (ledger, position, type, schema_version, recorded_at, command_id, payload, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, []any{ledger, int64(r.Position), r.Type, int16(r.SchemaVersion),
			r.RecordedAt, r.CommandID, r.Payload, r.PrevHash[:], r.Hash[:]}},
		{"UPDATE ledger_heads", `UPDATE ledger_heads SET position = 3 WHERE ledger = $1`, []any{ledger}},
	} {
		_, err = conn.Exec(ctx, c.sql, c.args...)
		if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as ledger_app: %v, want insufficient_privilege (42501)", c.what, err)
		}
	}
	// What ledgerd needs is granted: append an event, through the function
	// that moves the head with it.
	var moved bool
	if err := conn.QueryRow(ctx, `SELECT append_events($1, 2, $2, $3, $4, $5, $6, $7, $8)`, ledger, []string{r.Type},
		[]int16{int16(r.SchemaVersion)}, []time.Time{r.RecordedAt}, []string{r.CommandID}, [][]byte{r.Payload},
		[][]byte{r.PrevHash[:]}, [][]byte{r.Hash[:]}).Scan(&moved); err != nil || !moved {
		t.Errorf("append_events as ledger_app: moved %v, %v; want moved", moved, err)
	}
	var n int
	testenv.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM events WHERE ledger = $1`, ledger).Scan(&n))
	if n != 3 {
		t.Errorf("ledger_app reads %d events, want 3", n)
	}
}

// TestReadRawIsScan: Read takes the rows' raw values (the formats it
// expects are those PostgreSQL sends it), and reads every field as pgx's
// Scan reads it: times before PostgreSQL's epoch and after, types that
// change from record to record, payloads of every size (beyond the slab
// they are copied into, and across its end), across a whole page.
func TestReadRawIsScan(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	ledger := testenv.Name(t)
	const n = 3000
	recs := make([]eventstore.Record, n)
	prev := eventstore.Hash{}
	for i := range recs {
		at := time.Date(1970+i%80, time.Month(1+i%12), 1+i%28, i%24, 0, 0, (i*7919)%1_000_000*1000, time.UTC)
		payload := fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", (i*37)%700))
		if i%1000 == 999 {
			payload = fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("y", 100_000))
		}
		recs[i] = eventstore.Record{Ledger: ledger, Position: uint64(i + 1), Type: []string{"TransferCommitted", "AccountOpened",
			"TransferCommitted", "PendingPosted"}[i%4/(1+i%3)], SchemaVersion: 1 + i%3, RecordedAt: at,
			CommandID: fmt.Sprintf("c-%d", i%5), Payload: []byte(payload)}
		recs[i].Seal(prev)
		prev = recs[i].Hash
	}
	testenv.NoError(t, s.Append(ctx, ledger, 0, eventstore.Hash{}, recs))
	for _, from := range []uint64{1, 1001, 2500} {
		viaRaw, viaScan, raw, err := eventstore.ReadBothWays(ctx, s, ledger, from, eventstore.ReadMax)
		testenv.NoError(t, err)
		if !raw {
			t.Fatal("Read did not take the rows' raw values: it scans every row")
		}
		if len(viaRaw) != n-int(from)+1 || len(viaScan) != len(viaRaw) {
			t.Fatalf("from %d: %d records raw, %d scanned, want %d", from, len(viaRaw), len(viaScan), n-int(from)+1)
		}
		for i := range viaRaw {
			r, w, a := viaRaw[i], viaScan[i], recs[int(from)-1+i]
			if r.Ledger != w.Ledger || r.Position != w.Position || r.Type != w.Type || r.SchemaVersion != w.SchemaVersion ||
				r.RecordedAt != w.RecordedAt || r.CommandID != w.CommandID || string(r.Payload) != string(w.Payload) ||
				r.PrevHash != w.PrevHash || r.Hash != w.Hash || !r.RecordedAt.Equal(a.RecordedAt) || r.Type != a.Type {
				t.Fatalf("record %d read raw as %+v, scanned as %+v, appended as %+v", r.Position, r, w, a)
			}
			if !r.VerifyHash() {
				t.Fatalf("record %d read raw: its hash does not verify", r.Position)
			}
			if cap(r.Payload) != len(r.Payload) {
				// An append to one payload would write over the next's.
				t.Fatalf("record %d read raw: payload of %d bytes with room for %d", r.Position, len(r.Payload), cap(r.Payload))
			}
		}
	}
}
