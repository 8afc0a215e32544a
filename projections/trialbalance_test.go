package projections_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/queries"
)

// Tests of the trial balance the balances projector keeps: against a replay
// of the log, at its head, at every history row and as of random positions;
// its refusal of a batch that unbalances the books; and the backfill of
// migration 0004 on a read model projected before it.

// line is one asset's trial balance line.
type line struct {
	DebitsPosted, CreditsPosted, DebitsPending, CreditsPending string
	Accounts, AccountsClosed                                   uint64
}

// replayer folds a ledger's log into a domain state, forward only, and sums
// its accounts per asset: what the trial balance must say.
type replayer struct {
	e        *env
	st       *domain.State
	scales   map[string]uint8
	accounts []string
	// moved is the position of each account's last movement
	// (domain.AppendMovements): its last statement line's.
	moved map[string]uint64
	moves []domain.Movement // one event's, reused
}

func newReplayer(e *env) *replayer {
	return &replayer{e: e, st: domain.NewState(), scales: map[string]uint8{}, moved: map[string]uint64{}}
}

// advance applies the log up to position to.
func (r *replayer) advance(to uint64) {
	t := r.e.t
	t.Helper()
	for r.st.Position() < to {
		recs, err := r.e.store.Read(t.Context(), r.e.ledger, r.st.Position()+1, int(to-r.st.Position()))
		testenv.NoError(t, err)
		if len(recs) == 0 {
			t.Fatalf("log ends at %d, want %d", r.st.Position(), to)
		}
		for _, rec := range recs {
			if rec.Position > to {
				break
			}
			ev, err := domain.UnmarshalEvent(rec.Type, rec.SchemaVersion, rec.Payload)
			testenv.NoError(t, err)
			r.st.Evolve(rec.Position, ev)
			switch ev := ev.(type) {
			case domain.AssetDefined:
				r.scales[ev.Code] = ev.Scale
			case domain.AccountOpened:
				r.accounts = append(r.accounts, ev.ID)
			}
			r.moves = domain.AppendMovements(r.moves[:0], ev)
			for _, m := range r.moves {
				r.moved[m.Account] = rec.Position
			}
		}
	}
}

// lines sums the accounts per asset: every defined asset has a line.
func (r *replayer) lines() map[string]line {
	type sums struct {
		dp, cp, dq, cq domain.Units
		open, closed   uint64
	}
	by := map[string]*sums{}
	for code := range r.scales {
		by[code] = &sums{}
	}
	for _, id := range r.accounts {
		a, _ := r.st.Account(id)
		s := by[a.Asset]
		s.dp, s.cp = s.dp.Add(a.DebitsPosted), s.cp.Add(a.CreditsPosted)
		s.dq, s.cq = s.dq.Add(a.DebitsPending), s.cq.Add(a.CreditsPending)
		if a.Closed {
			s.closed++
		} else {
			s.open++
		}
	}
	out := make(map[string]line, len(by))
	for code, s := range by {
		scale := r.scales[code]
		out[code] = line{DebitsPosted: s.dp.Format(scale), CreditsPosted: s.cp.Format(scale),
			DebitsPending: s.dq.Format(scale), CreditsPending: s.cq.Format(scale), Accounts: s.open, AccountsClosed: s.closed}
	}
	return out
}

// trialBalances reads the trial_balances table of the ledger.
func (e *env) trialBalances() map[string]line {
	e.t.Helper()
	return e.linesOf(`SELECT asset, debits_posted::text, credits_posted::text, debits_pending::text,
		credits_pending::text, accounts, accounts_closed FROM trial_balances WHERE ledger = $1`)
}

// balanceSums sums the accounts' balances per asset: the totals of each
// account's last statement line (the movements read model: an account's
// balance, migration 0021), the accounts the trial balance counts
// (trial_accounts). Both projections must stand at the same position.
func (e *env) balanceSums() map[string]line {
	e.t.Helper()
	return e.linesOf(`SELECT a.code, round(coalesce(sum(l.debits_posted), 0), a.scale)::text,
			round(coalesce(sum(l.credits_posted), 0), a.scale)::text,
			round(coalesce(sum(l.debits_pending), 0), a.scale)::text,
			round(coalesce(sum(l.credits_pending), 0), a.scale)::text,
			count(b.account) FILTER (WHERE NOT b.closed), count(b.account) FILTER (WHERE b.closed)
		FROM assets a LEFT JOIN trial_accounts b ON b.ledger = a.ledger AND b.asset = a.code
		LEFT JOIN LATERAL (
			SELECT m.debits_posted, m.credits_posted, m.debits_pending, m.credits_pending
			FROM movement_lines m WHERE m.ledger = b.ledger AND m.account = b.account
			ORDER BY m.position DESC, m.seq DESC LIMIT 1) l ON true
		WHERE a.ledger = $1 GROUP BY a.code, a.scale`)
}

func (e *env) linesOf(sql string) map[string]line {
	t := e.t
	t.Helper()
	rows, err := e.pool.Query(t.Context(), sql, e.ledger)
	testenv.NoError(t, err)
	out := map[string]line{}
	var (
		asset      string
		l          line
		open, shut int64
	)
	_, err = pgx.ForEachRow(rows, []any{&asset, &l.DebitsPosted, &l.CreditsPosted, &l.DebitsPending, &l.CreditsPending,
		&open, &shut}, func() error {
		l.Accounts, l.AccountsClosed = uint64(open), uint64(shut)
		out[asset] = l
		return nil
	})
	testenv.NoError(t, err)
	return out
}

