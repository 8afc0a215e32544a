package audit_test

import (
	"testing"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/internal/testenv"
)

// transferOf joins a transfer t to its ledger l (projections 0024).
const transferOf = `t.ledger_no = l.ledger_no AND l.ledger = $1`

// TestVerifyCatchesEditedTransfer edits the transfers read model, one
// field at a time and put back, then removes a row: each edit is a
// transfer divergence at the transfer's position, naming the field.
func TestVerifyCatchesEditedTransfer(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	w := newWorkload(t, h, ledger, 7)
	w.run(150)
	w.expire(1)
	rep := h.verify(t, ledger, audit.Options{})
	mustClean(t, "before the edits", rep)
	if rep.Transfers == 0 {
		t.Fatal("no transfers compared")
	}

	// pick returns the id and position of a transfer matching where, in
	// the middle of those that do.
	pick := func(where string) (string, uint64) {
		t.Helper()
		rows, err := h.pool.Query(ctx(t), `SELECT t.id, t.position FROM transfers t, transfer_ledgers l
			WHERE `+transferOf+` AND `+where+` ORDER BY t.position`, ledger)
		testenv.NoError(t, err)
		var (
			ids       []string
			positions []uint64
		)
		for rows.Next() {
			var (
				id  string
				pos int64
			)
			testenv.NoError(t, rows.Scan(&id, &pos))
			ids, positions = append(ids, id), append(positions, uint64(pos))
		}
		testenv.NoError(t, rows.Err())
		if len(ids) == 0 {
			t.Fatalf("no transfer where %s", where)
		}
		return ids[len(ids)/2], positions[len(ids)/2]
	}
	for _, c := range []struct {
		name, where, column, cast, set, field string
	}{
		{"status", "t.kind = 'transfer' AND t.status = 'posted'", "status", "text", "'reversed'", "status"},
		{"remaining", "t.kind = 'pending' AND t.status <> 'pending'", "postings", "jsonb",
			`jsonb_set(t.postings, '{0,remaining}', '"1"')`, "postings[0].remaining"},
		{"amount", "t.kind = 'post'", "postings", "jsonb", `jsonb_set(t.postings, '{0,amount}', '"7"')`, "postings[0].amount"},
		{"reference", "t.kind = 'reversal'", "reference", "text", "'forged'", "reference"},
		{"reversals", "t.status = 'partially_reversed'", "reversed_by", "text[]", "'{}'", "reversed_by"},
		{"resolution", "t.kind = 'pending' AND t.status = 'voided'", "resolved_by", "text", "'someone-else'", "resolved_by"},
		{"expiry", "t.kind = 'pending' AND t.expires_at IS NOT NULL", "expires_at", "timestamptz",
			"t.expires_at + interval '1 second'", "expires_at"},
	} {
		id, pos := pick(c.where)
		var was *string
		testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT t.`+c.column+`::text FROM transfers t, transfer_ledgers l
			WHERE `+transferOf+` AND t.id = $2`, ledger, id).Scan(&was))
		h.exec(t, `UPDATE transfers t SET `+c.column+` = `+c.set+` FROM transfer_ledgers l
			WHERE `+transferOf+` AND t.id = $2`, ledger, id)
		rep := h.verify(t, ledger, audit.Options{})
		checkDivergence(t, rep, audit.Divergence{Kind: audit.KindTransfer, Position: pos, Field: c.field})
		h.exec(t, `UPDATE transfers t SET `+c.column+` = $3::text::`+c.cast+` FROM transfer_ledgers l
			WHERE `+transferOf+` AND t.id = $2`, ledger, id, was)
		mustClean(t, c.name+" put back", h.verify(t, ledger, audit.Options{}))
	}

	// A row gone: the transfer expected at its position is missing.
	id, pos := pick("t.kind = 'void'")
	h.exec(t, `DELETE FROM transfers t USING transfer_ledgers l WHERE `+transferOf+` AND t.id = $2`, ledger, id)
	rep = h.verify(t, ledger, audit.Options{})
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindTransfer, Position: pos, Field: "id"})
	if rep.Divergence.Expected != id {
		t.Errorf("expected %q, want the id %q", rep.Divergence.Expected, id)
	}
}

// TestVerifyTransfersBeyondOneRead: with buckets of four positions and one
// compared a read of the log, the transfers changed after the verified
// head make several buckets differ, each compared as of the position its
// page was served at and found clean, and an edit in a bucket after them is
// still found. Not parallel: it makes the buckets small for the package.
func TestVerifyTransfersBeyondOneRead(t *testing.T) {
	audit.SetTransferBuckets(t, 4, 1)
	h := start(t)
	ledger := testenv.Name(t)
	w := newWorkload(t, h, ledger, 8)
	w.run(120)
	to := h.head(t, ledger) / 2
	for range 120 {
		w.step() // posts, voids and reversals of transfers from before to, among others
	}
	mustClean(t, "up to the middle, changed since", h.verify(t, ledger, audit.Options{To: to}))

	rows, err := h.pool.Query(ctx(t), `SELECT t.position FROM transfers t, transfer_ledgers l
		WHERE `+transferOf+` AND t.position <= $2 AND t.updated_position > $2 ORDER BY t.position`, ledger, int64(to))
	testenv.NoError(t, err)
	var changed []uint64
	for rows.Next() {
		var pos int64
		testenv.NoError(t, rows.Scan(&pos))
		if b := uint64(pos) / 4; len(changed) == 0 || changed[len(changed)-1] != b {
			changed = append(changed, b)
		}
	}
	testenv.NoError(t, rows.Err())
	if len(changed) < 2 {
		t.Fatalf("transfers changed after %d in buckets %v: want two at least, before the edit", to, changed)
	}
	var (
		id  string
		pos int64
	)
	testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT t.id, t.position FROM transfers t, transfer_ledgers l
		WHERE `+transferOf+` AND t.position <= $2 AND t.position >= $3 ORDER BY t.position DESC LIMIT 1`,
		ledger, int64(to), int64(changed[1]+1)*4).Scan(&id, &pos))
	h.exec(t, `UPDATE transfers t SET reference = 'forged' FROM transfer_ledgers l WHERE `+transferOf+` AND t.id = $2`, ledger, id)
	checkDivergence(t, h.verify(t, ledger, audit.Options{To: to}),
		audit.Divergence{Kind: audit.KindTransfer, Position: uint64(pos), Field: "reference"})
}
