package projections_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/queries"
)

// mvClock is the writer's clock, moved by the test: recorded times are known
// and holds expire when the test says.
type mvClock struct{ ns atomic.Int64 }

func newMvClock(at time.Time) *mvClock {
	c := &mvClock{}
	c.ns.Store(at.UnixNano())
	return c
}

func (c *mvClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *mvClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// mvQueries returns a query service that waits on r for the movements projection.
func mvQueries(pool *pgxpool.Pool, r *runningRunner) *queries.Service {
	return queries.New(pool, func(_, projection string) queries.Waiter {
		if projection == projections.NewMovements().Name() {
			return r
		}
		return nil
	})
}

// newClockedEnv is newEnv with a writer on clock.
func newClockedEnv(t *testing.T, clock *mvClock) *env {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(t.Context(), pool))
	testenv.NoError(t, projections.Migrate(t.Context(), pool))
	e := &env{t: t, pool: pool, store: eventstore.New(pool), ledger: testenv.Name(t)}
	relay := natsbus.NewRelay(e.ledger, jetStream(t), e.store, natsbus.StreamOptions{}, testLogger(t))
	runUntilCleanup(t, "relay", relay.Run)
	e.writer = commands.NewWriter(commands.Options{Ledger: e.ledger, Store: e.store, Logger: testLogger(t), Clock: clock.now,
		OnCommit: func(_ string, recs []eventstore.Record) { relay.Offer(recs) }})
	runUntilCleanup(t, "writer", e.writer.Run)
	return e
}

// mvWorkload drives random transfers, holds, posts, voids, expiries and
// reversals through the writer, keeping what it needs to stay mostly valid.
type mvWorkload struct {
	e          *env
	clock      *mvClock
	rng        *rand.Rand
	next       int
	holds      []mvOpen // open holds
	reversible []mvOpen // posted transfers and posts, not fully reversed
	// postingsOf is each transfer's postings, for the amounts of its posts
	// and reversals.
	postingsOf map[string][]domain.PostingInput
}

type mvOpen struct {
	id        string
	amounts   []int64 // per posting, in minor units
	reversals int
}

// mvTolerated are outcomes a random workload may meet: a hold that expired
// under a post or void, a reversal of a transfer already reversed.
var mvTolerated = []error{domain.ErrPendingExpired, domain.ErrPendingAlreadyResolved, domain.ErrAlreadyReversed}

func (w *mvWorkload) setup() {
	var cmds []domain.Command
	for _, a := range workloadAssets {
		cmds = append(cmds, &domain.DefineAsset{Code: a.Code, Scale: a.Scale})
		for i := range accountsPerAsset {
			normal := domain.SideDebit
			if i%2 == 1 {
				normal = domain.SideCredit
			}
			cmds = append(cmds, &domain.OpenAccount{ID: accountID(a.Code, i), Asset: a.Code, Normal: normal})
		}
	}
	w.e.submit(cmds)
}

func (w *mvWorkload) id(kind string) string {
	w.next++
	return fmt.Sprintf("%s-%d", kind, w.next)
}

// postings returns 1..3 random postings and their amounts.
func (w *mvWorkload) postings() ([]domain.PostingInput, []int64) {
	var (
		ps      []domain.PostingInput
		amounts []int64
	)
	for range 1 + w.rng.IntN(3) {
		a := workloadAssets[w.rng.IntN(len(workloadAssets))]
		from := w.rng.IntN(accountsPerAsset)
		to := (from + 1 + w.rng.IntN(accountsPerAsset-1)) % accountsPerAsset
		amount := 1 + w.rng.Int64N(100_000)
		ps = append(ps, domain.PostingInput{Debit: accountID(a.Code, from), Credit: accountID(a.Code, to), Asset: a.Code,
			Amount: domain.UnitsFromInt64(amount).Format(uint8(a.Scale))})
		amounts = append(amounts, amount)
	}
	return ps, amounts
}

// effectiveAt is unset half the time, else up to ten days back: effective
// order then differs from position order.
func (w *mvWorkload) effectiveAt() time.Time {
	if w.rng.IntN(2) == 0 {
		return time.Time{}
	}
	return w.clock.now().Add(-time.Duration(w.rng.Int64N(int64(240 * time.Hour)))).Truncate(time.Microsecond)
}

func (w *mvWorkload) labels() (string, map[string]string) {
	if w.rng.IntN(3) == 0 {
		return "", nil
	}
	return fmt.Sprintf("ref-%d", w.rng.IntN(5)), map[string]string{"n": fmt.Sprint(w.rng.IntN(100))}
}

func mvTake(rng *rand.Rand, list *[]mvOpen) mvOpen {
	i := rng.IntN(len(*list))
	o := (*list)[i]
	*list = slices.Delete(*list, i, i+1)
	return o
}

