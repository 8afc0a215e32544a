package workflows_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/anchor/anchorfile"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/workflows"
)

// TestUnsignedBucketEntryBlocksAnchor: whoever can write the NATS
// key-value bucket ledger_anchors (no private key needed) puts an unsigned,
// made-up "anchor" at a position the ledger has not reached. When ledgerd
// reaches it, the entry is replaced with the signed anchor (a WARN), the
// file sink gets the anchor, no tamper alarm is raised, and the bucket then
// lists the signed anchor alone. natsbus.Anchors.Put used to compare only
// the entry's hash: anchor.ErrConflict, the anchor withheld from the file
// too, the tamper alarm on a log nobody touched, and the unsigned value
// served as the head's anchor ("head signed: yes" on the console).
func TestUnsignedBucketEntryBlocksAnchor(t *testing.T) {
	ctx := context.Background()
	_, store, ledger, recs := sealedLog(t, 2)
	nc, err := nats.Connect(testenv.NATSURL(t))
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)

	t.Log("the attacker: a value at <ledger>.<position 2>, with no valid signature and a made-up key id")
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: natsbus.AnchorBucket, History: 1,
		Storage: jetstream.FileStorage})
	testenv.NoError(t, err)
	junk := anchor.Anchor{Ledger: ledger, Position: 2, Hash: [32]byte{0xde, 0xad}, Time: time.Now().UTC(),
		KeyID: "0000000000000000", Signature: []byte("not a signature")}
	b, err := junk.MarshalJSON()
	testenv.NoError(t, err)
	_, err = kv.Create(ctx, fmt.Sprintf("%s.%020d", ledger, 2), b)
	testenv.NoError(t, err)

	t.Log("ledgerd appends 1..2 and signs its head")
	testenv.NoError(t, store.Append(ctx, ledger, 0, eventstore.Hash{}, recs))
	logs := &testenv.LockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := t.TempDir()
	file := &anchorfile.Sink{Dir: dir}
	signer := anchor.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	ring := anchor.NewKeyring(signer.Public())
	a := workflows.NewAnchoring(store, signer, logger, natsbus.NewAnchors(js, ring, logger), file) // ledgerd's order (internal/daemon/anchors.go)
	testenv.NoError(t, a.AnchorMoved(ctx))
	var fails []string
	if last, ok, err := file.Last(ledger); err != nil || !ok || last.Position != 2 {
		fails = append(fails, fmt.Sprintf("the file sink holds no anchor of the head 2 (last %+v, %v, %v): the genuine anchor was withheld", last.Position, ok, err))
	}
	if s := logs.String(); strings.Contains(s, "the log is not what was signed before") {
		fails = append(fails, "tamper alarm raised on an untouched log, on the word of an unsigned bucket value: "+strings.TrimSpace(s))
	}
	if s := logs.String(); !strings.Contains(s, "forged or garbled entry") {
		fails = append(fails, "no WARN that the bucket held a forged entry at the head's key: "+strings.TrimSpace(s))
	}
	// What the console's integrity page asks (ListAnchors from the head,
	// limit 1) and shows as "head signed: yes": the signed anchor, which
	// took the unsigned value's place.
	as, _, err := natsbus.NewAnchors(js, ring, logger).List(ctx, ledger, 2, 0, 1)
	switch {
	case err != nil || len(as) != 1:
		fails = append(fails, fmt.Sprintf("the bucket's anchors from the head 2: %d, %v; want the signed one", len(as), err))
	case ring.Verify(&as[0]) != nil || as[0].Hash != recs[1].Hash:
		fails = append(fails, fmt.Sprintf("ListAnchors serves, at the head 2, an anchor that is not the signed one (key %s, %v)",
			as[0].KeyID, ring.Verify(&as[0])))
	}
	for _, f := range fails {
		t.Error(f)
	}
}

// TestAnchoringConflictWritesTheFileToo: a bucket that holds a trusted
// anchor of another hash at the head's position (the real alarm:
// anchor.ErrConflict) does not keep the head's anchor from the file sink,
// which whoever writes NATS cannot reach.
func TestAnchoringConflictWritesTheFileToo(t *testing.T) {
	ctx := context.Background()
	_, store, ledger, recs := sealedLog(t, 1)
	testenv.NoError(t, store.Append(ctx, ledger, 0, eventstore.Hash{}, recs))
	nc, err := nats.Connect(testenv.NATSURL(t))
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	signer := anchor.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	bucket := natsbus.NewAnchors(js, anchor.NewKeyring(signer.Public()), nil)
	other, err := signer.Sign(ledger, 1, [32]byte{0xde, 0xad}, time.Now())
	testenv.NoError(t, err)
	testenv.NoError(t, bucket.Put(ctx, other))

	file := &anchorfile.Sink{Dir: t.TempDir()}
	a := workflows.NewAnchoring(store, signer, nil, bucket, file)
	if _, err := a.Anchor(ctx, ledger); !errors.Is(err, anchor.ErrConflict) {
		t.Errorf("the head under another trusted hash in the bucket: %v, want anchor.ErrConflict", err)
	}
	if last, ok, err := file.Last(ledger); err != nil || !ok || last.Position != 1 || last.Hash != recs[0].Hash {
		t.Errorf("the file sink: %+v, %v, %v; want the head's anchor", last, ok, err)
	}
}