// linesOfAnswer turns a query's answer into lines by asset.
func linesOfAnswer(tb queries.TrialBalance) map[string]line {
	out := make(map[string]line, len(tb.Lines))
	for _, l := range tb.Lines {
		out[l.Asset] = line{DebitsPosted: l.DebitsPosted, CreditsPosted: l.CreditsPosted, DebitsPending: l.DebitsPending,
			CreditsPending: l.CreditsPending, Accounts: l.Accounts, AccountsClosed: l.AccountsClosed}
	}
	return out
}

// checkBooksBalance checks that each line has debits = credits, posted and pending.
func checkBooksBalance(t *testing.T, what string, lines map[string]line) {
	t.Helper()
	for asset, l := range lines {
		if l.DebitsPosted != l.CreditsPosted || l.DebitsPending != l.CreditsPending {
			t.Errorf("%s: %s does not balance: %+v", what, asset, l)
		}
	}
}

// mixedWorkload generates commands of every kind that moves money or changes
// an account, tracking what it expects to exist. Items the writer refuses
// (a post of a hold that expired, a close with holds open, a transfer to a
// closed account) are part of the mix: the log holds whatever was accepted.
type mixedWorkload struct {
	rng        *rand.Rand
	n          int
	accounts   map[string][]string // by asset; a closed account leaves
	closable   [][2]string         // account and asset
	holds      []trackedTransfer
	reversible []trackedTransfer
}

// trackedTransfer is a hold or a posted transfer: its postings and, per
// posting, the minor units still held or still reversible.
type trackedTransfer struct {
	id       string
	postings []domain.PostingInput
	scale    []uint8
	left     []int64
}

const (
	mixedAccountsPerAsset = 5
	mixedSparesPerAsset   = 2
)

func newMixedWorkload(seed uint64) *mixedWorkload {
	return &mixedWorkload{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), accounts: map[string][]string{}}
}

// setup defines workloadAssets and opens their accounts, spares among them.
func (w *mixedWorkload) setup() []domain.Command {
	var cmds []domain.Command
	for _, a := range workloadAssets {
		cmds = append(cmds, &domain.DefineAsset{Code: a.Code, Scale: a.Scale})
	}
	for _, a := range workloadAssets {
		for i := range mixedAccountsPerAsset + mixedSparesPerAsset {
			id := accountID(a.Code, i)
			if i >= mixedAccountsPerAsset {
				id = fmt.Sprintf("%s-spare-%d", a.Code, i)
				w.closable = append(w.closable, [2]string{id, a.Code})
			}
			w.accounts[a.Code] = append(w.accounts[a.Code], id)
			cmds = append(cmds, &domain.OpenAccount{ID: id, Asset: a.Code, Normal: domain.Side(1 + i%2)})
		}
	}
	return cmds
}

func (w *mixedWorkload) nextID(kind string) string {
	w.n++
	return fmt.Sprintf("%s-%d", kind, w.n)
}

// postings returns 1..max postings of random assets between distinct accounts.
func (w *mixedWorkload) postings(max int) ([]domain.PostingInput, []uint8, []int64) {
	n := 1 + w.rng.IntN(max)
	ps, scales, units := make([]domain.PostingInput, n), make([]uint8, n), make([]int64, n)
	for i := range ps {
		a := workloadAssets[w.rng.IntN(len(workloadAssets))]
		ids := w.accounts[a.Code]
		from := w.rng.IntN(len(ids))
		to := (from + 1 + w.rng.IntN(len(ids)-1)) % len(ids)
		units[i], scales[i] = 1+w.rng.Int64N(1_000_000), uint8(a.Scale)
		ps[i] = domain.PostingInput{Debit: ids[from], Credit: ids[to], Asset: a.Code,
			Amount: domain.UnitsFromInt64(units[i]).Format(scales[i])}
	}
	return ps, scales, units
}

// amounts picks, per posting, a part of what is left (all of it when full),
// at least one unit in all; it returns the amounts and the units taken.
func (w *mixedWorkload) amounts(t *trackedTransfer, full bool) ([]string, []int64) {
	out, took := make([]string, len(t.left)), make([]int64, len(t.left))
	some := false
	for i, left := range t.left {
		if full {
			took[i] = left
		} else if left > 0 {
			took[i] = w.rng.Int64N(left + 1)
		}
		some = some || took[i] > 0
		out[i] = domain.UnitsFromInt64(took[i]).Format(t.scale[i])
	}
	if !some {
		for i, left := range t.left {
			if left > 0 {
				took[i], out[i] = left, domain.UnitsFromInt64(left).Format(t.scale[i])
				break
			}
		}
	}
	return out, took
}

// take removes and returns a random element of *list.
func take(rng *rand.Rand, list *[]trackedTransfer) (trackedTransfer, bool) {
	if len(*list) == 0 {
		return trackedTransfer{}, false
	}
	i := rng.IntN(len(*list))
	t := (*list)[i]
	*list = slices.Delete(*list, i, i+1)
	return t, true
}

