package daemon_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
)

// End-to-end tests of GetTrialBalance, GetProjectionStatus and the projection
// lag gauges on /metrics, on a real ledgerd.

// tbLine is a trial balance line without its asset.
type tbLine struct {
	DebitsPosted, CreditsPosted, DebitsPending, CreditsPending string
	Accounts, AccountsClosed                                   uint64
}

func tbLinesOf(lines []*ledgerv1.TrialBalanceLine) map[string]tbLine {
	out := make(map[string]tbLine, len(lines))
	for _, l := range lines {
		out[l.GetAsset()] = tbLine{l.GetDebitsPosted(), l.GetCreditsPosted(), l.GetDebitsPending(), l.GetCreditsPending(),
			l.GetAccounts(), l.GetAccountsClosed()}
	}
	return out
}

// tbWorkload drives a ledger through gRPC with transfers, holds, posts (in
// full and in part), voids, reversals (in full and in part) and closes, in
// USD and EUR (scale 2). Items may be refused; the log holds what was not.
type tbWorkload struct {
	h        *harness
	ledger   string
	rng      *rand.Rand
	n        int
	accounts map[string][]string // open accounts by asset
	spares   [][2]string         // closable account and asset
	holds    []tbTransfer
	posted   []tbTransfer
}

// tbTransfer is a hold or a posted transfer and the cents per posting it
// still holds or may still reverse.
type tbTransfer struct {
	id   string
	left []int64
}

func newTBWorkload(t *testing.T, h *harness, ledger string, seed uint64) *tbWorkload {
	t.Helper()
	h.setup(t, ledger) // USD alice, bob, carol (min 0); EUR eve:eur
	w := &tbWorkload{h: h, ledger: ledger, rng: rand.New(rand.NewPCG(seed, seed)), accounts: map[string][]string{
		"USD": {"alice", "bob", "carol"}, "EUR": {"eve:eur"}}}
	var open []*ledgerv1.Account
	for _, asset := range []string{"USD", "EUR"} {
		for i := range 6 {
			id := fmt.Sprintf("%s-%d", strings.ToLower(asset), i)
			if i >= 4 {
				w.spares = append(w.spares, [2]string{id, asset})
			}
			w.accounts[asset] = append(w.accounts[asset], id)
			open = append(open, &ledgerv1.Account{Id: id, Asset: asset, NormalBalance: ledgerv1.NormalBalance(1 + i%2)})
		}
	}
	mustCreated(t, h.open(t, ledger, open...)...)
	return w
}

func cents2(c int64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }

func (w *tbWorkload) id(kind string) string {
	w.n++
	return fmt.Sprintf("%s-%d", kind, w.n)
}

// newTransfer returns a transfer of 1..3 postings and its cents per posting.
func (w *tbWorkload) newTransfer(pending bool) (*ledgerv1.Transfer, []int64) {
	tr := &ledgerv1.Transfer{Pending: pending}
	var cents []int64
	for range 1 + w.rng.IntN(3) {
		asset := []string{"USD", "EUR"}[w.rng.IntN(2)]
		ids := w.accounts[asset]
		from := w.rng.IntN(len(ids))
		to := (from + 1 + w.rng.IntN(len(ids)-1)) % len(ids)
		c := 1 + w.rng.Int64N(100_000)
		cents = append(cents, c)
		tr.Postings = append(tr.Postings, posting(ids[from], ids[to], cents2(c), asset))
	}
	if pending {
		tr.Id = w.id("hold")
	} else {
		tr.Id = w.id("t")
	}
	return tr, cents
}

// part takes some of each posting's cents left (all of it when full), at
// least one cent in all when anything is left.
func (w *tbWorkload) part(t *tbTransfer, full bool) []string {
	out := make([]string, len(t.left))
	some := false
	for i, left := range t.left {
		took := left
		if !full && left > 0 {
			took = w.rng.Int64N(left + 1)
		}
		if !some && i == len(t.left)-1 && took == 0 {
			took = left
		}
		some = some || took > 0
		t.left[i] -= took
		out[i] = cents2(took)
	}
	return out
}

