package audit_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/anchor"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

func newSigner(t *testing.T) *anchor.Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	testenv.NoError(t, err)
	return anchor.NewSigner(k)
}

// sign signs the log's event at each position, as ledgerd's anchoring does.
func (h *harness) sign(t *testing.T, s *anchor.Signer, ledger string, positions ...uint64) []anchor.Anchor {
	t.Helper()
	recs, err := eventstore.New(h.pool).ReadPositions(ctx(t), ledger, positions)
	testenv.NoError(t, err)
	if len(recs) != len(positions) {
		t.Fatalf("%d events at %v", len(recs), positions)
	}
	out := make([]anchor.Anchor, 0, len(recs))
	for _, r := range recs {
		a, err := s.Sign(ledger, r.Position, r.Hash, time.Now())
		testenv.NoError(t, err)
		out = append(out, a)
	}
	return out
}

// cutTail deletes the events after keep and moves the head row back to it:
// what a login that can write the tables (or a restore from an older
// backup) does to hide the last events.
func (h *harness) cutTail(t *testing.T, ledger string, keep uint64) {
	t.Helper()
	err := pgx.BeginFunc(ctx(t), h.pool, func(tx pgx.Tx) error {
		for _, sql := range []string{`ALTER TABLE events DISABLE TRIGGER USER`,
			`DELETE FROM events WHERE ledger = $1 AND position > $2`,
			`UPDATE ledger_heads SET position = $2, hash = (SELECT hash FROM events WHERE ledger = $1 AND position = $2) WHERE ledger = $1`,
			`ALTER TABLE events ENABLE TRIGGER USER`} {
			var args []any
			if sql[0] != 'A' {
				args = []any{ledger, int64(keep)}
			}
			if _, err := tx.Exec(ctx(t), sql, args...); err != nil {
				return err
			}
		}
		return nil
	})
	testenv.NoError(t, err)
}

// startLedger runs a ledgerd and a workload of steps on a new ledger of it.
func startLedger(t *testing.T, seed uint64, steps int) (*harness, string, *workload, uint64) {
	t.Helper()
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	w := newWorkload(t, h, ledger, seed)
	w.run(steps)
	return h, ledger, w, h.head(t, ledger)
}

func mustDiverge(t *testing.T, rep *audit.Report, kind audit.Kind, pos uint64, field string) {
	t.Helper()
	d := rep.Divergence
	if d == nil {
		t.Fatalf("clean, want a %s divergence at %d", kind, pos)
	}
	if d.Kind != kind || d.Position != pos || d.Field != field {
		t.Fatalf("%s, want kind %s at %d, field %q", d, kind, pos, field)
	}
}

// A log that agrees with its anchors verifies clean, each anchor counted;
// an anchor signed by a key the verifier does not trust is a divergence.
func TestVerifyAnchorsClean(t *testing.T) {
	h, ledger, _, head := startLedger(t, 7, 40)
	s := newSigner(t)
	as := h.sign(t, s, ledger, head/2, head)
	rep := h.verify(t, ledger, audit.Options{Anchors: as, Keyring: anchor.NewKeyring(s.Public())})
	mustClean(t, "anchored", rep)
	if rep.Anchors != 2 {
		t.Fatalf("%d anchors checked, want 2", rep.Anchors)
	}
	rep = h.verify(t, ledger, audit.Options{Anchors: as, Keyring: anchor.NewKeyring(newSigner(t).Public())})
	mustDiverge(t, rep, audit.KindAnchor, head/2, "signature")
	// Anchors of another ledger check nothing, and the report says so.
	for i := range as {
		as[i].Ledger = "another"
	}
	rep = h.verify(t, ledger, audit.Options{Anchors: as, Keyring: anchor.NewKeyring(s.Public())})
	mustClean(t, "another ledger's anchors", rep)
	if rep.Anchors != 0 || !strings.Contains(strings.Join(rep.Notes, "\n"), "none of the 2 anchors given") {
		t.Fatalf("another ledger's anchors: %d checked, notes %q", rep.Anchors, rep.Notes)
	}
}