// next returns one random command.
func (w *mixedWorkload) next() domain.Command {
	for {
		switch r := w.rng.IntN(100); {
		case r < 32:
			ps, scales, units := w.postings(3)
			id := w.nextID("t")
			w.reversible = append(w.reversible, trackedTransfer{id: id, postings: ps, scale: scales, left: units})
			return &domain.CreateTransfer{ID: id, Postings: ps}
		case r < 52:
			ps, scales, units := w.postings(2)
			id := w.nextID("hold")
			timeout := uint32(0)
			if w.rng.IntN(4) == 0 {
				timeout = 1 // some expire while the workload runs
			}
			w.holds = append(w.holds, trackedTransfer{id: id, postings: ps, scale: scales, left: units})
			return &domain.CreateTransfer{ID: id, Postings: ps, Pending: true, TimeoutSeconds: timeout}
		case r < 64:
			h, ok := take(w.rng, &w.holds)
			if !ok {
				continue
			}
			c := &domain.PostPending{ID: w.nextID("post"), PendingID: h.id}
			posted := h
			if w.rng.IntN(2) == 0 {
				c.Amounts, posted.left = w.amounts(&h, false)
			}
			posted.id = c.ID
			w.reversible = append(w.reversible, posted)
			return c
		case r < 72:
			h, ok := take(w.rng, &w.holds)
			if !ok {
				continue
			}
			return &domain.VoidPending{ID: w.nextID("void"), PendingID: h.id}
		case r < 84:
			tr, ok := take(w.rng, &w.reversible)
			if !ok {
				continue
			}
			full := w.rng.IntN(3) == 0
			amounts, took := w.amounts(&tr, full)
			for i := range tr.left {
				tr.left[i] -= took[i]
			}
			if !full && slices.ContainsFunc(tr.left, func(v int64) bool { return v > 0 }) {
				w.reversible = append(w.reversible, tr)
			}
			return &domain.ReverseTransfer{ID: w.nextID("rev"), TransferID: tr.id, Amounts: amounts}
		case r < 88:
			if len(w.closable) == 0 {
				continue
			}
			// Refused while the account has holds; used no more either way.
			i := w.rng.IntN(len(w.closable))
			id, asset := w.closable[i][0], w.closable[i][1]
			w.closable = slices.Delete(w.closable, i, i+1)
			w.accounts[asset] = slices.DeleteFunc(w.accounts[asset], func(a string) bool { return a == id })
			return &domain.CloseAccount{AccountID: id}
		case r < 93:
			a := workloadAssets[w.rng.IntN(len(workloadAssets))]
			id := w.nextID("acc-" + a.Code)
			w.accounts[a.Code] = append(w.accounts[a.Code], id)
			if w.rng.IntN(2) == 0 {
				w.closable = append(w.closable, [2]string{id, a.Code})
			}
			return &domain.OpenAccount{ID: id, Asset: a.Code, Normal: domain.SideCredit}
		case r < 97:
			ids := w.accounts[workloadAssets[w.rng.IntN(len(workloadAssets))].Code]
			return &domain.SetAccountMetadata{AccountID: ids[w.rng.IntN(len(ids))],
				Metadata: map[string]string{"n": fmt.Sprint(w.n)}}
		default:
			ids := w.accounts[workloadAssets[w.rng.IntN(len(workloadAssets))].Code]
			return &domain.SetAccountBounds{AccountID: ids[w.rng.IntN(len(ids))]}
		}
	}
}

// submitAny submits cmds and fails the test only if the request fails: items
// may be refused.
func (e *env) submitAny(cmds []domain.Command) {
	e.t.Helper()
	_, err := e.writer.Submit(e.t.Context(), cmds)
	testenv.NoError(e.t, err)
}

// runMixedWorkload runs setup and commands commands in requests of 1..20,
// then waits for a hold to expire, and returns the head. It checks that the
// log holds every event type that moves money or counts accounts.
func (e *env) runMixedWorkload(w *mixedWorkload, setup bool, commands int) uint64 {
	t := e.t
	t.Helper()
	if setup {
		e.submit(w.setup())
	}
	for commands > 0 {
		n := min(commands, 1+w.rng.IntN(20))
		cmds := make([]domain.Command, n)
		for i := range cmds {
			cmds[i] = w.next()
		}
		e.submitAny(cmds)
		commands -= n
	}
	// One expiry at least, decided by the writer on its own, between accounts
	// never closed.
	id := w.nextID("expiring")
	e.submit([]domain.Command{&domain.CreateTransfer{ID: id, Pending: true, TimeoutSeconds: 1,
		Postings: []domain.PostingInput{{Debit: accountID("USD", 0), Credit: accountID("USD", 1), Asset: "USD", Amount: "1.00"}}}})
	testenv.Eventually(t, waitMax, func() error {
		if n := e.countEvents(domain.TypePendingExpired, id); n != 1 {
			return fmt.Errorf("%d PendingExpired events for %s, want 1", n, id)
		}
		return nil
	})
	head, _, err := e.store.Head(t.Context(), e.ledger)
	testenv.NoError(t, err)
	for _, typ := range []string{domain.TypeAssetDefined, domain.TypeAccountOpened, domain.TypeAccountClosed,
		domain.TypeTransferCommitted, domain.TypeTransferPending, domain.TypePendingPosted, domain.TypePendingVoided,
		domain.TypePendingExpired, domain.TypeTransferReversed, domain.TypeAccountMetadataSet} {
		if e.countEvents(typ, "") == 0 && setup {
			t.Errorf("the workload wrote no %s event", typ)
		}
	}
	return head
}

// countEvents counts the ledger's events of a type (with a command id, if given).
func (e *env) countEvents(typ, commandID string) int {
	e.t.Helper()
	var n int
	testenv.NoError(e.t, e.pool.QueryRow(e.t.Context(), `SELECT count(*) FROM events
		WHERE ledger = $1 AND type = $2 AND ($3 = '' OR command_id = $3)`, e.ledger, typ, commandID).Scan(&n))
	return n
}

// randomBatches cuts a source's batches to a random size of 1..sizeMax.
type randomBatches struct {
	src     projections.Source
	sizeMax int
	mu      sync.Mutex
	rng     *rand.Rand
}

func (b *randomBatches) Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	b.mu.Lock()
	n := min(max, 1+b.rng.IntN(b.sizeMax))
	b.mu.Unlock()
	return b.src.Next(ctx, from, n)
}