func tbTake(rng *rand.Rand, list *[]tbTransfer) (tbTransfer, bool) {
	if len(*list) == 0 {
		return tbTransfer{}, false
	}
	i := rng.IntN(len(*list))
	v := (*list)[i]
	*list = slices.Delete(*list, i, i+1)
	return v, true
}

// step sends one random request.
func (w *tbWorkload) step(t *testing.T) {
	t.Helper()
	h, ledger := w.h, w.ledger
	switch r := w.rng.IntN(100); {
	case r < 45:
		var ts []*ledgerv1.Transfer
		for range 1 + w.rng.IntN(5) {
			pending := w.rng.IntN(3) == 0
			tr, cents := w.newTransfer(pending)
			ts = append(ts, tr)
			if pending {
				w.holds = append(w.holds, tbTransfer{id: tr.Id, left: cents})
			} else {
				w.posted = append(w.posted, tbTransfer{id: tr.Id, left: cents})
			}
		}
		h.transfers(t, ledger, ts...)
	case r < 63:
		hold, ok := tbTake(w.rng, &w.holds)
		if !ok {
			return
		}
		post := &ledgerv1.PostPending{Id: w.id("post"), PendingId: hold.id}
		posted := tbTransfer{id: post.Id, left: slices.Clone(hold.left)}
		if w.rng.IntN(2) == 0 {
			post.Amounts = w.part(&hold, false)
			for i := range posted.left {
				posted.left[i] -= hold.left[i] // what was posted
			}
		}
		h.post(t, ledger, post)
		w.posted = append(w.posted, posted)
	case r < 73:
		hold, ok := tbTake(w.rng, &w.holds)
		if !ok {
			return
		}
		h.void(t, ledger, &ledgerv1.VoidPending{Id: w.id("void"), PendingId: hold.id})
	case r < 93:
		tr, ok := tbTake(w.rng, &w.posted)
		if !ok {
			return
		}
		amounts := w.part(&tr, w.rng.IntN(3) == 0)
		if slices.ContainsFunc(tr.left, func(c int64) bool { return c > 0 }) {
			w.posted = append(w.posted, tr)
		}
		h.reverse(t, ledger, &ledgerv1.Reversal{Id: w.id("rev"), TransferId: tr.id, Amounts: amounts})
	default:
		if len(w.spares) == 0 {
			return
		}
		s := w.spares[0]
		w.spares = w.spares[1:]
		w.accounts[s[1]] = slices.DeleteFunc(w.accounts[s[1]], func(id string) bool { return id == s[0] })
		h.closeAccounts(t, ledger, s[0]) // refused while it holds: unused from now on either way
	}
}

// tbLog reads the ledger's whole log (a test's ledger is small).
func (h *harness) tbLog(t *testing.T, ledger string) []struct {
	pos uint64
	e   domain.Event
} {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx(t), `SELECT position, type, schema_version, payload FROM events
		WHERE ledger = $1 ORDER BY position`, ledger)
	testenv.NoError(t, err)
	var out []struct {
		pos uint64
		e   domain.Event
	}
	var (
		pos     int64
		typ     string
		version int16
		payload []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&pos, &typ, &version, &payload}, func() error {
		e, err := domain.UnmarshalEvent(typ, int(version), payload)
		if err != nil {
			return err
		}
		out = append(out, struct {
			pos uint64
			e   domain.Event
		}{uint64(pos), e})
		return nil
	})
	testenv.NoError(t, err)
	return out
}