// A deleted tail with the head row moved back: the chain is intact, but
// the anchor of the old head names the position the log lost, and without
// anchors the projections' checkpoints past the head give it away.
func TestVerifyAnchorsDeletedTail(t *testing.T) {
	h, ledger, _, head := startLedger(t, 8, 30)
	mustClean(t, "before", h.verify(t, ledger, audit.Options{})) // the projections reached the head
	s := newSigner(t)
	as := h.sign(t, s, ledger, head-5, head-1)
	h.cutTail(t, ledger, head-3)

	rep, err := audit.Verify(ctx(t), h.serviceLog(ledger), nil, audit.Options{Anchors: as, Keyring: anchor.NewKeyring(s.Public())})
	testenv.NoError(t, err)
	mustDiverge(t, rep, audit.KindAnchor, head-1, "position")

	rep, err = audit.Verify(ctx(t), h.serviceLog(ledger), nil, audit.Options{})
	testenv.NoError(t, err)
	if d := rep.Divergence; d == nil || d.Kind != audit.KindCheckpoint || d.Position != head || d.Found == "" {
		t.Fatalf("without anchors: %v, want a checkpoint %d past the head %d", d, head, head-3)
	}
}

// History rewritten from a position on and every hash recomputed: the chain
// verifies, the anchors do not, and the first signed position that differs
// is named.
func TestVerifyAnchorsResealedForgery(t *testing.T) {
	h, ledger, _, head := startLedger(t, 9, 30)
	s := newSigner(t)
	as := h.sign(t, s, ledger, 3, head-6, head)
	h.reseal(t, ledger, head-8, head)

	rep, err := audit.Verify(ctx(t), h.storeLog(ledger), nil, audit.Options{})
	testenv.NoError(t, err)
	mustClean(t, "the re-sealed chain alone", rep)
	rep, err = audit.Verify(ctx(t), h.storeLog(ledger), nil, audit.Options{Anchors: as, Keyring: anchor.NewKeyring(s.Public())})
	testenv.NoError(t, err)
	mustDiverge(t, rep, audit.KindAnchor, head-6, "hash")
}

// A verification from P starts from the prev_hash stored at P: a signed
// anchor at P-1 confirms it, and refutes it when history before P was
// rewritten and re-sealed through the head (the chain from P on is then
// intact, and without the anchor it verifies clean).
func TestVerifyFromChecksTheAnchorBefore(t *testing.T) {
	h, ledger, _, head := startLedger(t, 12, 30)
	s := newSigner(t)
	from := head - 6
	as := h.sign(t, s, ledger, from-1)
	ring := anchor.NewKeyring(s.Public())
	rep, err := audit.Verify(ctx(t), h.storeLog(ledger), nil, audit.Options{From: from, Anchors: as, Keyring: ring})
	testenv.NoError(t, err)
	mustClean(t, "from P, anchored at P-1", rep)
	if rep.Anchors != 1 || !rep.AnchorSigned {
		t.Fatalf("%d anchors checked, anchor signed %v: want the anchor at P-1 checked", rep.Anchors, rep.AnchorSigned)
	}

	h.reseal(t, ledger, from-4, head)
	rep, err = audit.Verify(ctx(t), h.storeLog(ledger), nil, audit.Options{From: from})
	testenv.NoError(t, err)
	mustClean(t, "from P, re-sealed before P, no anchors", rep)
	rep, err = audit.Verify(ctx(t), h.storeLog(ledger), nil, audit.Options{From: from, Anchors: as, Keyring: ring})
	testenv.NoError(t, err)
	mustDiverge(t, rep, audit.KindAnchor, from-1, "hash")
}