// historyPositions returns the positions of the ledger's history rows.
func (e *env) historyPositions() []uint64 {
	e.t.Helper()
	rows, err := e.pool.Query(e.t.Context(), `SELECT DISTINCT position FROM trial_balance_history
		WHERE ledger = $1 ORDER BY position`, e.ledger)
	testenv.NoError(e.t, err)
	ps, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	testenv.NoError(e.t, err)
	out := make([]uint64, len(ps))
	for i, p := range ps {
		out[i] = uint64(p)
	}
	return out
}

// historyAt reads the ledger's history rows at position pos.
func (e *env) historyAt(pos uint64) map[string]line {
	e.t.Helper()
	rows, err := e.pool.Query(e.t.Context(), `SELECT asset, debits_posted::text, credits_posted::text,
			debits_pending::text, credits_pending::text, accounts, accounts_closed
		FROM trial_balance_history WHERE ledger = $1 AND position = $2`, e.ledger, int64(pos))
	testenv.NoError(e.t, err)
	out := map[string]line{}
	var (
		asset      string
		l          line
		open, shut int64
	)
	_, err = pgx.ForEachRow(rows, []any{&asset, &l.DebitsPosted, &l.CreditsPosted, &l.DebitsPending,
		&l.CreditsPending, &open, &shut}, func() error {
		l.Accounts, l.AccountsClosed = uint64(open), uint64(shut)
		out[asset] = l
		return nil
	})
	testenv.NoError(e.t, err)
	return out
}

// checkAsOf checks GetTrialBalance as of each position (ascending) against a
// replay of the log to it.
func (e *env) checkAsOf(positions []uint64) {
	t := e.t
	t.Helper()
	q := queries.New(e.pool, nil)
	r := newReplayer(e)
	for _, p := range positions {
		r.advance(p)
		got, err := q.GetTrialBalance(t.Context(), e.ledger, p, 0)
		testenv.NoError(t, err)
		if got.Position != p {
			t.Errorf("as of %d: answer at position %d", p, got.Position)
		}
		if diff := cmp.Diff(r.lines(), linesOfAnswer(got)); diff != "" {
			t.Fatalf("trial balance as of %d differs from the replay (-replay +answer):\n%s", p, diff)
		}
	}
}

// asOfPositions returns, ascending and distinct: 1, head, each batch end and
// its neighbours, and n random positions in 1..head.
func asOfPositions(rng *rand.Rand, head uint64, ends []uint64, n int) []uint64 {
	ps := []uint64{1, head}
	for _, end := range ends {
		ps = append(ps, end-1, end, end+1)
	}
	for range n {
		ps = append(ps, 1+rng.Uint64N(head))
	}
	ps = slices.DeleteFunc(ps, func(p uint64) bool { return p < 1 || p > head })
	slices.Sort(ps)
	return slices.Compact(ps)
}

func TestTrialBalanceMatchesReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newMixedWorkload(5)
	head := e.runMixedWorkload(w, true, 700)
	// Started on the whole log, so that batches have the random sizes asked
	// (and many ends for the as-of checks), whatever the timing.
	src := &randomBatches{src: e.natsSource(), sizeMax: 25, rng: rand.New(rand.NewPCG(5, 5))}
	runner := e.startRunner(t.Context(), projections.Balances{}, src)
	// The accounts' balances: their statement lines.
	lines := e.startRunner(t.Context(), projections.NewMovements(), e.natsSource())
	waitFor(t, runner, head)
	waitFor(t, lines, head)

	tb := e.trialBalances()
	checkBooksBalance(t, "trial_balances", tb)
	if diff := cmp.Diff(e.balanceSums(), tb); diff != "" {
		t.Errorf("trial_balances differ from Σ balances per asset (-Σ balances +trial_balances):\n%s", diff)
	}
	e.checkTrialAccounts(head)
	r := newReplayer(e)
	r.advance(head)
	if diff := cmp.Diff(r.lines(), tb); diff != "" {
		t.Errorf("trial_balances differ from the replay (-replay +trial_balances):\n%s", diff)
	}
	now, err := queries.New(e.pool, nil).GetTrialBalance(t.Context(), e.ledger, 0, head)
	testenv.NoError(t, err)
	if diff := cmp.Diff(tb, linesOfAnswer(now)); diff != "" || now.Position != head {
		t.Errorf("GetTrialBalance now at %d, want %d; (-table +answer):\n%s", now.Position, head, diff)
	}

	// Every history row is the replay at its batch's end.
	ends := e.historyPositions()
	r = newReplayer(e)
	for _, end := range ends {
		r.advance(end)
		want := r.lines()
		for asset, got := range e.historyAt(end) {
			if diff := cmp.Diff(want[asset], got); diff != "" {
				t.Fatalf("history of %s at %d differs from the replay (-replay +history):\n%s", asset, end, diff)
			}
		}
	}
	t.Logf("%d events, %d batches with history", head, len(ends))
	if len(ends) < 20 {
		t.Errorf("%d batches wrote history, want many: the as-of checks below need batch boundaries", len(ends))
	}
	e.checkAsOf(asOfPositions(rand.New(rand.NewPCG(6, 6)), head, ends, 100))
}

// records makes a batch of records from position from on.
func records(ledger string, from uint64, events ...domain.Event) []eventstore.Record {
	recs := make([]eventstore.Record, len(events))
	for i, e := range events {
		recs[i] = eventstore.Record{Ledger: ledger, Position: from + uint64(i), Type: e.EventType(),
			SchemaVersion: domain.SchemaVersion, RecordedAt: time.Now().UTC(), Payload: domain.AppendEvent(nil, e)}
	}
	return recs
}