// tbReplay returns the trial balance at each of positions (ascending) by
// replaying the log into a domain state and summing its accounts per asset.
func (h *harness) tbReplay(t *testing.T, ledger string, positions []uint64) map[uint64]map[string]tbLine {
	t.Helper()
	st := domain.NewState()
	scales := map[string]uint8{}
	var ids []string
	out := map[uint64]map[string]tbLine{}
	log := h.tbLog(t, ledger)
	i := 0
	for _, p := range positions {
		for ; i < len(log) && log[i].pos <= p; i++ {
			st.Evolve(log[i].pos, log[i].e)
			switch e := log[i].e.(type) {
			case domain.AssetDefined:
				scales[e.Code] = e.Scale
			case domain.AccountOpened:
				ids = append(ids, e.ID)
			}
		}
		type sums struct {
			dp, cp, dq, cq domain.Units
			open, closed   uint64
		}
		by := map[string]*sums{}
		for code := range scales {
			by[code] = &sums{}
		}
		for _, id := range ids {
			a, _ := st.Account(id)
			s := by[a.Asset]
			s.dp, s.cp, s.dq, s.cq = s.dp.Add(a.DebitsPosted), s.cp.Add(a.CreditsPosted), s.dq.Add(a.DebitsPending), s.cq.Add(a.CreditsPending)
			if a.Closed {
				s.closed++
			} else {
				s.open++
			}
		}
		lines := map[string]tbLine{}
		for code, s := range by {
			sc := scales[code]
			lines[code] = tbLine{s.dp.Format(sc), s.cp.Format(sc), s.dq.Format(sc), s.cq.Format(sc), s.open, s.closed}
		}
		out[p] = lines
	}
	return out
}

// tbEventTypes counts the ledger's events by type.
func (h *harness) tbEventTypes(t *testing.T, ledger string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range h.tbLog(t, ledger) {
		out[r.e.EventType()]++
	}
	return out
}

func TestTrialBalanceEndToEnd(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	w := newTBWorkload(t, h, ledger, 11)
	for range 150 {
		w.step(t)
	}
	head := h.head(t, ledger)
	types := h.tbEventTypes(t, ledger)
	t.Logf("%d events: %v", head, types)
	for _, typ := range []string{domain.TypeTransferCommitted, domain.TypeTransferPending, domain.TypePendingPosted,
		domain.TypePendingVoided, domain.TypeTransferReversed, domain.TypeAccountClosed} {
		if types[typ] == 0 {
			t.Errorf("the workload wrote no %s event: %v", typ, types)
		}
	}

	resp, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: ledger, MinPosition: head})
	testenv.NoError(t, err)
	if resp.GetPosition() < head {
		t.Fatalf("trial balance at %d, asked for at least %d", resp.GetPosition(), head)
	}
	got := tbLinesOf(resp.GetLines())
	if len(got) != 2 {
		t.Errorf("lines %v, want USD and EUR", got)
	}
	for asset, l := range got {
		if l.DebitsPosted != l.CreditsPosted || l.DebitsPending != l.CreditsPending {
			t.Errorf("%s does not balance: %+v", asset, l)
		}
	}

	// Σ of every account's balances per asset, through GetBalances.
	var all []string
	for _, r := range h.tbLog(t, ledger) {
		if o, ok := r.e.(domain.AccountOpened); ok {
			all = append(all, o.ID)
		}
	}
	sums := map[string]*[4]int64{}
	for _, b := range h.balances(t, ledger, head, all...) {
		s := sums[b.GetAsset()]
		if s == nil {
			s = &[4]int64{}
			sums[b.GetAsset()] = s
		}
		for i, v := range []string{b.GetDebitsPosted(), b.GetCreditsPosted(), b.GetDebitsPending(), b.GetCreditsPending()} {
			s[i] += cents(t, v)
		}
	}
	for asset, s := range sums {
		l := got[asset]
		if want := [4]string{cents2(s[0]), cents2(s[1]), cents2(s[2]), cents2(s[3])}; want != [4]string{l.DebitsPosted,
			l.CreditsPosted, l.DebitsPending, l.CreditsPending} {
			t.Errorf("%s: trial balance %+v, Σ balances %v", asset, l, want)
		}
	}

	// As of random positions, and now, against a replay of the log.
	rng := rand.New(rand.NewPCG(12, 12))
	positions := []uint64{1, head}
	for range 25 {
		positions = append(positions, 1+rng.Uint64N(head))
	}
	slices.Sort(positions)
	positions = slices.Compact(positions)
	replay := h.tbReplay(t, ledger, positions)
	if diff := cmp.Diff(replay[head], got); diff != "" {
		t.Errorf("trial balance now differs from the replay (-replay +answer):\n%s", diff)
	}
	for _, p := range positions {
		resp, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: ledger, AsOfPosition: p})
		testenv.NoError(t, err)
		if resp.GetPosition() != p {
			t.Errorf("as of %d: answer at %d", p, resp.GetPosition())
		}
		if diff := cmp.Diff(replay[p], tbLinesOf(resp.GetLines())); diff != "" {
			t.Errorf("as of %d (-replay +answer):\n%s", p, diff)
		}
	}

	// Caught up: every projection's lag is 0, in the API and on /metrics.
	testenv.Eventually(t, 15*time.Second, func() error {
		st, err := h.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{Ledger: ledger})
		if err != nil {
			return err
		}
		var names []string
		for _, p := range st.GetProjections() {
			names = append(names, p.GetName())
			if p.GetLedger() != ledger || p.GetHead() != head || p.GetPosition() != head || p.GetLagPositions() != 0 ||
				p.GetLagSeconds() != 0 || p.GetUpdatedAt() == nil || p.GetVersion() < 1 {
				return fmt.Errorf("%s: %v, want caught up at %d", p.GetName(), p, head)
			}
		}
		if !slices.Contains(names, "balances") {
			return fmt.Errorf("projections %v, want balances among them", names)
		}
		return nil
	})
	testenv.Eventually(t, 15*time.Second, func() error {
		body := h.tbMetrics(t)
		for _, name := range []string{"ledger_projection_lag_positions", "ledger_projection_lag_seconds"} {
			if sample := fmt.Sprintf("%s{ledger=%q,projection=\"balances\"} 0\n", name, ledger); !strings.Contains(body, sample) {
				return fmt.Errorf("/metrics lacks %q", sample)
			}
		}
		return nil
	})
	every, err := h.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{})
	testenv.NoError(t, err)
	if !slices.ContainsFunc(every.GetProjections(), func(p *ledgerv1.ProjectionStatus) bool { return p.GetLedger() == ledger }) {
		t.Errorf("status of every ledger lacks %s: %v", ledger, every.GetProjections())
	}
}