// mvAmountsText formats amounts, each at the scale of its posting's asset.
func mvAmountsText(ps []domain.PostingInput, amounts []int64) []string {
	out := make([]string, len(amounts))
	for i, a := range amounts {
		scale := uint8(0)
		for _, as := range workloadAssets {
			if as.Code == ps[i].Asset {
				scale = uint8(as.Scale)
			}
		}
		out[i] = domain.UnitsFromInt64(a).Format(scale)
	}
	return out
}

// round submits up to n random commands in one request and advances the
// clock, so that some holds come due.
func (w *mvWorkload) round(n int) {
	t := w.e.t
	var (
		cmds     []domain.Command
		outcomes []func()
	)
	for range n {
		reference, metadata := w.labels()
		switch x := w.rng.IntN(100); {
		case x < 15 && len(w.holds) > 0:
			h := mvTake(w.rng, &w.holds)
			c := &domain.PostPending{ID: w.id("post"), PendingID: h.id, Reference: reference, Metadata: metadata}
			posted := slices.Clone(h.amounts)
			if w.rng.IntN(3) > 0 {
				for i := range posted {
					posted[i] = w.rng.Int64N(h.amounts[i] + 1)
				}
				c.Amounts = mvAmountsText(w.postingsOf[h.id], posted)
			}
			cmds = append(cmds, c)
			outcomes = append(outcomes, func() {
				if !slices.Contains(posted, 0) {
					w.postingsOf[c.ID] = w.postingsOf[h.id]
					w.reversible = append(w.reversible, mvOpen{id: c.ID, amounts: posted})
				}
			})
		case x < 25 && len(w.holds) > 0:
			h := mvTake(w.rng, &w.holds)
			cmds = append(cmds, &domain.VoidPending{ID: w.id("void"), PendingID: h.id, Reference: reference})
			outcomes = append(outcomes, func() {})
		case x < 40 && len(w.reversible) > 0:
			r := mvTake(w.rng, &w.reversible)
			c := &domain.ReverseTransfer{ID: w.id("rev"), TransferID: r.id, Reference: reference, Metadata: metadata,
				EffectiveAt: w.effectiveAt()}
			if r.reversals == 0 && w.rng.IntN(2) == 0 {
				half := make([]int64, len(r.amounts))
				for i, a := range r.amounts {
					half[i] = (a + 1) / 2
				}
				c.Amounts = mvAmountsText(w.postingsOf[r.id], half)
				r.reversals++
				w.reversible = append(w.reversible, r) // the rest later, in full
			}
			cmds = append(cmds, c)
			outcomes = append(outcomes, func() {})
		case x < 65:
			ps, amounts := w.postings()
			c := &domain.CreateTransfer{ID: w.id("hold"), Postings: ps, Pending: true, Reference: reference,
				Metadata: metadata, EffectiveAt: w.effectiveAt()}
			if w.rng.IntN(2) == 0 {
				c.TimeoutSeconds = uint32(60 + w.rng.IntN(3600))
			}
			w.postingsOf[c.ID] = ps
			cmds = append(cmds, c)
			outcomes = append(outcomes, func() { w.holds = append(w.holds, mvOpen{id: c.ID, amounts: amounts}) })
		default:
			ps, amounts := w.postings()
			c := &domain.CreateTransfer{ID: w.id("t"), Postings: ps, Reference: reference, Metadata: metadata,
				EffectiveAt: w.effectiveAt()}
			w.postingsOf[c.ID] = ps
			cmds = append(cmds, c)
			outcomes = append(outcomes, func() { w.reversible = append(w.reversible, mvOpen{id: c.ID, amounts: amounts}) })
		}
	}
	results, err := w.e.writer.Submit(t.Context(), cmds)
	testenv.NoError(t, err)
	for i, r := range results {
		switch {
		case r.Err == nil:
			outcomes[i]()
		case !slices.ContainsFunc(mvTolerated, func(e error) bool { return errors.Is(r.Err, e) }):
			t.Fatalf("command %s: %v", cmds[i].CommandID(), r.Err)
		}
	}
	w.clock.advance(time.Duration(w.rng.Int64N(int64(20 * time.Minute))))
}

// run sets the ledger up, runs rounds, then lets every hold with a timeout
// expire, and returns the head.
func (w *mvWorkload) run(rounds, perRound int) uint64 {
	t := w.e.t
	t.Helper()
	w.setup()
	for i := range rounds {
		if i == rounds/2 {
			// A period closed before any effective time the rounds draw
			// from now on: every projector must accept the event.
			w.e.submit([]domain.Command{&domain.ClosePeriod{End: w.clock.now().Add(-11 * 24 * time.Hour)}})
		}
		w.round(perRound)
	}
	// Timeouts are at most 3,660 s: two hours on, every one is due. The
	// writer expires due holds before it waits for its next request, so once
	// the second of two requests is answered, the expiries are committed.
	w.clock.advance(2 * time.Hour)
	for range 2 {
		w.e.submit([]domain.Command{&domain.CreateTransfer{ID: w.id("t"), Postings: []domain.PostingInput{
			{Debit: accountID("USD", 0), Credit: accountID("USD", 1), Asset: "USD", Amount: "0.01"}}}})
	}
	head, _, err := w.e.store.Head(t.Context(), w.e.ledger)
	testenv.NoError(t, err)
	return head
}

