package audit_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
)

// allEventTypes are the event types a workload must have produced for a
// clean verification to mean something.
var allEventTypes = []string{domain.TypeAssetDefined, domain.TypeAccountOpened, domain.TypeAccountBoundsChanged,
	domain.TypeAccountMetadataSet, domain.TypeAccountClosed, domain.TypeTransferCommitted, domain.TypeTransferPending,
	domain.TypePendingPosted, domain.TypePendingVoided, domain.TypePendingExpired, domain.TypeTransferReversed,
	domain.TypeAccountFrozen, domain.TypeAccountUnfrozen}

func (h *harness) eventTypes(t *testing.T, ledger string) []string {
	t.Helper()
	rows, err := h.pool.Query(ctx(t), `SELECT DISTINCT type FROM events WHERE ledger = $1 ORDER BY type`, ledger)
	testenv.NoError(t, err)
	var types []string
	for rows.Next() {
		var typ string
		testenv.NoError(t, rows.Scan(&typ))
		types = append(types, typ)
	}
	testenv.NoError(t, rows.Err())
	return types
}

func mustClean(t *testing.T, what string, rep *audit.Report) {
	t.Helper()
	if !rep.Clean() {
		t.Fatalf("%s: %s", what, rep.Divergence)
	}
}

func TestVerifyCleanAfterRandomWorkload(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	w := newWorkload(t, h, ledger, 1)
	w.run(250)
	w.expire(2)
	head := h.head(t, ledger)
	for _, typ := range allEventTypes {
		if !slices.Contains(h.eventTypes(t, ledger), typ) {
			t.Fatalf("the workload wrote no %s: the verification would not cover it", typ)
		}
	}

	var (
		mu     sync.Mutex
		phases = map[string]audit.Progress{}
	)
	rep := h.verify(t, ledger, audit.Options{Progress: func(p audit.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if last, ok := phases[p.Phase]; ok && p.Done < last.Done {
			t.Errorf("progress of %s went back from %d to %d", p.Phase, last.Done, p.Done)
		}
		phases[p.Phase] = p
	}})
	mustClean(t, "whole log", rep)
	if !rep.AccountsCompared {
		t.Errorf("whole log: accounts not compared (%q)", rep.Notes)
	}
	var frozen int
	testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT count(*) FROM accounts WHERE ledger = $1 AND frozen_position IS NOT NULL`,
		ledger).Scan(&frozen))
	if frozen == 0 {
		t.Error("no account frozen at the end: the accounts check compared no freeze")
	}
	if rep.Events != head || rep.From != 1 || rep.To != head || !rep.Replayed || rep.Accounts != 15 || rep.Assets != 3 ||
		rep.StatementLines == 0 || rep.Transfers == 0 || len(rep.LastHash) != 64 {
		t.Errorf("report %+v, want %d events from 1 to %d replayed, 15 accounts, 3 assets, statement lines, transfers",
			rep, head, head)
	}
	for _, phase := range []string{"log", "balances", "accounts", "trial balance", "statements", "transfers"} {
		if p := phases[phase]; p.Total == 0 || p.Done != p.Total {
			t.Errorf("progress of %s ended at %d of %d", phase, p.Done, p.Total)
		}
	}

	// The event store itself is a log too.
	rep, err := audit.Verify(ctx(t), h.storeLog(ledger), h.query, audit.Options{})
	testenv.NoError(t, err)
	mustClean(t, "store log", rep)

	// Up to a position: the projections compared as of it.
	rep = h.verify(t, ledger, audit.Options{To: head / 2})
	mustClean(t, "first half", rep)
	if rep.To != head/2 || !rep.Replayed {
		t.Errorf("first half: %+v", rep)
	}
	t.Logf("first half: %d transfers, notes %q", rep.Transfers, rep.Notes)

	// From a position: the chain only.
	rep = h.verify(t, ledger, audit.Options{From: head / 2})
	mustClean(t, "second half", rep)
	if rep.Replayed || rep.Events != head-head/2+1 || len(rep.Notes) == 0 {
		t.Errorf("second half: %+v, want the chain only, with a note", rep)
	}

	_, err = audit.Verify(ctx(t), h.serviceLog(ledger), h.query, audit.Options{To: head + 1})
	if !errors.Is(err, audit.ErrBeyondHead) {
		t.Errorf("verify past the head: %v, want ErrBeyondHead", err)
	}
}

// transferAt picks a random position holding an event of type typ.
func (h *harness) positionOf(t *testing.T, ledger, typ string, rng *rand.Rand) uint64 {
	t.Helper()
	rows, err := h.pool.Query(ctx(t), `SELECT position FROM events WHERE ledger = $1 AND type = $2 ORDER BY position`, ledger, typ)
	testenv.NoError(t, err)
	var positions []uint64
	for rows.Next() {
		var p int64
		testenv.NoError(t, rows.Scan(&p))
		positions = append(positions, uint64(p))
	}
	testenv.NoError(t, rows.Err())
	if len(positions) < 3 {
		t.Fatalf("%d %s events", len(positions), typ)
	}
	// Not the last: an edit there must not hide behind the end of the log.
	return positions[rng.IntN(len(positions)-1)]
}

func checkDivergence(t *testing.T, rep *audit.Report, want audit.Divergence) {
	t.Helper()
	d := rep.Divergence
	switch {
	case d == nil:
		t.Fatalf("verify is clean, want a %s divergence at %d", want.Kind, want.Position)
	case d.Kind != want.Kind || d.Position != want.Position || d.Account != want.Account || (want.Field != "" && d.Field != want.Field):
		t.Fatalf("divergence %s\nwant kind %s at %d, account %q, field %q", d, want.Kind, want.Position, want.Account, want.Field)
	}
	t.Logf("found: %s", d)
}

func TestVerifyCatchesAlteredPayload(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	rng := rand.New(rand.NewPCG(2, 2))
	newWorkload(t, h, ledger, 2).run(60)
	pos := h.positionOf(t, ledger, domain.TypeTransferCommitted, rng)

	// One digit of an amount, changed: still JSON, still an event.
	var payload []byte
	testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT payload::text FROM events WHERE ledger = $1 AND position = $2`,
		ledger, int64(pos)).Scan(&payload))
	at := bytes.Index(payload, []byte(`"amount":"`)) + len(`"amount":"`)
	payload[at] = '0' + (payload[at]-'0'+1)%10
	h.tamperLog(t, `UPDATE events SET payload = $3::json WHERE ledger = $1 AND position = $2`, ledger, int64(pos), string(payload))

	rep := h.verify(t, ledger, audit.Options{})
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindHash, Position: pos})
	if rep.To != pos-1 || rep.Events != pos-1 {
		t.Errorf("verified up to %d (%d events), want %d", rep.To, rep.Events, pos-1)
	}
	// Before it, the log is intact.
	mustClean(t, "before the altered event", h.verify(t, ledger, audit.Options{To: pos - 1}))
	// A replay through it refuses: it would mean nothing.
	_, err := audit.Replay(ctx(t), h.serviceLog(ledger), audit.At{Position: pos})
	var de *audit.DivergenceError
	if !errors.As(err, &de) || de.Divergence.Kind != audit.KindHash || de.Divergence.Position != pos {
		t.Errorf("replay through the altered event: %v, want a hash divergence at %d", err, pos)
	}
}