func usd(units int64) domain.Amount {
	return domain.Amount{Units: domain.UnitsFromInt64(units), Scale: 2}
}

// bookSetup is a ledger of two assets with two accounts each, as records.
func bookSetup(ledger string) []eventstore.Record {
	return records(ledger, 1,
		domain.AssetDefined{Code: "USD", Scale: 2}, domain.AssetDefined{Code: "EUR", Scale: 2},
		domain.AccountOpened{ID: "a", Asset: "USD", Normal: domain.SideDebit},
		domain.AccountOpened{ID: "b", Asset: "USD", Normal: domain.SideCredit},
		domain.AccountOpened{ID: "c", Asset: "EUR", Normal: domain.SideDebit},
		domain.AccountOpened{ID: "d", Asset: "EUR", Normal: domain.SideCredit})
}

func migratedPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(t.Context(), pool))
	testenv.NoError(t, projections.Migrate(t.Context(), pool))
	return pool
}

// applyBatch applies recs through Balances.Apply in one transaction.
func applyBatch(ctx context.Context, pool *pgxpool.Pool, ledger string, recs []eventstore.Record) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return projections.Balances{}.Apply(ctx, tx, ledger, recs) })
}

// applyMovements applies recs through proj.Apply in one transaction.
func applyMovements(ctx context.Context, pool *pgxpool.Pool, proj *projections.Movements, ledger string,
	recs []eventstore.Record) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return proj.Apply(ctx, tx, ledger, recs) })
}

// TestBalancesRefusesUnbalancedBatch: a batch that leaves a line of the
// trial balance it touches (by a movement or by an account count) with
// debits other than credits, posted or pending, is refused with
// ErrUnbalanced naming each such asset and only those. Every posting moves
// its asset's debits and credits alike, so only a corrupt read model makes
// a batch unbalanced; a posting whose asset is not its accounts' is the
// movements projector's to refuse (TestMovementsRefusesAMovementOffItsAccount).
func TestBalancesRefusesUnbalancedBatch(t *testing.T) {
	t.Parallel()
	transfer := func(id string, postings ...domain.Posting) domain.TransferCommitted {
		return domain.TransferCommitted{ID: id, EffectiveAt: time.Now().UTC(), Postings: postings}
	}
	usdAB := domain.Posting{Debit: "a", Credit: "b", Asset: "USD", Amount: usd(100)}
	eurCD := domain.Posting{Debit: "c", Credit: "d", Asset: "EUR", Amount: usd(7)}
	const (
		usdOff = `UPDATE trial_balances SET debits_posted = debits_posted + 0.01 WHERE ledger = $1 AND asset = 'USD'`
		eurOff = `UPDATE trial_balances SET credits_pending = credits_pending + 1 WHERE ledger = $1 AND asset = 'EUR'`
	)
	for _, tc := range []struct {
		name    string
		corrupt []string // SQL run on the ledger ($1) before the batch
		batch   domain.Event
		bad     []string // assets the error must name
		good    []string // assets it must not
	}{
		{"trial balance off by a cent", []string{usdOff}, transfer("t", usdAB), []string{"USD"}, []string{"EUR"}},
		{"pending off", []string{eurOff}, domain.TransferPending{ID: "h", EffectiveAt: time.Now().UTC(),
			Postings: []domain.Posting{{Debit: "c", Credit: "d", Asset: "EUR", Amount: usd(5)}}}, []string{"EUR"}, []string{"USD"}},
		{"two assets off, one transfer moving both", []string{usdOff, eurOff}, transfer("t", usdAB, eurCD),
			[]string{"USD", "EUR"}, nil},
		{"an asset off, a transfer moving the other", []string{usdOff}, transfer("t", eurCD), nil, nil},
		{"an asset off, an account of it closed", []string{usdOff}, domain.AccountClosed{ID: "a"}, []string{"USD"}, []string{"EUR"}},
		{"control: a close", nil, domain.AccountClosed{ID: "a"}, nil, nil},
		{"control: a transfer in each asset", nil, transfer("t", usdAB, eurCD), nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := migratedPool(t)
			ledger := testenv.Name(t)
			testenv.NoError(t, applyBatch(t.Context(), pool, ledger, bookSetup(ledger)))
			for _, sql := range tc.corrupt {
				_, err := pool.Exec(t.Context(), sql, ledger)
				testenv.NoError(t, err)
			}
			err := applyBatch(t.Context(), pool, ledger, records(ledger, 7, tc.batch))
			if tc.bad == nil {
				// A control: a balanced batch passes (an asset off that
				// the batch does not touch is not checked).
				testenv.NoError(t, err)
				return
			}
			if !errors.Is(err, projections.ErrUnbalanced) {
				t.Fatalf("Apply: %v, want ErrUnbalanced", err)
			}
			for _, asset := range tc.bad {
				if !strings.Contains(err.Error(), "asset "+asset) {
					t.Errorf("error %q does not name asset %s", err, asset)
				}
			}
			for _, asset := range tc.good {
				if strings.Contains(err.Error(), "asset "+asset) {
					t.Errorf("error %q names asset %s, which balances", err, asset)
				}
			}
			// Nothing of the batch stayed.
			var n, closed int
			testenv.NoError(t, pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM trial_balance_history
				WHERE ledger = $1 AND position = 7), (SELECT count(*) FROM trial_accounts WHERE ledger = $1 AND closed)`,
				ledger).Scan(&n, &closed))
			if n != 0 || closed != 0 {
				t.Errorf("%d history rows and %d closed accounts of the refused batch", n, closed)
			}
		})
	}
}

// TestMovementsRefusesAMovementOffItsAccount: a posting (in a log that is
// not what the writer wrote) in another asset than its accounts', or at
// another scale, fails the movements projector's batch: the read model is
// corrupt, or the log. (The trial balance, summed per asset, cannot tell.)
func TestMovementsRefusesAMovementOffItsAccount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		posting domain.Posting
	}{
		{"a posting across assets", domain.Posting{Debit: "a", Credit: "d", Asset: "USD", Amount: usd(100)}},
		{"a posting of the account's asset at another scale", domain.Posting{Debit: "a", Credit: "b", Asset: "USD",
			Amount: domain.Amount{Units: domain.UnitsFromInt64(1000), Scale: 3}}},
		{"control: a posting between accounts of its asset", domain.Posting{Debit: "c", Credit: "d", Asset: "EUR", Amount: usd(100)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := migratedPool(t)
			ctx := t.Context()
			ledger := testenv.Name(t)
			testenv.NoError(t, applyMovements(ctx, pool, projections.NewMovements(), ledger, bookSetup(ledger)))
			err := applyMovements(ctx, pool, projections.NewMovements(), ledger, records(ledger, 7,
				domain.TransferCommitted{ID: "t", EffectiveAt: time.Now().UTC(), Postings: []domain.Posting{tc.posting}}))
			var lines int
			testenv.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM movement_lines WHERE ledger = $1`, ledger).Scan(&lines))
			if strings.HasPrefix(tc.name, "control") {
				testenv.NoError(t, err)
				if lines != 2 {
					t.Errorf("%d statement lines after a posting, want 2", lines)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "the read model is corrupt") {
				t.Fatalf("Apply: %v, want the read model corrupt", err)
			}
			if lines != 0 {
				t.Errorf("%d statement lines of the refused batch", lines)
			}
		})
	}
}

