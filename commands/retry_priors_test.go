package commands_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestRetriedReversalReadsTheLogAgain: a ReverseTransfer decided inside an
// atomic request that rolled back read, at position p, a transfer that was
// never written. Once p holds another transfer with the same id, the same
// ReverseTransfer value submitted again reverses the recorded transfer, not
// the one it read before (the events a decision reads hold for it alone).
func TestRetriedReversalReadsTheLogAgain(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	w, _ := startWriter(t, ledger, store)
	const accounts = 4
	setup(t, w, accounts)

	orig := transferCmd("t", 0, 1, "5.00")
	rev := &domain.ReverseTransfer{ID: "r", TransferID: "t"}
	bad := transferCmd("bad", 0, 99, "1.00") // a99 does not exist
	res, err := w.SubmitWith(t.Context(), []domain.Command{orig, rev, bad}, commandsAtomic())
	testenv.NoError(t, err)
	if !errors.Is(res[2].Err, domain.ErrAccountNotFound) {
		t.Fatalf("bad item: %v, want ACCOUNT_NOT_FOUND", res[2].Err)
	}
	// The client fixes its transfer t (another body) and sends it alone.
	fixed := transferCmd("t", 2, 3, "1.00")
	res = submit(t, w, fixed)
	mustCreate(t, res)
	tPos := res[0].Position
	// Then it retries the reversal it had built.
	res = submit(t, w, rev)
	mustCreate(t, res)
	rec := reversalAt(t, store, ledger, res[0].Position)
	p := rec.Postings[0]
	if p.Debit != "a3" || p.Credit != "a2" || p.Amount.String() != "1.00" || rec.TransferPosition != tPos {
		t.Errorf("reversal of t (a2->a3 1.00 at %d) recorded as %s->%s %s of the transfer at %d: it reverses a transfer never written",
			tPos, p.Debit, p.Credit, p.Amount, rec.TransferPosition)
	}
	recorded := []domain.Posting{{Debit: "a2", Credit: "a3", Asset: "USD", Amount: domain.Amount{Units: domain.UnitsFromInt64(100), Scale: 2}}}
	if _, err := domain.CheckReversal(recorded, nil, rec.Postings); err != nil {
		t.Errorf("the reversal appended fails the domain's own rule against the transfer at %d (what the transfers projector and the auditor check): %v", tPos, err)
	}
	matchesReplay(t, w, store, ledger, accounts)
}

// TestRetriedTransferComparesWithWhatIsRecorded: a CreateTransfer that
// answered EXISTS inside a rolled-back atomic request (against an event never
// written), submitted again once another body took the id, answers
// EXISTS_WITH_DIFFERENT_FIELDS: it is compared with what is recorded.
func TestRetriedTransferComparesWithWhatIsRecorded(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	w, _ := startWriter(t, ledger, store)
	setup(t, w, 4)

	a := transferCmd("x", 0, 1, "1.00")
	b := transferCmd("x", 0, 1, "1.00") // the same transfer twice: EXISTS within the request
	bad := transferCmd("bad", 0, 99, "1.00")
	_, err := w.SubmitWith(t.Context(), []domain.Command{a, b, bad}, commandsAtomic())
	testenv.NoError(t, err)
	other := transferCmd("x", 0, 1, "2.00")
	mustCreate(t, submit(t, w, other))
	res := submit(t, w, b)
	if !errors.Is(res[0].Err, domain.ErrExistsWithDifferentFields) {
		t.Errorf("x (1.00) resubmitted after x was recorded with 2.00: %v at %d, want EXISTS_WITH_DIFFERENT_FIELDS", res[0].Err, res[0].Position)
	}
}

func commandsAtomic() commands.SubmitOptions { return commands.SubmitOptions{Atomic: true} }