// mvModel is what the log says the movements read model must answer,
// computed from the log with the domain's own state (a replay), not from
// the read model.
type mvModel struct {
	recs     []eventstore.Record
	accounts []string
	info     map[string]*domain.Account // as opened: asset, scale, normal, position
	// lines are each account's expected lines, without running balances.
	lines map[string][]queries.StatementLine
	// after is each account's balance after each event that moved it.
	after map[string][]queries.Balance
}

func (e *env) model(head uint64) *mvModel {
	t := e.t
	t.Helper()
	m := &mvModel{info: map[string]*domain.Account{}, lines: map[string][]queries.StatementLine{},
		after: map[string][]queries.Balance{}}
	for len(m.recs) < int(head) {
		recs, err := e.store.Read(t.Context(), e.ledger, uint64(len(m.recs))+1, int(head)-len(m.recs))
		testenv.NoError(t, err)
		if len(recs) == 0 {
			t.Fatalf("log ends at %d, want %d", len(m.recs), head)
		}
		m.recs = append(m.recs, recs...)
	}
	st := domain.NewState()
	for _, rec := range m.recs {
		ev, err := domain.UnmarshalEvent(rec.Type, rec.SchemaVersion, rec.Payload)
		testenv.NoError(t, err)
		st.Evolve(rec.Position, ev)
		if o, ok := ev.(domain.AccountOpened); ok {
			a, _ := st.Account(o.ID)
			info := *a
			m.info[o.ID] = &info
			m.accounts = append(m.accounts, o.ID)
		}
		moved := map[string]bool{}
		for _, l := range mvExpectedLines(rec, ev, m.info) {
			m.lines[l.account] = append(m.lines[l.account], l.StatementLine)
			moved[l.account] = true
		}
		for id := range moved {
			a, _ := st.Account(id)
			m.after[id] = append(m.after[id], mvBalance(a, rec.Position))
		}
	}
	sort.Strings(m.accounts)
	return m
}

func mvBalance(a *domain.Account, pos uint64) queries.Balance {
	return queries.Balance{Account: a.ID, Asset: a.Asset, Normal: a.Normal.String(),
		DebitsPosted: a.DebitsPosted.Format(a.Scale), CreditsPosted: a.CreditsPosted.Format(a.Scale),
		DebitsPending: a.DebitsPending.Format(a.Scale), CreditsPending: a.CreditsPending.Format(a.Scale),
		Balance: a.Balance().Format(a.Scale), Available: a.Available().Format(a.Scale), Position: pos}
}

type mvAccountLine struct {
	account string
	queries.StatementLine
}

// mvExpectedLines lists an event's movements as the statement contract
// says: per posting, the debit account's line then the credit account's;
// a post releases the hold before it posts.
func mvExpectedLines(rec eventstore.Record, ev domain.Event, info map[string]*domain.Account) []mvAccountLine {
	var out []mvAccountLine
	base := queries.StatementLine{Position: rec.Position, Kind: rec.Type, RecordedAt: rec.RecordedAt, EffectiveAt: rec.RecordedAt}
	add := func(i int, p domain.Posting, pending bool, amount domain.Units) {
		for _, side := range []string{"debit", "credit"} {
			l := base
			account, counter := p.Debit, p.Credit
			if side == "credit" {
				account, counter = p.Credit, p.Debit
			}
			l.PostingIndex, l.Side, l.Pending, l.CounterAccounts = uint32(i), side, pending, []string{counter}
			l.Amount = amount.Format(info[account].Scale)
			out = append(out, mvAccountLine{account: account, StatementLine: l})
		}
	}
	labels := func(id, reference string, metadata map[string]string, effective time.Time) {
		base.TransferID, base.Reference, base.EffectiveAt = id, reference, effective
		if len(metadata) > 0 {
			base.Metadata = metadata
		}
	}
	switch e := ev.(type) {
	case domain.TransferCommitted:
		labels(e.ID, e.Reference, e.Metadata, e.EffectiveAt)
		for i, p := range e.Postings {
			add(i, p, false, p.Amount.Units)
		}
	case domain.TransferReversed:
		labels(e.ID, e.Reference, e.Metadata, e.EffectiveAt)
		for i, p := range e.Postings {
			add(i, p, false, p.Amount.Units)
		}
	case domain.TransferPending:
		labels(e.ID, e.Reference, e.Metadata, e.EffectiveAt)
		for i, p := range e.Postings {
			add(i, p, true, p.Amount.Units)
		}
	case domain.PendingPosted:
		labels(e.ID, e.Reference, e.Metadata, e.EffectiveAt)
		for i, hp := range e.Postings {
			p := domain.Posting{Debit: hp.Debit, Credit: hp.Credit, Asset: hp.Asset, Amount: hp.Amount}
			add(i, p, true, hp.Held.Units.Neg())
			if !hp.Amount.Units.IsZero() {
				add(i, p, false, hp.Amount.Units)
			}
		}
	case domain.PendingVoided:
		labels(e.ID, e.Reference, nil, rec.RecordedAt)
		for i, p := range e.Postings {
			add(i, p, true, p.Amount.Units.Neg())
		}
	case domain.PendingExpired:
		labels(e.PendingID, "", nil, rec.RecordedAt)
		for i, p := range e.Postings {
			add(i, p, true, p.Amount.Units.Neg())
		}
	}
	// Within an event, an account's lines follow posting order; the sort is
	// stable, so a post's release stays before its posted line.
	slices.SortStableFunc(out, func(a, b mvAccountLine) int { return int(a.PostingIndex) - int(b.PostingIndex) })
	return out
}