func TestVerifyCatchesDeletedEvent(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	rng := rand.New(rand.NewPCG(3, 3))
	newWorkload(t, h, ledger, 3).run(60)
	head := h.head(t, ledger)
	pos := 2 + rng.Uint64N(head-2)
	h.tamperLog(t, `DELETE FROM events WHERE ledger = $1 AND position = $2`, ledger, int64(pos))
	rep := h.verify(t, ledger, audit.Options{})
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindGap, Position: pos})

	// The head's own row, deleted: the log ends before its head.
	h.tamperLog(t, `DELETE FROM events WHERE ledger = $1 AND position = $2`, ledger, int64(head))
	rep = h.verify(t, ledger, audit.Options{From: pos + 1})
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindGap, Position: head})
}

func TestVerifyCatchesRelinkedEvent(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 4).run(30)
	head := h.head(t, ledger)
	pos := head / 2
	// A forger who re-seals the event with another prev_hash breaks the link.
	recs, err := h.storeLog(ledger).Store.Read(ctx(t), ledger, pos, 1)
	testenv.NoError(t, err)
	r := recs[0]
	r.Seal(r.Hash) // any other hash
	h.tamperLog(t, `UPDATE events SET prev_hash = $3, hash = $4 WHERE ledger = $1 AND position = $2`,
		ledger, int64(pos), r.PrevHash[:], r.Hash[:])
	checkDivergence(t, h.verify(t, ledger, audit.Options{}), audit.Divergence{Kind: audit.KindLink, Position: pos})
}

// lineOfHead joins a statement line m to its account's head h (projections
// 0023 keys the lines by the head's numbers).
const lineOfHead = `m.ledger_no = h.ledger_no AND m.account_no = h.opened_position`

// movementPositions are the positions of an account's statement lines.
func (h *harness) movementPositions(t *testing.T, ledger, account string) []uint64 {
	t.Helper()
	rows, err := h.pool.Query(ctx(t), `SELECT DISTINCT position FROM movement_lines WHERE ledger = $1 AND account = $2 ORDER BY position`,
		ledger, account)
	testenv.NoError(t, err)
	var out []uint64
	for rows.Next() {
		var p int64
		testenv.NoError(t, rows.Scan(&p))
		out = append(out, uint64(p))
	}
	testenv.NoError(t, rows.Err())
	return out
}