// logSource serves records held in memory, waiting for more at the end; it
// appends them to the log too, since a runner applies only the log's events.
type logSource struct {
	t      *testing.T
	store  *eventstore.Store
	mu     sync.Mutex
	recs   []eventstore.Record
	more   chan struct{}
	served map[uint64]int // batches served from each position
}

// newLogSource serves recs, sealed into a hash chain as a writer would and
// appended to the log in pool.
func newLogSource(t *testing.T, pool *pgxpool.Pool, recs []eventstore.Record) *logSource {
	s := &logSource{t: t, store: eventstore.New(pool), more: make(chan struct{}), served: map[uint64]int{}}
	s.append(recs...)
	return s
}

func (s *logSource) append(recs ...eventstore.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var head eventstore.Hash
	if n := len(s.recs); n > 0 {
		head = s.recs[n-1].Hash
	}
	prev, from := head, len(s.recs)
	for _, rec := range recs {
		rec.Seal(prev)
		s.recs, prev = append(s.recs, rec), rec.Hash
	}
	testenv.NoError(s.t, s.store.Append(s.t.Context(), s.recs[0].Ledger, uint64(from), head, s.recs[from:]))
	close(s.more)
	s.more = make(chan struct{})
}

func (s *logSource) servedFrom(pos uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served[pos]
}