// apply moves a's totals by one line.
func mvApply(t *testing.T, a *domain.Account, l queries.StatementLine) {
	t.Helper()
	d, err := domain.ParseDecimal(l.Amount)
	testenv.NoError(t, err)
	u, err := d.Units(a.Scale)
	testenv.NoError(t, err)
	switch {
	case l.Side == "debit" && !l.Pending:
		a.DebitsPosted = a.DebitsPosted.Add(u)
	case l.Side == "credit" && !l.Pending:
		a.CreditsPosted = a.CreditsPosted.Add(u)
	case l.Side == "debit":
		a.DebitsPending = a.DebitsPending.Add(u)
	default:
		a.CreditsPending = a.CreditsPending.Add(u)
	}
}

// zeroOf is an account with no movement: its info, zero totals.
func (m *mvModel) zeroOf(id string) *domain.Account {
	info := m.info[id]
	return &domain.Account{ID: id, Asset: info.Asset, Scale: info.Scale, Normal: info.Normal}
}

// balanceAt is the account's balance just after pos; false when it was
// opened after pos.
func (m *mvModel) balanceAt(id string, pos uint64) (queries.Balance, bool) {
	if m.info[id].Position > pos {
		return queries.Balance{}, false
	}
	b := mvBalance(m.zeroOf(id), m.info[id].Position)
	for _, a := range m.after[id] {
		if a.Position > pos {
			break
		}
		b = a
	}
	return b, true
}

// pages reads every page of a statement, checking that the pages agree.
func mvPages(t *testing.T, q *queries.Service, sq queries.StatementQuery, limit int) queries.Statement {
	t.Helper()
	sq.Limit = limit
	var all queries.Statement
	for page := 0; ; page++ {
		if page > 10_000 {
			t.Fatalf("statement %+v: over 10,000 pages", sq)
		}
		st, err := q.ListStatement(t.Context(), sq)
		testenv.NoError(t, err)
		if page == 0 {
			all = st
			all.Lines, all.NextCursor = nil, ""
		} else if st.Position != all.Position || st.OpeningBalance != all.OpeningBalance || st.ClosingBalance != all.ClosingBalance {
			t.Fatalf("page %d: position %d, opening %s, closing %s; first page %d, %s, %s", page, st.Position,
				st.OpeningBalance, st.ClosingBalance, all.Position, all.OpeningBalance, all.ClosingBalance)
		}
		all.Lines = append(all.Lines, st.Lines...)
		if st.NextCursor == "" {
			return all
		}
		if len(st.Lines) != limit {
			t.Fatalf("page %d has %d lines and a next page, want %d", page, len(st.Lines), limit)
		}
		sq.Cursor = st.NextCursor
	}
}

func mvStripRunning(lines []queries.StatementLine) []queries.StatementLine {
	out := make([]queries.StatementLine, len(lines))
	for i, l := range lines {
		l.RunningBalance, l.RunningAvailable = "", ""
		out[i] = l
	}
	return out
}

func mvPostedLines(lines []queries.StatementLine) []queries.StatementLine {
	return slices.DeleteFunc(slices.Clone(lines), func(l queries.StatementLine) bool { return l.Pending })
}