func TestVerifyCatchesEditedBalance(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 5).run(80)
	mustClean(t, "before the edit", h.verify(t, ledger, audit.Options{}))
	for _, account := range []string{"usd:1", "eur:3"} {
		moved := h.movementPositions(t, ledger, account)
		if len(moved) == 0 {
			t.Fatalf("%s never moved", account)
		}
		// An account's balance is its last statement line's totals (the
		// last of its position's lines: a transfer may move it twice).
		last := moved[len(moved)-1]
		lastLine := lineOfHead + ` AND m.position = $3 AND m.seq = (SELECT max(x.seq) FROM movements x
			WHERE x.ledger_no = m.ledger_no AND x.account_no = m.account_no AND x.position = m.position)`
		h.exec(t, `UPDATE movements m SET credits_posted = credits_posted + 1 FROM movement_heads h
			WHERE h.ledger = $1 AND h.account = $2 AND `+lastLine, ledger, account, int64(last))
		checkDivergence(t, h.verify(t, ledger, audit.Options{}), audit.Divergence{Kind: audit.KindBalances,
			Position: moved[len(moved)-1], Account: account, Field: "credits_posted"})
		h.exec(t, `UPDATE movements m SET credits_posted = credits_posted - 1 FROM movement_heads h
			WHERE h.ledger = $1 AND h.account = $2 AND `+lastLine, ledger, account, int64(last))
	}
	mustClean(t, "after the edits are undone", h.verify(t, ledger, audit.Options{}))
}

// TestVerifyCatchesEditedAccount: an account's row of the accounts read
// model edited (a freeze it does not have, other metadata) or gone is an
// account divergence at the account's opening, naming the field.
func TestVerifyCatchesEditedAccount(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 6).run(60)
	mustClean(t, "before the edits", h.verify(t, ledger, audit.Options{}))
	var (
		account  string
		changed  int64 // its last amendment, after its opening
		metadata string
	)
	// An account whose bounds or metadata the workload changed: its
	// divergences are placed at the last change.
	testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT a.account, e.position, a.metadata::text FROM accounts a
		JOIN LATERAL (SELECT max(position) AS position FROM events WHERE ledger = $1 AND payload->>'id' = a.account
			AND type IN ('AccountBoundsChanged', 'AccountMetadataSet')) e ON e.position IS NOT NULL
		WHERE a.ledger = $1 AND NOT a.closed AND a.frozen_position IS NULL AND a.position = e.position
		  AND a.opened_position < e.position
		ORDER BY a.account LIMIT 1`, ledger).Scan(&account, &changed, &metadata))
	for _, c := range []struct{ field, edit, undo string }{
		{"frozen_position", `frozen_position = 1`, `frozen_position = NULL`},
		{"metadata", `metadata = '{"edited": "yes"}'`, `metadata = $3::jsonb`},
		{"status", `closed = true`, `closed = false`},
	} {
		h.exec(t, `UPDATE accounts SET `+c.edit+` WHERE ledger = $1 AND account = $2`, ledger, account)
		checkDivergence(t, h.verify(t, ledger, audit.Options{}), audit.Divergence{Kind: audit.KindAccount,
			Position: uint64(changed), Account: account, Field: c.field})
		args := []any{ledger, account}
		if strings.Contains(c.undo, "$3") {
			args = append(args, metadata)
		}
		h.exec(t, `UPDATE accounts SET `+c.undo+` WHERE ledger = $1 AND account = $2`, args...)
	}
	mustClean(t, "after the edits are undone", h.verify(t, ledger, audit.Options{}))
	h.exec(t, `DELETE FROM accounts WHERE ledger = $1 AND account = $2`, ledger, account)
	checkDivergence(t, h.verify(t, ledger, audit.Options{}), audit.Divergence{Kind: audit.KindAccount,
		Position: uint64(changed), Account: account, Field: "account"})
}

func TestVerifyCatchesEditedStatementLine(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 6).run(80)
	const account = "usd:0"
	moved := h.movementPositions(t, ledger, account)
	if len(moved) < 3 {
		t.Fatalf("%s moved at %v: too few", account, moved)
	}
	// A line in the middle: the balances (its last line) stay right.
	pos := moved[len(moved)/2]
	edit := func(delta int) {
		h.exec(t, `UPDATE movements m SET debits_posted = debits_posted + $4 FROM movement_heads h
			WHERE h.ledger = $1 AND h.account = $2 AND `+lineOfHead+` AND m.position = $3
			AND m.seq = (SELECT max(seq) FROM movement_lines WHERE ledger = $1 AND account = $2 AND position = $3)`,
			ledger, account, int64(pos), delta)
	}
	edit(1)
	rep := h.verify(t, ledger, audit.Options{})
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindStatement, Position: pos, Account: account})
	if rep.Divergence.Field != "running_balance" && rep.Divergence.Field != "running_available" {
		t.Errorf("field %q, want the running balance", rep.Divergence.Field)
	}
	edit(-1)
	mustClean(t, "after the edit is undone", h.verify(t, ledger, audit.Options{}))

	// What a line copies from its event: its reference, edited, and put back.
	setReference := func(ref *string) {
		h.exec(t, `UPDATE movements m SET reference = $4 FROM movement_heads h
			WHERE h.ledger = $1 AND h.account = $2 AND `+lineOfHead+` AND m.position = $3`, ledger, account, int64(pos), ref)
	}
	var was *string
	testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT m.reference FROM movements m JOIN movement_heads h
		ON h.ledger = $1 AND h.account = $2 AND `+lineOfHead+` WHERE m.position = $3 LIMIT 1`,
		ledger, account, int64(pos)).Scan(&was))
	forged := "forged"
	setReference(&forged)
	rep = h.verify(t, ledger, audit.Options{})
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindStatement, Position: pos, Account: account})
	if rep.Divergence.Field != "reference" || rep.Divergence.Found != forged {
		t.Errorf("field %q found %q, want the reference %q", rep.Divergence.Field, rep.Divergence.Found, forged)
	}
	setReference(was)
	mustClean(t, "after the reference is put back", h.verify(t, ledger, audit.Options{}))

	// A line removed from another account's statement: a count divergence
	// where it was.
	const other = "eur:1"
	moved = h.movementPositions(t, ledger, other)
	if len(moved) < 2 {
		t.Fatalf("%s moved at %v: too few", other, moved)
	}
	gone := moved[len(moved)/2-1] // not the last: the balances stay right
	tag, err := h.pool.Exec(ctx(t), `DELETE FROM movements m USING movement_heads h
		WHERE h.ledger = $1 AND h.account = $2 AND `+lineOfHead+` AND m.position = $3`, ledger, other, int64(gone))
	testenv.NoError(t, err)
	if tag.RowsAffected() == 0 {
		t.Fatal("no line deleted")
	}
	rep = h.verify(t, ledger, audit.Options{})
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindStatement, Position: gone, Account: other})
	if !strings.Contains(rep.Divergence.Detail, fmt.Sprint(gone)) {
		t.Errorf("detail %q does not name position %d", rep.Divergence.Detail, gone)
	}
}