// reseal rewrites the events from..head of ledger (another command id at
// from) and seals them again, the head row with them: a rewritten history
// whose chain verifies.
func (h *harness) reseal(t *testing.T, ledger string, from, head uint64) {
	t.Helper()
	store := eventstore.New(h.pool)
	recs, err := store.Read(ctx(t), ledger, from, int(head-from+1))
	testenv.NoError(t, err)
	prev := recs[0].PrevHash
	recs[0].CommandID = "forged"
	err = pgx.BeginFunc(ctx(t), h.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx(t), `ALTER TABLE events DISABLE TRIGGER USER`); err != nil {
			return err
		}
		for i := range recs {
			recs[i].Seal(prev)
			prev = recs[i].Hash
			if _, err := tx.Exec(ctx(t), `UPDATE events SET command_id = $3, prev_hash = $4, hash = $5 WHERE ledger = $1 AND position = $2`,
				ledger, int64(recs[i].Position), recs[i].CommandID, recs[i].PrevHash[:], recs[i].Hash[:]); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx(t), `UPDATE ledger_heads SET hash = $2 WHERE ledger = $1`, ledger, prev[:]); err != nil {
			return err
		}
		_, err := tx.Exec(ctx(t), `ALTER TABLE events ENABLE TRIGGER USER`)
		return err
	})
	testenv.NoError(t, err)
}

// A database rolled back to an earlier state, then written again: the
// positions signed before now hold other events.
func TestVerifyAnchorsRolledBack(t *testing.T) {
	h, ledger, _, head := startLedger(t, 10, 20)
	s := newSigner(t)
	as := h.sign(t, s, ledger, head-10, head)
	h.cutTail(t, ledger, head-4)
	// The writer finds the head moved (fenced), reloads, and writes new
	// events where the old ones were.
	// A deadline, not a count of calls: refusals come fast, and a loaded
	// box (tests under -race beside other packages) reloads slowly.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; h.head(t, ledger) < head+2; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the writer did not write again within 30 s of the rollback (%d calls)", i)
		}
		// Refused (Unavailable) while the writer reloads: sent again.
		if _, err := h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: fmt.Sprintf("R%d", i), Scale: 2}); err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	rep, err := audit.Verify(ctx(t), h.storeLog(ledger), nil, audit.Options{Anchors: as, Keyring: anchor.NewKeyring(s.Public())})
	testenv.NoError(t, err)
	mustDiverge(t, rep, audit.KindAnchor, head, "hash")
}

// A row inserted past the head row (around the writer) is reported by a
// verification over the store.
func TestVerifyRowPastHead(t *testing.T) {
	h, ledger, _, head := startLedger(t, 11, 5)
	h.exec(t, `INSERT INTO events (ledger, position, type, schema_version, recorded_at, command_id, payload, prev_hash, hash)
		SELECT ledger, position + 2, type, schema_version, recorded_at, command_id, payload, prev_hash, hash
		FROM events WHERE ledger = $1 AND position = $2`, ledger, int64(head))
	rep, err := audit.Verify(ctx(t), h.storeLog(ledger), nil, audit.Options{})
	testenv.NoError(t, err)
	mustDiverge(t, rep, audit.KindPastHead, head+2, "")
}

// A database that lost the whole ledger (its events and head deleted, or a
// copy from before it existed): the head is 0, and every anchor of the
// ledger is past it; a file's end, by contrast, is no head (see
// the trailer tests).
func TestVerifyAnchorsLogGone(t *testing.T) {
	h, ledger, _, head := startLedger(t, 11, 10)
	s := newSigner(t)
	as := h.sign(t, s, ledger, head)
	err := pgx.BeginFunc(ctx(t), h.pool, func(tx pgx.Tx) error {
		for _, sql := range []string{`ALTER TABLE events DISABLE TRIGGER USER`, `DELETE FROM events WHERE ledger = $1`,
			`DELETE FROM ledger_heads WHERE ledger = $1`, `ALTER TABLE events ENABLE TRIGGER USER`} {
			var args []any
			if sql[0] == 'D' {
				args = []any{ledger}
			}
			if _, err := tx.Exec(ctx(t), sql, args...); err != nil {
				return err
			}
		}
		return nil
	})
	testenv.NoError(t, err)
	rep, err := audit.Verify(ctx(t), h.storeLog(ledger), nil, audit.Options{Anchors: as, Keyring: anchor.NewKeyring(s.Public())})
	testenv.NoError(t, err)
	mustDiverge(t, rep, audit.KindAnchor, head, "position")
}