func (m *mvModel) checkStatements(t *testing.T, q *queries.Service) {
	ledger := m.recs[0].Ledger
	head := m.recs[len(m.recs)-1].Position
	for _, id := range m.accounts {
		full := mvPages(t, q, queries.StatementQuery{Ledger: ledger, Account: id, IncludePending: true}, 7)
		if full.Position != head || full.Account != id || full.Asset != m.info[id].Asset || full.Normal != m.info[id].Normal.String() {
			t.Fatalf("%s: statement of %s (%s, %s) at %d", id, full.Account, full.Asset, full.Normal, full.Position)
		}
		// An account never moved (amendAccounts') has no line.
		if diff := cmp.Diff(m.lines[id], mvStripRunning(full.Lines), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("%s: lines (-log +read model):\n%s", id, diff)
		}
		// Each running balance is the previous one moved by the line, and
		// after each event equals the replay's.
		running := m.zeroOf(id)
		after := m.after[id]
		for i, l := range full.Lines {
			mvApply(t, running, l)
			if l.RunningBalance != running.Balance().Format(running.Scale) || l.RunningAvailable != running.Available().Format(running.Scale) {
				t.Fatalf("%s line %d at %d: running %s / %s, want %s / %s", id, i, l.Position, l.RunningBalance, l.RunningAvailable,
					running.Balance().Format(running.Scale), running.Available().Format(running.Scale))
			}
			if i+1 < len(full.Lines) && full.Lines[i+1].Position == l.Position {
				continue
			}
			want := after[0]
			after = after[1:]
			if got := mvBalance(running, l.Position); !cmp.Equal(got, want) {
				t.Fatalf("%s after %d: prefix sums %+v, replay %+v", id, l.Position, got, want)
			}
		}
		zero := domain.Units{}.Format(m.info[id].Scale)
		final, _ := m.balanceAt(id, head)
		if full.OpeningBalance != zero || full.ClosingBalance != final.Balance {
			t.Errorf("%s: opening %s closing %s, want %s and %s", id, full.OpeningBalance, full.ClosingBalance, zero, final.Balance)
		}
		onlyPosted := mvPages(t, q, queries.StatementQuery{Ledger: ledger, Account: id}, queries.StatementLimitMax)
		if diff := cmp.Diff(mvPostedLines(full.Lines), onlyPosted.Lines, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("%s: posted lines (-all lines' posted +posted only):\n%s", id, diff)
		}
	}
}

func (m *mvModel) checkAsOfPositions(t *testing.T, q *queries.Service, rng *rand.Rand, n int) {
	ledger := m.recs[0].Ledger
	head := uint64(len(m.recs))
	for range n {
		pos := 1 + rng.Uint64N(head)
		got, err := q.BalancesAsOfPosition(t.Context(), ledger, append(m.accounts, "nobody"), pos, 0)
		testenv.NoError(t, err)
		want := queries.Balances{Position: pos}
		for _, id := range m.accounts {
			if b, ok := m.balanceAt(id, pos); ok {
				want.Balances = append(want.Balances, b)
			}
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("as of %d (-replay +read model):\n%s", pos, diff)
		}
	}
}

func (m *mvModel) checkAsOfRecorded(t *testing.T, q *queries.Service, rng *rand.Rand, n int) {
	ledger := m.recs[0].Ledger
	for range n {
		at := m.recs[rng.IntN(len(m.recs))].RecordedAt.Add(time.Duration(rng.IntN(3)-1) * time.Microsecond)
		var pos uint64 // the writer's clock only moves forward here
		for _, r := range m.recs {
			if !r.RecordedAt.After(at) {
				pos = r.Position
			}
		}
		got, err := q.BalancesAsOfTime(t.Context(), ledger, m.accounts, at, false, 0)
		testenv.NoError(t, err)
		want, err := q.BalancesAsOfPosition(t.Context(), ledger, m.accounts, pos, 0)
		testenv.NoError(t, err)
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("as of %s, want as of %d (-want +got):\n%s", at, pos, diff)
		}
	}
	got, err := q.BalancesAsOfTime(t.Context(), ledger, m.accounts, m.recs[0].RecordedAt.Add(-time.Second), false, 0)
	testenv.NoError(t, err)
	if got.Position != 0 || len(got.Balances) != 0 {
		t.Errorf("as of before the first event: %+v, want nothing at position 0", got)
	}
}

func (m *mvModel) checkAsOfEffective(t *testing.T, q *queries.Service, rng *rand.Rand, n int) {
	ledger := m.recs[0].Ledger
	var times []time.Time
	for _, lines := range m.lines {
		for _, l := range lines {
			times = append(times, l.EffectiveAt)
		}
	}
	for range n {
		at := times[rng.IntN(len(times))].Add(time.Duration(rng.IntN(3)-1) * time.Microsecond)
		got, err := q.BalancesAsOfTime(t.Context(), ledger, m.accounts, at, true, 0)
		testenv.NoError(t, err)
		want := queries.Balances{Position: uint64(len(m.recs))}
		for _, id := range m.accounts {
			a, pos := m.zeroOf(id), m.info[id].Position
			for _, l := range m.lines[id] {
				if !l.EffectiveAt.After(at) {
					mvApply(t, a, l)
					pos = max(pos, l.Position)
				}
			}
			want.Balances = append(want.Balances, mvBalance(a, pos))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("as of effective %s (-sums of the log +read model):\n%s", at, diff)
		}
	}
}