func (s *logSource) Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	for {
		s.mu.Lock()
		more := s.more
		if int(from) <= len(s.recs) {
			s.served[from]++
			out := slices.Clone(s.recs[from-1 : min(int(from)-1+max, len(s.recs))])
			s.mu.Unlock()
			return out, nil
		}
		s.mu.Unlock()
		select {
		case <-more:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func TestUnbalancedBatchHoldsTheCheckpoint(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t)
	e := &env{t: t, pool: pool, ledger: testenv.Name(t)}
	src := newLogSource(t, pool, bookSetup(e.ledger))
	runner := e.startRunner(t.Context(), projections.Balances{}, src)
	waitFor(t, runner, 6)

	_, err := pool.Exec(t.Context(), `UPDATE trial_balances SET credits_posted = credits_posted - 0.01
		WHERE ledger = $1 AND asset = 'USD'`, e.ledger)
	testenv.NoError(t, err)
	src.append(records(e.ledger, 7, domain.TransferCommitted{ID: "t", EffectiveAt: time.Now().UTC(),
		Postings: []domain.Posting{{Debit: "a", Credit: "b", Asset: "USD", Amount: usd(100)}}})...)
	testenv.Eventually(t, waitMax, func() error {
		if n := src.servedFrom(7); n < 2 {
			return fmt.Errorf("batch at 7 served %d times, want 2: refused and retried", n)
		}
		return nil
	})
	if got := e.checkpointOf(projections.Balances{}, e.ledger); got != 6 {
		t.Fatalf("checkpoint %d after a refused batch, want 6", got)
	}

	_, err = pool.Exec(t.Context(), `UPDATE trial_balances SET credits_posted = credits_posted + 0.01
		WHERE ledger = $1 AND asset = 'USD'`, e.ledger)
	testenv.NoError(t, err)
	waitFor(t, runner, 7)
	checkBooksBalance(t, "after the repair", e.trialBalances())
}

// TestTrialBalanceMigrationBackfills: migration 0004 fills the trial balance
// and the closed accounts of a read model projected before it, as of its
// checkpoint; the later migrations (0021) keep them; the projector goes on
// from there, and as-of answers hold on both sides of the backfill.
func TestTrialBalanceMigrationBackfills(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newMixedWorkload(7)
	head := e.runMixedWorkload(w, true, 300)
	first := e.startRunner(t.Context(), projections.Balances{}, e.natsSource())
	waitFor(t, first, head)
	first.stop()
	want := e.trialBalances()
	closedBefore := e.closedAccounts("trial_accounts")
	if len(closedBefore) == 0 {
		t.Fatal("the workload closed no account")
	}

	t.Log("back to the read model as projected before migration 0004 (so before 0021 too)")
	e.backBeforeBalancesFromLines()
	for _, sql := range []string{
		`DROP TABLE trial_balance_history`, `DROP TABLE trial_balances`, `ALTER TABLE balances DROP COLUMN closed`,
		`UPDATE projection_checkpoints SET version = 1 WHERE projection = 'balances'`,
		`DELETE FROM schema_migrations WHERE component = 'projections' AND name LIKE '%0004_trial_balance.sql'`,
	} {
		_, err := e.pool.Exec(t.Context(), sql)
		testenv.NoError(t, err)
	}
	testenv.NoError(t, projections.MigrateThrough(t.Context(), e.pool, 4))
	if diff := cmp.Diff(want, e.trialBalances()); diff != "" {
		t.Errorf("backfilled trial balance (-projected +backfilled):\n%s", diff)
	}
	if diff := cmp.Diff(closedBefore, e.closedAccounts("balances")); diff != "" {
		t.Errorf("backfilled closed accounts (-projected +backfilled):\n%s", diff)
	}
	// 0004 brings the checkpoint to version 2 (0015, applied already in
	// this database, is not applied again).
	if v := e.versionOf(projections.Balances{}, e.ledger); v != 2 {
		t.Errorf("checkpoint version %d after migration 0004, want 2", v)
	}
	if ends := e.historyPositions(); !slices.Equal(ends, []uint64{head}) {
		t.Errorf("history at %v after the backfill, want at %d only", ends, head)
	}

	t.Log("the later migrations keep the backfill")
	testenv.NoError(t, projections.Migrate(t.Context(), e.pool))
	if diff := cmp.Diff(want, e.trialBalances()); diff != "" {
		t.Errorf("trial balance after every migration (-projected +migrated):\n%s", diff)
	}
	if diff := cmp.Diff(closedBefore, e.closedAccounts("trial_accounts")); diff != "" {
		t.Errorf("closed accounts after every migration (-projected +migrated):\n%s", diff)
	}
	if v, want := e.versionOf(projections.Balances{}, e.ledger), (projections.Balances{}).Version(); v != want {
		t.Errorf("checkpoint version %d after every migration, want %d", v, want)
	}

	t.Log("the projector goes on from the backfill; as-of answers hold on both sides of it")
	second := e.startRunner(t.Context(), projections.Balances{}, &randomBatches{src: e.natsSource(), sizeMax: 30,
		rng: rand.New(rand.NewPCG(8, 8))})
	lines := e.startRunner(t.Context(), projections.NewMovements(), e.natsSource())
	head2 := e.runMixedWorkload(w, false, 200)
	waitFor(t, second, head2)
	waitFor(t, lines, head2)
	tb := e.trialBalances()
	checkBooksBalance(t, "after the backfill", tb)
	if diff := cmp.Diff(e.balanceSums(), tb); diff != "" {
		t.Errorf("trial_balances differ from Σ balances per asset (-Σ balances +trial_balances):\n%s", diff)
	}
	e.checkTrialAccounts(head2)
	// Before the backfill point, history is one batch 1..head: within
	// FoldMax here, so answered by folding the log from 1.
	e.checkAsOf(asOfPositions(rand.New(rand.NewPCG(9, 9)), head2, e.historyPositions(), 60))
}

// closedAccounts lists the ledger's closed accounts in table: trial_accounts,
// or balances before migration 0021.
func (e *env) closedAccounts(table string) []string {
	e.t.Helper()
	rows, err := e.pool.Query(e.t.Context(), `SELECT account FROM `+pgx.Identifier{table}.Sanitize()+`
		WHERE ledger = $1 AND closed ORDER BY account`, e.ledger)
	testenv.NoError(e.t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.NoError(e.t, err)
	return ids
}

// trialAccount is an account as the trial balance counts it.
type trialAccount struct {
	Asset, Normal string
	Scale         int16
	Closed        bool
	// Position is the account's opening's, or its closing's.
	Position uint64
}

// checkTrialAccounts checks the ledger's trial_accounts against a replay of
// the log up to pos: every account opened, with its asset, scale and side,
// closed or not, at its opening's or closing's position.
func (e *env) checkTrialAccounts(pos uint64) {
	t := e.t
	t.Helper()
	r := newReplayer(e)
	r.advance(pos)
	want := map[string]trialAccount{}
	for _, id := range r.accounts {
		a, _ := r.st.Account(id)
		ta := trialAccount{Asset: a.Asset, Normal: a.Normal.String(), Scale: int16(a.Scale), Closed: a.Closed, Position: a.Position}
		if a.Closed {
			ta.Position = a.ClosedAt()
		}
		want[id] = ta
	}
	rows, err := e.pool.Query(t.Context(), `SELECT account, asset, normal_balance, scale, closed, position
		FROM trial_accounts WHERE ledger = $1`, e.ledger)
	testenv.NoError(t, err)
	got := map[string]trialAccount{}
	var (
		id string
		ta trialAccount
		p  int64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &ta.Asset, &ta.Normal, &ta.Scale, &ta.Closed, &p}, func() error {
		ta.Position = uint64(p)
		got[id] = ta
		return nil
	})
	testenv.NoError(t, err)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("trial_accounts at %d differ from the replay (-replay +read model):\n%s", pos, diff)
	}
}