func (h *harness) tbMetrics(t *testing.T) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), http.MethodGet, "http://"+h.m.HTTPAddr()+"/metrics", nil)
	testenv.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	testenv.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	testenv.NoError(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	return string(body)
}

func TestTrialBalanceAndStatusRefusals(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	head := h.head(t, ledger)
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"malformed ledger", func() error {
			_, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: "Bad Ledger"})
			return err
		}, "ledger"},
		{"unknown ledger", func() error {
			_, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: "nope-" + ledger[:20]})
			return err
		}, "ledger"},
		{"as of past the head", func() error {
			_, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: ledger, AsOfPosition: head + 1})
			return err
		}, "as_of_position"},
		{"status of a malformed ledger", func() error {
			_, err := h.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{Ledger: "Bad Ledger"})
			return err
		}, "ledger"},
		{"status of an unknown ledger", func() error {
			_, err := h.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{Ledger: "nope-" + ledger[:20]})
			return err
		}, "ledger"},
	} {
		err := tc.call()
		st, _ := status.FromError(err)
		if st.Code() != codes.InvalidArgument || fieldOf(st) != tc.field {
			t.Errorf("%s: %v (field %q), want InvalidArgument naming %q", tc.name, err, fieldOf(st), tc.field)
		}
	}
	// At the head exactly: answered, once the projection gets there.
	resp, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: ledger, AsOfPosition: head})
	testenv.NoError(t, err)
	if resp.GetPosition() != head || len(resp.GetLines()) != 2 {
		t.Errorf("as of the head %d: %v", head, resp)
	}
}
