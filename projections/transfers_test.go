package projections_test

import (
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// xferClock is the writer's clock in the transfers tests: moved by hand, so
// that holds expire when the test says.
type xferClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *xferClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *xferClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newXferEnv is newEnv with a writer on clock.
func newXferEnv(t *testing.T, clock *xferClock) *env {
	t.Helper()
	pool := xferPool(t)
	e := &env{t: t, pool: pool, store: eventstore.New(pool), ledger: testenv.Name(t)}
	relay := natsbus.NewRelay(e.ledger, jetStream(t), e.store, natsbus.StreamOptions{}, testLogger(t))
	runUntilCleanup(t, "relay", relay.Run)
	e.writer = commands.NewWriter(commands.Options{Ledger: e.ledger, Store: e.store, Logger: testLogger(t), Clock: clock.Now,
		OnCommit: func(_ string, recs []eventstore.Record) { relay.Offer(recs) }})
	runUntilCleanup(t, "writer", e.writer.Run)
	return e
}

// Shape of the transfers workload.
const (
	xferTransfers = 120
	xferHolds     = 120
	xferChains    = 12
	// xferTimeout is the timeout of every third hold.
	xferTimeout = 60
)

// xferLeg is a posting as the workload made it, in minor units.
type xferLeg struct {
	debit, credit, asset string
	scale                uint8
	units                int64
}

// xferWorkload drives a ledger through transfers, holds posted in full and
// in part, voided, left open and expired, and reversals in part and in full,
// some of them within one request (one batch) with what they resolve.
type xferWorkload struct {
	e     *env
	clock *xferClock
	rng   *rand.Rand
	legs  map[string][]xferLeg // transfers and holds by id
}

// runXferWorkload runs the workload and returns the ledger's head once every
// hold due has expired.
func (e *env) runXferWorkload(clock *xferClock, seed uint64) uint64 {
	t := e.t
	t.Helper()
	w := &xferWorkload{e: e, clock: clock, rng: rand.New(rand.NewPCG(seed, seed)), legs: map[string][]xferLeg{}}
	var setup []domain.Command
	for _, a := range workloadAssets {
		setup = append(setup, &domain.DefineAsset{Code: a.Code, Scale: a.Scale})
		for i := range accountsPerAsset {
			setup = append(setup, &domain.OpenAccount{ID: accountID(a.Code, i), Asset: a.Code, Normal: domain.SideDebit})
		}
	}
	e.submit(setup)
	// A closed period before every effective time below: the projector
	// accepts the event and shows nothing of it.
	e.submit([]domain.Command{&domain.ClosePeriod{End: clock.Now().Add(-3 * time.Hour)}})

	// Transfers and holds, from concurrent submitters: many per batch.
	var first []domain.Command
	for i := range xferTransfers {
		c := &domain.CreateTransfer{ID: fmt.Sprintf("t-%d", i), Postings: w.postings(fmt.Sprintf("t-%d", i)),
			Reference: fmt.Sprintf("ref-%d", i%5)}
		if i%3 == 0 {
			c.Metadata = map[string]string{"order": fmt.Sprint(i), "kind": "sale"}
		}
		if i%4 == 0 {
			c.EffectiveAt = clock.Now().Add(-time.Duration(i) * time.Minute)
		}
		first = append(first, c)
	}
	for i := range xferHolds {
		id := fmt.Sprintf("h-%d", i)
		c := &domain.CreateTransfer{ID: id, Postings: w.postings(id), Pending: true, Reference: "hold"}
		if i%3 == 0 {
			c.TimeoutSeconds = xferTimeout
		}
		if i%2 == 0 {
			c.Metadata = map[string]string{"hold": fmt.Sprint(i)}
		}
		first = append(first, c)
	}
	w.submitConcurrently(chunked(first))

	// Holds resolved in a later batch, by fate: i%6 == 3 (with a timeout)
	// expires below, i%6 == 5 stays open.
	var resolve []domain.Command
	for i := range xferHolds {
		id := fmt.Sprintf("h-%d", i)
		switch i % 6 {
		case 0:
			resolve = append(resolve, &domain.PostPending{ID: id + ":post", PendingID: id, Reference: "post",
				Metadata: map[string]string{"posted": "full"}})
		case 1, 4:
			resolve = append(resolve, &domain.PostPending{ID: id + ":post", PendingID: id,
				Amounts: w.part(w.legs[id], nil, false)})
		case 2:
			resolve = append(resolve, &domain.VoidPending{ID: id + ":void", PendingID: id, Reference: "void"})
		}
	}
	requests := chunked(resolve)
	// Chains, each in one request: created and resolved or reversed in one
	// batch.
	for j := range xferChains {
		c := fmt.Sprintf("c-%d", j)
		d := fmt.Sprintf("d-%d", j)
		v := fmt.Sprintf("v-%d", j)
		hold := &domain.CreateTransfer{ID: c, Postings: w.postings(c), Pending: true}
		post := &domain.PostPending{ID: c + ":post", PendingID: c, Amounts: w.part(w.legs[c], nil, false)}
		posted := xferPosted(w.legs[c], post.Amounts)
		rev1 := &domain.ReverseTransfer{ID: c + ":rev1", TransferID: c + ":post", Amounts: w.part(posted, nil, true)}
		rev2 := &domain.ReverseTransfer{ID: c + ":rev2", TransferID: c + ":post"} // the rest
		tr := &domain.CreateTransfer{ID: d, Postings: w.postings(d)}
		rev := &domain.ReverseTransfer{ID: d + ":rev", TransferID: d, Metadata: map[string]string{"why": "refund"}}
		held := &domain.CreateTransfer{ID: v, Postings: w.postings(v), Pending: true, TimeoutSeconds: xferTimeout}
		void := &domain.VoidPending{ID: v + ":void", PendingID: v}
		cmds := []domain.Command{hold, post, tr, rev, held, void}
		if !xferAllZero(posted) {
			cmds = append(cmds, rev1, rev2)
		}
		requests = append(requests, cmds)
	}
	w.submitConcurrently(requests)

	// Reversals of earlier batches' transfers and posts: in full, in part,
	// and in parts that add up to the whole.
	reversed := map[string][]int64{}
	var reversals, rest []domain.Command
	for i := range xferTransfers {
		id := fmt.Sprintf("t-%d", i)
		switch i % 4 {
		case 0:
			reversals = append(reversals, &domain.ReverseTransfer{ID: id + ":rev", TransferID: id})
		case 1, 2:
			amounts := w.part(w.legs[id], nil, true)
			reversed[id] = xferUnits(amounts)
			reversals = append(reversals, &domain.ReverseTransfer{ID: id + ":rev1", TransferID: id, Amounts: amounts,
				EffectiveAt: clock.Now().Add(-time.Hour), Reference: "partial"})
		}
	}
	for i := 4; i < xferHolds; i += 6 {
		id := fmt.Sprintf("h-%d", i)
		var post []string
		for _, c := range resolve {
			if p, ok := c.(*domain.PostPending); ok && p.PendingID == id {
				post = p.Amounts
			}
		}
		if posted := xferPosted(w.legs[id], post); !xferAllZero(posted) {
			reversals = append(reversals, &domain.ReverseTransfer{ID: id + ":post:rev", TransferID: id + ":post",
				Amounts: w.part(posted, nil, true)})
		}
	}
	w.submitConcurrently(chunked(reversals))
	for i := 2; i < xferTransfers; i += 4 {
		id := fmt.Sprintf("t-%d", i)
		left := make([]string, len(w.legs[id]))
		for k, l := range w.legs[id] {
			left[k] = domain.UnitsFromInt64(l.units - reversed[id][k]).Format(l.scale)
		}
		rest = append(rest, &domain.ReverseTransfer{ID: id + ":rev2", TransferID: id, Amounts: left})
	}
	w.submitConcurrently(chunked(rest))

	// Every hold with a timeout still open expires once the clock passes it.
	expiring := 0
	for i := 3; i < xferHolds; i += 6 {
		expiring++
	}
	clock.Advance(xferTimeout * time.Second)
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "tick", Postings: w.postings("tick")}})
	testenv.Eventually(t, waitMax, func() error {
		var n int
		if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM events WHERE ledger = $1 AND type = $2`,
			e.ledger, domain.TypePendingExpired).Scan(&n); err != nil {
			return err
		}
		if n != expiring {
			return fmt.Errorf("%d holds expired, want %d", n, expiring)
		}
		return nil
	})
	head, _, err := e.store.Head(t.Context(), e.ledger)
	testenv.NoError(t, err)
	return head
}

// postings makes 1..postingsMax random postings for id and remembers them.
func (w *xferWorkload) postings(id string) []domain.PostingInput {
	var out []domain.PostingInput
	for range 1 + w.rng.IntN(postingsMax) {
		a := workloadAssets[w.rng.IntN(len(workloadAssets))]
		from := w.rng.IntN(accountsPerAsset)
		to := (from + 1 + w.rng.IntN(accountsPerAsset-1)) % accountsPerAsset
		l := xferLeg{debit: accountID(a.Code, from), credit: accountID(a.Code, to), asset: a.Code, scale: uint8(a.Scale),
			units: 1 + w.rng.Int64N(1_000_000)}
		w.legs[id] = append(w.legs[id], l)
		out = append(out, domain.PostingInput{Debit: l.debit, Credit: l.credit, Asset: l.asset,
			Amount: domain.UnitsFromInt64(l.units).Format(l.scale)})
	}
	return out
}

// part picks per leg an amount in 0..what is left (legs less done), not
// all zero when nonZero.
func (w *xferWorkload) part(legs []xferLeg, done []int64, nonZero bool) []string {
	out := make([]string, len(legs))
	any := false
	for i, l := range legs {
		left := l.units
		if done != nil {
			left -= done[i]
		}
		u := w.rng.Int64N(left + 1)
		if nonZero && !any && i == len(legs)-1 && u == 0 {
			u = left
		}
		any = any || u > 0
		out[i] = domain.UnitsFromInt64(u).Format(l.scale)
	}
	return out
}

// postedLegs are legs with the amounts posted (all when amounts is nil).
func xferPosted(legs []xferLeg, amounts []string) []xferLeg {
	out := slices.Clone(legs)
	if amounts == nil {
		return out
	}
	for i, u := range xferUnits(amounts) {
		out[i].units = u
	}
	return out
}

func xferAllZero(legs []xferLeg) bool {
	for _, l := range legs {
		if l.units != 0 {
			return false
		}
	}
	return true
}

// xferUnits parses amounts back to minor units.
func xferUnits(amounts []string) []int64 {
	out := make([]int64, len(amounts))
	for i, a := range amounts {
		n, _ := xferDecimal(a)
		out[i] = n.Int64()
	}
	return out
}

// chunked cuts independent commands into requests.
func chunked(cmds []domain.Command) [][]domain.Command {
	return slices.Collect(slices.Chunk(cmds, commandsPerSubmit))
}

// submitConcurrently submits requests from several goroutines, in no
// particular order: commands that depend on each other go in one request.
func (w *xferWorkload) submitConcurrently(requests [][]domain.Command) {
	chunks := make(chan []domain.Command, len(requests))
	for _, r := range requests {
		chunks <- r
	}
	close(chunks)
	var wg sync.WaitGroup
	for range submitters {
		wg.Go(func() {
			for c := range chunks {
				w.e.submit(c)
			}
		})
	}
	wg.Wait()
	if w.e.t.Failed() {
		w.e.t.FailNow()
	}
}

// xferRow is a transfers row as the tests compare it.
type xferRow struct {
	Kind, Status              string
	Position, UpdatedPosition uint64
	Postings                  []xferPosting
	Reference                 string
	Metadata                  map[string]string
	EffectiveAt, RecordedAt   time.Time
	PendingID, ResolvedBy     string
	Reverses                  string
	ReversedBy                []string
	ExpiresAt                 time.Time
}

type xferPosting struct {
	Debit     string `json:"debit"`
	Credit    string `json:"credit"`
	Asset     string `json:"asset"`
	Amount    string `json:"amount"`
	Remaining string `json:"remaining"`
	Reversed  string `json:"reversed"`
}

// xferModel is what the transfers read model must hold, folded from the log
// independently of the projector: amounts as big integers of minor units.
type xferModel struct {
	rows     map[string]*xferRow
	accounts map[string][]string // "account@position" -> ids, as an account lists them
}

// xferDecimal is an amount string as minor units and scale.
func xferDecimal(s string) (*big.Int, int) {
	whole, frac, _ := strings.Cut(s, ".")
	n, ok := new(big.Int).SetString(whole+frac, 10)
	if !ok {
		panic("not a decimal: " + s)
	}
	return n, len(frac)
}

func xferFormat(n *big.Int, scale int) string {
	s := n.String()
	if scale == 0 {
		return s
	}
	if len(s) <= scale {
		s = strings.Repeat("0", scale-len(s)+1) + s
	}
	return s[:len(s)-scale] + "." + s[len(s)-scale:]
}

func xferZero(amount string) string {
	_, scale := xferDecimal(amount)
	return xferFormat(new(big.Int), scale)
}

// replayTransfers folds the log up to upTo into the model.
func (e *env) replayTransfers(upTo uint64) xferModel {
	t := e.t
	t.Helper()
	m := xferModel{rows: map[string]*xferRow{}, accounts: map[string][]string{}}
	for at := uint64(0); at < upTo; {
		recs, err := e.store.Read(t.Context(), e.ledger, at+1, int(upTo-at))
		testenv.NoError(t, err)
		if len(recs) == 0 {
			t.Fatalf("log ends at %d, want %d", at, upTo)
		}
		for _, rec := range recs {
			ev, err := domain.UnmarshalEvent(rec.Type, rec.SchemaVersion, rec.Payload)
			testenv.NoError(t, err)
			m.apply(t, rec, ev)
			at = rec.Position
		}
	}
	return m
}

func (m xferModel) add(rec eventstore.Record, id, kind string, ps []domain.Posting, withReversed bool) *xferRow {
	r := &xferRow{Kind: kind, Status: "posted", Position: rec.Position, UpdatedPosition: rec.Position,
		RecordedAt: rec.RecordedAt}
	seen := map[string]bool{}
	for _, p := range ps {
		xp := xferPosting{Debit: p.Debit, Credit: p.Credit, Asset: p.Asset, Amount: p.Amount.String()}
		if withReversed {
			xp.Reversed = xferZero(xp.Amount)
		}
		r.Postings = append(r.Postings, xp)
		for _, a := range []string{p.Debit, p.Credit} {
			if !seen[a] {
				seen[a] = true
				k := fmt.Sprintf("%s@%d", a, rec.Position)
				m.accounts[k] = append(m.accounts[k], id)
			}
		}
	}
	m.rows[id] = r
	return r
}

func (m xferModel) apply(t *testing.T, rec eventstore.Record, ev domain.Event) {
	t.Helper()
	resolve := func(hold, by, status string) {
		h := m.rows[hold]
		if h == nil || h.Status != "pending" {
			t.Fatalf("position %d resolves %s, which is %+v", rec.Position, hold, h)
		}
		h.Status, h.ResolvedBy, h.UpdatedPosition = status, by, rec.Position
		for i := range h.Postings {
			h.Postings[i].Remaining = xferZero(h.Postings[i].Amount)
		}
	}
	switch ev := ev.(type) {
	case domain.TransferCommitted:
		r := m.add(rec, ev.ID, "transfer", ev.Postings, true)
		r.Reference, r.Metadata, r.EffectiveAt = ev.Reference, ev.Metadata, ev.EffectiveAt
	case domain.TransferPending:
		r := m.add(rec, ev.ID, "pending", ev.Postings, false)
		r.Status, r.Reference, r.Metadata, r.EffectiveAt = "pending", ev.Reference, ev.Metadata, ev.EffectiveAt
		for i := range r.Postings {
			r.Postings[i].Remaining = r.Postings[i].Amount
		}
		if ev.ExpiresAt != nil {
			r.ExpiresAt = *ev.ExpiresAt
		}
	case domain.PendingPosted:
		resolve(ev.PendingID, ev.ID, "pending_posted")
		ps := make([]domain.Posting, len(ev.Postings))
		for i, hp := range ev.Postings {
			ps[i] = domain.Posting{Debit: hp.Debit, Credit: hp.Credit, Asset: hp.Asset, Amount: hp.Amount}
		}
		r := m.add(rec, ev.ID, "post", ps, true)
		r.PendingID, r.Reference, r.Metadata, r.EffectiveAt = ev.PendingID, ev.Reference, ev.Metadata, ev.EffectiveAt
	case domain.PendingVoided:
		resolve(ev.PendingID, ev.ID, "voided")
		r := m.add(rec, ev.ID, "void", ev.Postings, false)
		r.PendingID, r.Reference, r.EffectiveAt = ev.PendingID, ev.Reference, rec.RecordedAt
	case domain.PendingExpired:
		resolve(ev.PendingID, "", "expired")
	case domain.TransferReversed:
		o := m.rows[ev.TransferID]
		if o == nil || o.Position != ev.TransferPosition {
			t.Fatalf("position %d reverses %s at %d, which is %+v", rec.Position, ev.TransferID, ev.TransferPosition, o)
		}
		full := true
		for i := range o.Postings {
			p := &o.Postings[i]
			done, scale := xferDecimal(p.Reversed)
			more, _ := xferDecimal(ev.Postings[i].Amount.String())
			amount, _ := xferDecimal(p.Amount)
			done.Add(done, more)
			if done.Cmp(amount) > 0 {
				t.Fatalf("position %d reverses more than %s's posting %d", rec.Position, ev.TransferID, i)
			}
			full = full && done.Cmp(amount) == 0
			p.Reversed = xferFormat(done, scale)
		}
		o.Status = "partially_reversed"
		if full {
			o.Status = "reversed"
		}
		o.ReversedBy = append(o.ReversedBy, ev.ID)
		o.UpdatedPosition = rec.Position
		r := m.add(rec, ev.ID, "reversal", ev.Postings, false)
		r.Reverses, r.Reference, r.Metadata, r.EffectiveAt = ev.TransferID, ev.Reference, ev.Metadata, ev.EffectiveAt
	}
}

// readTransfers reads the ledger's transfers table.
func (e *env) readTransfers() xferModel {
	t := e.t
	t.Helper()
	got := xferModel{rows: map[string]*xferRow{}}
	rows, err := e.pool.Query(t.Context(), `SELECT id, kind, status, position, updated_position, postings::text,
			COALESCE(reference, ''), metadata::text, effective_at, recorded_at, COALESCE(pending_id, ''),
			COALESCE(resolved_by, ''), COALESCE(reverses, ''), reversed_by, expires_at
		FROM transfer_rows WHERE ledger = $1`, e.ledger)
	testenv.NoError(t, err)
	for rows.Next() {
		var (
			r                  xferRow
			id                 string
			pos, upd           int64
			postings, metadata string
			expires            *time.Time
		)
		testenv.NoError(t, rows.Scan(&id, &r.Kind, &r.Status, &pos, &upd, &postings, &r.Reference, &metadata,
			&r.EffectiveAt, &r.RecordedAt, &r.PendingID, &r.ResolvedBy, &r.Reverses, &r.ReversedBy, &expires))
		r.Position, r.UpdatedPosition = uint64(pos), uint64(upd)
		testenv.NoError(t, json.Unmarshal([]byte(postings), &r.Postings))
		testenv.NoError(t, json.Unmarshal([]byte(metadata), &r.Metadata))
		if expires != nil {
			r.ExpiresAt = *expires
		}
		got.rows[id] = &r
	}
	testenv.NoError(t, rows.Err())
	return got
}

// accountsFromMovements returns, for the log up to upTo, the transfers each
// account lists ("account@position" -> ids) as ListTransfers finds them: from
// the statement lines (movements) of the transfer rows' own positions. It
// builds the lines under a ledger of its own.
func (e *env) accountsFromMovements(upTo uint64) map[string][]string {
	t := e.t
	t.Helper()
	recs, err := e.store.Read(t.Context(), e.ledger, 1, int(upTo))
	testenv.NoError(t, err)
	if uint64(len(recs)) != upTo {
		t.Fatalf("log has %d records, want %d", len(recs), upTo)
	}
	scratch := e.ledger + "-lines"
	testenv.NoError(t, pgx.BeginFunc(t.Context(), e.pool, func(tx pgx.Tx) error {
		return projections.NewMovements().Apply(t.Context(), tx, scratch, recs)
	}))
	var (
		account, id string
		pos         int64
	)
	rows, err := e.pool.Query(t.Context(), `SELECT DISTINCT m.account, m.position, m.transfer_id
		FROM movement_lines m JOIN transfer_rows t ON t.ledger = $2 AND t.id = m.transfer_id AND t.position = m.position
		WHERE m.ledger = $1`, scratch, e.ledger)
	testenv.NoError(t, err)
	out := map[string][]string{}
	_, err = pgx.ForEachRow(rows, []any{&account, &pos, &id}, func() error {
		k := fmt.Sprintf("%s@%d", account, pos)
		out[k] = append(out[k], id)
		return nil
	})
	testenv.NoError(t, err)
	return out
}

// emptyIsNil compares absent and empty maps and lists as equal.
var emptyIsNil = cmp.FilterValues(func(x, y any) bool {
	return isEmpty(x) && isEmpty(y)
}, cmp.Comparer(func(_, _ any) bool { return true }))

func isEmpty(v any) bool {
	switch v := v.(type) {
	case map[string]string:
		return len(v) == 0
	case []string:
		return len(v) == 0
	}
	return false
}

// checkXferFates checks a few rows against what the workload did to them,
// which the replay model must agree with too.
func checkXferFates(t *testing.T, m xferModel) {
	t.Helper()
	zeros := func(r *xferRow) bool {
		for _, p := range r.Postings {
			if p.Remaining != xferZero(p.Amount) {
				return false
			}
		}
		return true
	}
	for _, c := range []struct {
		id, status, resolvedBy string
		remainingZero          bool
		reversedBy             []string
	}{
		{"h-0", "pending_posted", "h-0:post", true, nil},
		{"h-1", "pending_posted", "h-1:post", true, nil},
		{"h-2", "voided", "h-2:void", true, nil},
		{"h-3", "expired", "", true, nil},
		{"h-5", "pending", "", false, nil},
		{"h-11", "pending", "", false, nil},
		{"v-0", "voided", "v-0:void", true, nil},
		{"t-0", "reversed", "", false, []string{"t-0:rev"}},
		{"t-1", "partially_reversed", "", false, []string{"t-1:rev1"}},
		{"t-2", "reversed", "", false, []string{"t-2:rev1", "t-2:rev2"}},
		{"t-3", "posted", "", false, nil},
		{"d-0", "reversed", "", false, []string{"d-0:rev"}},
	} {
		r := m.rows[c.id]
		if r == nil {
			t.Errorf("%s: absent", c.id)
			continue
		}
		if r.Status != c.status || r.ResolvedBy != c.resolvedBy || (r.Kind == "pending" && zeros(r) != c.remainingZero) ||
			!slices.Equal(r.ReversedBy, c.reversedBy) {
			t.Errorf("%s: %s resolved by %q, remaining %+v, reversed by %v; want %s resolved by %q (remaining zero %v), reversed by %v",
				c.id, r.Status, r.ResolvedBy, r.Postings, r.ReversedBy, c.status, c.resolvedBy, c.remainingZero, c.reversedBy)
		}
	}
	if r := m.rows["h-0:post"]; r == nil || r.Kind != "post" || r.PendingID != "h-0" || r.Metadata["posted"] != "full" {
		t.Errorf("h-0:post: %+v, want a post of h-0 with its metadata", r)
	}
	if r := m.rows["d-0:rev"]; r == nil || r.Kind != "reversal" || r.Reverses != "d-0" || r.Metadata["why"] != "refund" {
		t.Errorf("d-0:rev: %+v, want a reversal of d-0 with its metadata", r)
	}
	if r := m.rows["h-3"]; r == nil || r.ExpiresAt.IsZero() {
		t.Errorf("h-3: %+v, want an expiry", r)
	}
}

// xferPool opens a pool on a fresh database with every migration applied.
func xferPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(t.Context(), pool))
	testenv.NoError(t, projections.Migrate(t.Context(), pool))
	return pool
}