// TestMissingRowsFailTheBatch: the projectors update their rows by key; a
// row the read model lacks must fail the batch, not be created from the
// delta nor skipped: an account's statement head (movements), its row of the
// accounts table (movements), an asset's trial balance line and an
// account's trial_accounts row (balances), a hold (transfers).
func TestMissingRowsFailTheBatch(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t)
	ctx := t.Context()
	ledger := testenv.Name(t)
	transfer := domain.TransferCommitted{ID: "t", EffectiveAt: time.Now().UTC(),
		Postings: []domain.Posting{{Debit: "a", Credit: "b", Asset: "USD", Amount: usd(100)}}}
	count := func(sql string) int {
		t.Helper()
		var n int
		testenv.NoError(t, pool.QueryRow(ctx, sql, ledger).Scan(&n))
		return n
	}

	// The movements read model. Each batch is applied by a new projector,
	// as by a new process: one that applied the setup holds the heads in
	// memory and does not read them again (the cache).
	testenv.NoError(t, applyMovements(ctx, pool, projections.NewMovements(), ledger, bookSetup(ledger)))
	_, err := pool.Exec(ctx, `DELETE FROM movement_heads WHERE ledger = $1 AND account = 'b'`, ledger)
	testenv.NoError(t, err)
	err = applyMovements(ctx, pool, projections.NewMovements(), ledger, records(ledger, 7, transfer))
	if err == nil || !strings.Contains(err.Error(), "loaded 1 of 2 movement heads: the read model is missing accounts") {
		t.Fatalf("Apply with b's movement head missing: %v", err)
	}
	// By the ledger's number: the view would not show a line of the
	// deleted head.
	if n := count(`SELECT count(*) FROM movements WHERE ledger_no = (SELECT ledger_no FROM movement_ledgers WHERE ledger = $1)`); n != 0 {
		t.Errorf("after the failed batch: %d statement lines, want 0", n)
	}
	_, err = pool.Exec(ctx, `DELETE FROM accounts WHERE ledger = $1 AND account = 'c'`, ledger)
	testenv.NoError(t, err)
	for _, ev := range []domain.Event{
		domain.AccountMetadataSet{ID: "c", Metadata: map[string]string{"k": "v"}},
		domain.AccountClosed{ID: "c"},
	} {
		err = applyMovements(ctx, pool, projections.NewMovements(), ledger, records(ledger, 7, ev))
		if err == nil || !strings.Contains(err.Error(), "0 of 1 accounts: the read model is missing") {
			t.Fatalf("Apply of %s with c's accounts row missing: %v", ev.EventType(), err)
		}
	}
	if n := count(`SELECT count(*) FROM accounts WHERE ledger = $1 AND (account = 'c' OR closed OR metadata <> '{}')`); n != 0 {
		t.Errorf("after the failed batches: %d accounts rows of c, closed or with metadata, want 0", n)
	}

	// The trial balance: a line and an account missing.
	testenv.NoError(t, applyBatch(ctx, pool, ledger, bookSetup(ledger)))
	_, err = pool.Exec(ctx, `DELETE FROM trial_balances WHERE ledger = $1 AND asset = 'USD'`, ledger)
	testenv.NoError(t, err)
	err = applyBatch(ctx, pool, ledger, records(ledger, 7, transfer))
	if err == nil || !strings.Contains(err.Error(), "asset USD has no trial balance line: the read model is missing it") {
		t.Fatalf("Apply with USD's trial balance line missing: %v", err)
	}
	if n := count(`SELECT count(*) FROM trial_balances WHERE ledger = $1 AND asset = 'USD'`) +
		count(`SELECT count(*) FROM trial_balance_history WHERE ledger = $1 AND position = 7`); n != 0 {
		t.Errorf("after the failed batch: %d USD lines and history rows at 7, want 0", n)
	}
	_, err = pool.Exec(ctx, `DELETE FROM trial_accounts WHERE ledger = $1 AND account = 'c'`, ledger)
	testenv.NoError(t, err)
	err = applyBatch(ctx, pool, ledger, records(ledger, 7, domain.AccountClosed{ID: "c"}))
	if err == nil || !strings.Contains(err.Error(), "closed 0 of 1 accounts: the read model is missing open accounts") {
		t.Fatalf("Apply of a close with c's trial_accounts row missing: %v", err)
	}
	if n := count(`SELECT accounts_closed FROM trial_balances WHERE ledger = $1 AND asset = 'EUR'`) +
		count(`SELECT count(*) FROM trial_accounts WHERE ledger = $1 AND closed`); n != 0 {
		t.Errorf("after the failed batch: %d accounts counted or marked closed, want 0", n)
	}

	// The transfers read model: a void of a hold whose row is gone (the
	// fold's load finds it missing first; the update would too).
	hold := domain.TransferPending{ID: "h", EffectiveAt: time.Now().UTC(),
		Postings: []domain.Posting{{Debit: "c", Credit: "d", Asset: "EUR", Amount: usd(5)}}}
	apply := func(recs []eventstore.Record) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return projections.Transfers{}.Apply(ctx, tx, ledger, recs) })
	}
	testenv.NoError(t, apply(records(ledger, 7, hold)))
	_, err = pool.Exec(ctx, `DELETE FROM transfers WHERE ledger_no = (SELECT ledger_no FROM transfer_ledgers WHERE ledger = $1) AND id = 'h'`, ledger)
	testenv.NoError(t, err)
	err = apply(records(ledger, 8, domain.PendingVoided{ID: "v", PendingID: "h", Postings: hold.Postings}))
	if err == nil {
		t.Fatal("a post of a hold missing from the read model applied")
	}
	if n := count(`SELECT count(*) FROM transfer_rows WHERE ledger = $1`); n != 0 {
		t.Errorf("after the failed batch: %d transfer rows, want 0", n)
	}
}