func (m *mvModel) checkStatementRanges(t *testing.T, q *queries.Service, rng *rand.Rand, n int) {
	ledger := m.recs[0].Ledger
	head := uint64(len(m.recs))
	for range n {
		id := m.accounts[rng.IntN(len(m.accounts))]
		full := mvPages(t, q, queries.StatementQuery{Ledger: ledger, Account: id, IncludePending: true}, queries.StatementLimitMax)

		t.Run("positions", func(t *testing.T) {
			lo, hi := 1+rng.Uint64N(head), 1+rng.Uint64N(head)
			lo, hi = min(lo, hi), max(lo, hi)
			got := mvPages(t, q, queries.StatementQuery{Ledger: ledger, Account: id, FromPosition: lo, ToPosition: hi, IncludePending: true}, 3)
			want := slices.DeleteFunc(slices.Clone(full.Lines), func(l queries.StatementLine) bool { return l.Position < lo || l.Position > hi })
			m.checkRange(t, id, got, want, lo-1, hi)
		})

		t.Run("recorded times", func(t *testing.T) {
			from, to := m.recs[rng.IntN(len(m.recs))].RecordedAt, m.recs[rng.IntN(len(m.recs))].RecordedAt
			if from.After(to) {
				from, to = to, from
			}
			got := mvPages(t, q, queries.StatementQuery{Ledger: ledger, Account: id, FromTime: from, ToTime: to, IncludePending: true}, 4)
			want := slices.DeleteFunc(slices.Clone(full.Lines), func(l queries.StatementLine) bool {
				return l.RecordedAt.Before(from) || l.RecordedAt.After(to)
			})
			var before, upTo uint64
			for _, r := range m.recs {
				if r.RecordedAt.Before(from) {
					before = r.Position
				}
				if !r.RecordedAt.After(to) {
					upTo = r.Position
				}
			}
			m.checkRange(t, id, got, want, before, upTo)
		})

		t.Run("effective times", func(t *testing.T) {
			lines := full.Lines
			if len(lines) == 0 { // an account never moved: a range of the others' times, empty for it
				for _, ls := range m.lines {
					lines = append(lines, ls...)
				}
			}
			from, to := lines[rng.IntN(len(lines))].EffectiveAt, lines[rng.IntN(len(lines))].EffectiveAt
			if from.After(to) {
				from, to = to, from
			}
			sq := queries.StatementQuery{Ledger: ledger, Account: id, FromTime: from, ToTime: to, Effective: true, IncludePending: true}
			got := mvPages(t, q, sq, 3)
			// Value-dated: the opening counts every movement effective before
			// the range; each line moves the running balance from there.
			running := m.zeroOf(id)
			var want []queries.StatementLine
			for _, l := range m.lines[id] {
				if l.EffectiveAt.Before(from) {
					mvApply(t, running, l)
				}
			}
			opening := running.Balance().Format(running.Scale)
			for _, l := range m.lines[id] {
				if l.EffectiveAt.Before(from) || l.EffectiveAt.After(to) {
					continue
				}
				mvApply(t, running, l)
				l.RunningBalance, l.RunningAvailable = running.Balance().Format(running.Scale), running.Available().Format(running.Scale)
				want = append(want, l)
			}
			if diff := cmp.Diff(want, got.Lines, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("%s from %s to %s (-want +got):\n%s", id, from, to, diff)
			}
			if closing := running.Balance().Format(running.Scale); got.OpeningBalance != opening || got.ClosingBalance != closing {
				t.Errorf("%s: opening %s closing %s, want %s and %s", id, got.OpeningBalance, got.ClosingBalance, opening, closing)
			}
			onlyPosted := sq
			onlyPosted.IncludePending = false
			if diff := cmp.Diff(mvPostedLines(want), mvPages(t, q, onlyPosted, 2).Lines, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("%s: posted lines, effective (-want +got):\n%s", id, diff)
			}
		})
	}
}

// checkRange checks a contiguous range's page union, opening (the balance
// just after position before) and closing (just after upTo).
func (m *mvModel) checkRange(t *testing.T, id string, got queries.Statement, want []queries.StatementLine, before, upTo uint64) {
	t.Helper()
	if diff := cmp.Diff(want, got.Lines, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("%s: lines (-want +got):\n%s", id, diff)
	}
	balance := func(pos uint64) string {
		if b, ok := m.balanceAt(id, pos); ok {
			return b.Balance
		}
		return domain.Units{}.Format(m.info[id].Scale)
	}
	opening, closing := balance(min(before, upTo)), balance(upTo)
	if got.OpeningBalance != opening || got.ClosingBalance != closing {
		t.Errorf("%s after %d up to %d: opening %s closing %s, want %s and %s", id, before, upTo,
			got.OpeningBalance, got.ClosingBalance, opening, closing)
	}
}