// TestVerifyCatchesResealedDuplicateID: a forger with the database rewrites
// the last transfer to take an id used before, and re-seals it: the chain
// holds and the balances agree, but a transfer id is taken twice, which no
// writer does. Verify refuses the log as an import would.
func TestVerifyCatchesResealedDuplicateID(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	d, err := h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	testenv.NoError(t, err)
	testenv.NoError(t, resultErr(d.GetResult()))
	o, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: []*ledgerv1.Account{
		{Id: "a", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT},
		{Id: "b", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT}}})
	testenv.NoError(t, err)
	for _, r := range o.GetResults() {
		testenv.NoError(t, resultErr(r))
	}
	for _, id := range []string{"dup-1", "dup-2"} {
		tr, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: []*ledgerv1.Transfer{{
			Id: id, Postings: []*ledgerv1.Posting{{DebitAccount: "a", CreditAccount: "b", Amount: "1.00", Asset: "USD"}}}}})
		testenv.NoError(t, err)
		testenv.NoError(t, resultErr(tr.GetResults()[0]))
	}
	head := h.head(t, ledger)
	mustClean(t, "before the forgery", h.verify(t, ledger, audit.Options{}))

	recs, err := h.storeLog(ledger).Store.Read(ctx(t), ledger, head, 1)
	testenv.NoError(t, err)
	r := recs[0]
	r.Payload = bytes.Replace(r.Payload, []byte(`"id":"dup-2"`), []byte(`"id":"dup-1"`), 1)
	r.CommandID = "dup-1"
	r.Seal(r.PrevHash)
	h.tamperLog(t, `UPDATE events SET payload = $3::json, command_id = $4, hash = $5 WHERE ledger = $1 AND position = $2`,
		ledger, int64(head), string(r.Payload), r.CommandID, r.Hash[:])
	h.exec(t, `UPDATE ledger_heads SET hash = $2 WHERE ledger = $1`, ledger, r.Hash[:])
	checkDivergence(t, h.verify(t, ledger, audit.Options{}), audit.Divergence{Kind: audit.KindInvariant, Position: head})
}

// resultErr is a command result that is not CREATED, as an error.
func resultErr(r *ledgerv1.ItemResult) error {
	if r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED {
		return fmt.Errorf("%s %s: %s", r.GetId(), r.GetCode(), r.GetDetail())
	}
	return nil
}