// TestRetriedReversalAfterAFailedAppend: the same through a failed append
// (ErrUnavailable, after which retrying with the same ids is safe): the
// reversal submitted again as the same value reverses the transfer recorded
// at the position since, not that of the batch never written.
func TestRetriedReversalAfterAFailedAppend(t *testing.T) {
	t.Parallel()
	store := &failingStore{Store: newStore(t)}
	ledger := testenv.Name(t)
	w, _ := startWriter(t, ledger, store)
	const accounts = 4
	setup(t, w, accounts)
	orig := transferCmd("t", 0, 1, "5.00")
	rev := &domain.ReverseTransfer{ID: "r", TransferID: "t"}
	store.failNext.Store(1)
	if _, err := w.Submit(t.Context(), []domain.Command{orig, rev}); !errors.Is(err, commands.ErrUnavailable) {
		t.Fatalf("submit with a failing append: %v, want ErrUnavailable", err)
	}
	res := submitRetrying(t, w, transferCmd("t", 2, 3, "1.00"))
	mustCreate(t, res)
	tPos := res[0].Position
	res = submitRetrying(t, w, rev)
	mustCreate(t, res)
	p := reversalAt(t, store.Store, ledger, res[0].Position).Postings[0]
	if p.Debit != "a3" || p.Credit != "a2" || p.Amount.String() != "1.00" {
		t.Errorf("reversal of t (a2->a3 1.00 at %d) recorded as %s->%s %s", tPos, p.Debit, p.Credit, p.Amount)
	}
	live, _ := liveSnapshot(t, w, accounts)
	if live["a0"] != [2]string{"0", "0"} {
		t.Errorf("a0 (debits, credits) = %v: it was credited by the reversal of a transfer never written", live["a0"])
	}
}

// TestAccountMetadataIsNotTheCallersMap: an event owns its metadata: a
// caller that reuses its map after Submit does not change the writer's state
// (what before-commit rules select accounts by, what a retried open is
// compared with, what a snapshot persists), which stays a replay of the log.
func TestAccountMetadataIsNotTheCallersMap(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	w, _ := startWriter(t, ledger, store)
	mustCreate(t, submit(t, w, &domain.DefineAsset{Code: "USD", Scale: 2}))
	md := map[string]string{"tier": "gold"}
	open := &domain.OpenAccount{ID: "acc", Asset: "USD", Normal: domain.SideCredit, Metadata: md}
	mustCreate(t, submit(t, w, open))
	md["tier"] = "bronze" // the caller reuses its map for its next account
	var live string
	testenv.NoError(t, w.Read(t.Context(), func(s *domain.State) {
		a, _ := s.Account("acc")
		live = a.Metadata()["tier"]
	}))
	if live != "gold" {
		t.Errorf("the writer's account acc has tier %q after the caller changed its map; the log (a replay) says gold", live)
	}
	retry := &domain.OpenAccount{ID: "acc", Asset: "USD", Normal: domain.SideCredit, Metadata: map[string]string{"tier": "gold"}}
	res := submit(t, w, retry)
	if !errors.Is(res[0].Err, domain.ErrExists) {
		t.Errorf("retry of the open as recorded (tier gold): %v, want EXISTS", res[0].Err)
	}
}

// TestPartialReversalPassesOverAFrozenAccountItDoesNotMove: a reversal of
// posting 0 only (amounts ["1.00", "0"]) is not refused ACCOUNT_FROZEN for
// the account of posting 1, which it does not move, as a post of a hold
// checks a freeze only on the postings that move money.
func TestPartialReversalPassesOverAFrozenAccountItDoesNotMove(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	w, _ := startWriter(t, ledger, store)
	setup(t, w, 4)
	two := &domain.CreateTransfer{ID: "two", Postings: []domain.PostingInput{
		{Debit: "a0", Credit: "a1", Asset: "USD", Amount: "1.00"},
		{Debit: "a2", Credit: "a3", Asset: "USD", Amount: "1.00"}}}
	mustCreate(t, submit(t, w, two))
	mustCreate(t, submit(t, w, &domain.FreezeAccount{AccountID: "a3"}))
	res := submit(t, w, &domain.ReverseTransfer{ID: "rev", TransferID: "two", Amounts: []string{"1.00", "0"}})
	if res[0].Err != nil {
		t.Errorf("reversal of posting 0 only (a1->a0): %v (field %s), want CREATED: a3 is frozen but not moved", res[0].Err, domain.FieldOf(res[0].Err))
	}
}

// reversalAt reads the TransferReversed at pos in ledger's log.
func reversalAt(t *testing.T, store *eventstore.Store, ledger string, pos uint64) domain.TransferReversed {
	t.Helper()
	for _, r := range readLog(t, store, ledger) {
		if r.Position == pos {
			e, err := domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload)
			testenv.NoError(t, err)
			return e.(domain.TransferReversed)
		}
	}
	t.Fatalf("no event at %d", pos)
	return domain.TransferReversed{}
}

// submitRetrying submits cmds as a client does after ErrUnavailable: again,
// the same values, until the writer (reloading from the log after a failed
// append) takes them, for 10 s at most.
func submitRetrying(t *testing.T, w *commands.Writer, cmds ...domain.Command) []commands.Result {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := w.Submit(t.Context(), cmds)
		if errors.Is(err, commands.ErrUnavailable) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		testenv.NoError(t, err)
		return res
	}
}