// TestMovementsOfAHold spells the statement contract out on one account:
// a hold, its partial post, a void, an expiry and a reversal.
func TestMovementsOfAHold(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	clock := newMvClock(t0)
	e := newClockedEnv(t, clock)
	runner := e.startRunner(t.Context(), projections.NewMovements(), e.natsSource())
	usd := func(id string, normal domain.Side) *domain.OpenAccount {
		return &domain.OpenAccount{ID: id, Asset: "USD", Normal: normal}
	}
	one := func(from, to, amount string) []domain.PostingInput {
		return []domain.PostingInput{{Debit: from, Credit: to, Asset: "USD", Amount: amount}}
	}
	e.submit([]domain.Command{&domain.DefineAsset{Code: "USD", Scale: 2},
		usd("bank", domain.SideDebit), usd("alice", domain.SideCredit), usd("bob", domain.SideCredit)})
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "t1", Postings: one("bank", "alice", "100"), Reference: "salary",
		Metadata: map[string]string{"month": "02"}, EffectiveAt: t0.Add(-48 * time.Hour)}})
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "h1", Postings: one("alice", "bob", "30"), Pending: true}})
	e.submit([]domain.Command{&domain.PostPending{ID: "p1", PendingID: "h1", Amounts: []string{"20"}}})
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "h2", Postings: one("alice", "bob", "5"), Pending: true, TimeoutSeconds: 60}})
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "h3", Postings: one("alice", "bob", "1"), Pending: true}})
	e.submit([]domain.Command{&domain.VoidPending{ID: "v3", PendingID: "h3"}})
	clock.advance(2 * time.Minute)
	// h2 expires before the writer waits for its next request: answered after it.
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "x1", Postings: one("bank", "bob", "1")}})
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "x2", Postings: one("bank", "bob", "1")}})
	e.submit([]domain.Command{&domain.ReverseTransfer{ID: "r1", TransferID: "t1", Amounts: []string{"10"}}})
	head, _, err := e.store.Head(t.Context(), e.ledger)
	testenv.NoError(t, err)
	waitFor(t, runner, head)
	q := mvQueries(e.pool, runner)

	type line struct{ Kind, TransferID, Side, Amount, Balance, Available string }
	summarize := func(st queries.Statement) []line {
		var out []line
		for _, l := range st.Lines {
			side := l.Side
			if l.Pending {
				side += " pending"
			}
			out = append(out, line{l.Kind, l.TransferID, side, l.Amount, l.RunningBalance, l.RunningAvailable})
		}
		return out
	}
	st, err := q.ListStatement(t.Context(), queries.StatementQuery{Ledger: e.ledger, Account: "alice", IncludePending: true})
	testenv.NoError(t, err)
	want := []line{
		{"TransferCommitted", "t1", "credit", "100.00", "100.00", "100.00"},
		{"TransferPending", "h1", "debit pending", "30.00", "100.00", "70.00"},
		// The release comes first: the posted line shows the available after the post.
		{"PendingPosted", "p1", "debit pending", "-30.00", "100.00", "100.00"},
		{"PendingPosted", "p1", "debit", "20.00", "80.00", "80.00"},
		{"TransferPending", "h2", "debit pending", "5.00", "80.00", "75.00"},
		{"TransferPending", "h3", "debit pending", "1.00", "80.00", "74.00"},
		{"PendingVoided", "v3", "debit pending", "-1.00", "80.00", "75.00"},
		{"PendingExpired", "h2", "debit pending", "-5.00", "80.00", "80.00"},
		{"TransferReversed", "r1", "debit", "10.00", "70.00", "70.00"},
	}
	if diff := cmp.Diff(want, summarize(st)); diff != "" {
		t.Fatalf("alice's statement (-want +got):\n%s", diff)
	}
	if l := st.Lines[0]; l.Reference != "salary" || l.Metadata["month"] != "02" || !slices.Equal(l.CounterAccounts, []string{"bank"}) ||
		!l.EffectiveAt.Equal(t0.Add(-48*time.Hour)) || !l.RecordedAt.Equal(t0) {
		t.Errorf("t1's line: %+v", l)
	}
	if st.OpeningBalance != "0.00" || st.ClosingBalance != "70.00" || st.Position != head || st.NextCursor != "" {
		t.Errorf("statement: opening %s closing %s at %d, cursor %q", st.OpeningBalance, st.ClosingBalance, st.Position, st.NextCursor)
	}
	st, err = q.ListStatement(t.Context(), queries.StatementQuery{Ledger: e.ledger, Account: "alice"})
	testenv.NoError(t, err)
	if diff := cmp.Diff([]line{want[0], want[3], want[8]}, summarize(st)); diff != "" {
		t.Errorf("alice's posted lines (-want +got):\n%s", diff)
	}

	// Value-dated: only t1 was effective two days before t0.
	st, err = q.ListStatement(t.Context(), queries.StatementQuery{Ledger: e.ledger, Account: "alice", Effective: true,
		FromTime: t0.Add(-72 * time.Hour), ToTime: t0.Add(-24 * time.Hour), IncludePending: true})
	testenv.NoError(t, err)
	if diff := cmp.Diff(want[:1], summarize(st)); diff != "" || st.OpeningBalance != "0.00" || st.ClosingBalance != "100.00" {
		t.Errorf("alice, effective two days back: opening %s closing %s (-want +got):\n%s", st.OpeningBalance, st.ClosingBalance, diff)
	}
	b, err := q.BalancesAsOfTime(t.Context(), e.ledger, []string{"alice", "bob"}, t0.Add(-24*time.Hour), true, 0)
	testenv.NoError(t, err)
	if len(b.Balances) != 2 || b.Balances[0].Balance != "100.00" || b.Balances[1].Balance != "0.00" || b.Position != head {
		t.Errorf("as of effective t0-24h: %+v", b)
	}
	// Just after the hold: 30.00 held.
	b, err = q.BalancesAsOfPosition(t.Context(), e.ledger, []string{"alice"}, 6, 0)
	testenv.NoError(t, err)
	if got := b.Balances[0]; got.Balance != "100.00" || got.Available != "70.00" || got.DebitsPending != "30.00" || got.Position != 6 {
		t.Errorf("alice as of 6: %+v", got)
	}
	b, err = q.BalancesAsOfPosition(t.Context(), e.ledger, []string{"alice", "bank"}, 2, 0)
	testenv.NoError(t, err)
	if len(b.Balances) != 1 || b.Balances[0].Account != "bank" || b.Balances[0].Balance != "0.00" {
		t.Errorf("as of 2, before alice opened: %+v", b.Balances)
	}
}

// The clock keeps a point per grain (projections.ClockGrain), not per
// recorded time: "as of recorded time t" still names the last position
// recorded at or before t, to the microsecond, when many events share a
// grain, some a time, and the projector applies them in batches of any size.
func TestMovementsClockWithinAGrain(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	clock := newMvClock(t0)
	e := newClockedEnv(t, clock)
	usd := func(id string, normal domain.Side) *domain.OpenAccount {
		return &domain.OpenAccount{ID: id, Asset: "USD", Normal: normal}
	}
	e.submit([]domain.Command{&domain.DefineAsset{Code: "USD", Scale: 2}, usd("bank", domain.SideDebit), usd("alice", domain.SideCredit)})
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range 120 {
		// 0 to 700 µs apart: several transfers a grain, some at one time.
		clock.advance(time.Duration(rng.IntN(8)*100) * time.Microsecond)
		e.submit([]domain.Command{&domain.CreateTransfer{ID: fmt.Sprintf("t%d", i),
			Postings: []domain.PostingInput{{Debit: "bank", Credit: "alice", Asset: "USD", Amount: "1"}}}})
	}
	head, _, err := e.store.Head(t.Context(), e.ledger)
	testenv.NoError(t, err)
	recs, err := e.store.Read(t.Context(), e.ledger, 1, int(head))
	testenv.NoError(t, err)
	runner := e.startRunner(t.Context(), projections.NewMovements(), e.natsSource())
	waitFor(t, runner, head)
	q := mvQueries(e.pool, runner)
	var rows int
	testenv.NoError(t, e.pool.QueryRow(t.Context(), `SELECT count(*) FROM movement_clock WHERE ledger = $1`, e.ledger).Scan(&rows))
	if rows >= len(recs)/2 {
		t.Errorf("%d clock points for %d events: want about one a grain", rows, len(recs))
	}
	var times []time.Time
	for _, r := range recs {
		times = append(times, r.RecordedAt.Add(-time.Microsecond), r.RecordedAt, r.RecordedAt.Add(time.Microsecond))
	}
	times = append(times, t0.Add(-time.Second), recs[len(recs)-1].RecordedAt.Add(time.Hour))
	for _, at := range times {
		var want uint64 // recorded times never go back here
		for _, r := range recs {
			if !r.RecordedAt.After(at) {
				want = r.Position
			}
		}
		got, err := q.BalancesAsOfTime(t.Context(), e.ledger, []string{"alice"}, at, false, 0)
		testenv.NoError(t, err)
		if got.Position != want {
			t.Fatalf("as of %s: position %d, want %d", at.Format(time.RFC3339Nano), got.Position, want)
		}
	}
}
