package natsbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/anchor"
)

// AnchorBucket is the JetStream key-value bucket ledgerd publishes anchors
// to: key <ledger>.<position, 20 digits>, value the anchor's JSON form. The
// bucket is outside PostgreSQL: whoever rewrites the database cannot rewrite
// it (who can reach NATS can; see docs/operations.md, "Integrity").
const AnchorBucket = "ledger_anchors"

// anchorsScanMax bounds the anchors a List reads of one ledger: a list
// reads the ledger's keys from the first (the bucket has no index by
// position), so a ledger anchored every 10 s for a year (3.2M) is under it.
const anchorsScanMax = 1 << 22

// ErrAnchorsScan: a ledger has more anchors than a List reads.
var ErrAnchorsScan = errors.New("too many anchors to list")

// Anchors publishes and lists anchors in AnchorBucket; the bucket is
// created on first use (NATS may be down when ledgerd starts).
type Anchors struct {
	js jetstream.JetStream
	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewAnchors returns the anchors of js's AnchorBucket.
func NewAnchors(js jetstream.JetStream) *Anchors { return &Anchors{js: js} }

// Name is what logs call the sink.
func (s *Anchors) Name() string { return "NATS bucket " + AnchorBucket }

func (s *Anchors) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: AnchorBucket, History: 1,
		Description: "signed anchors of the ledgers' logs", Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("anchor bucket %s: %w", AnchorBucket, err)
	}
	s.kv = kv
	return kv, nil
}

func anchorKey(ledger string, position uint64) string {
	return fmt.Sprintf("%s.%020d", ledger, position)
}

// Put publishes a, never over another anchor: a position that holds one
// keeps it. Published once more with the hash it holds (a retry, two nodes
// signing one head), a is no error, and the first stays.
//
// Errors: anchor.ErrConflict when the position holds another hash (the log
// there is not what was signed: rewritten, or restored from an older
// backup); NATS's.
func (s *Anchors) Put(ctx context.Context, a anchor.Anchor) error {
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	b, err := a.MarshalJSON()
	if err != nil {
		return err
	}
	key := anchorKey(a.Ledger, a.Position)
	_, err = kv.Create(ctx, key, b)
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	held, err := kv.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("anchor %s: %w", key, err)
	}
	was, err := anchor.Parse(held.Value())
	if err != nil {
		return fmt.Errorf("anchor %s held: %w", key, err)
	}
	if was.Hash != a.Hash {
		return fmt.Errorf("ledger %s at %d: %x held, %x now: %w", a.Ledger, a.Position, was.Hash[:8], a.Hash[:8], anchor.ErrConflict)
	}
	return nil
}

// List returns ledger's anchors from..to (to 0: the last) by position, at
// most limit, and whether more follow.
//
// Errors: NATS's; a value that is not an anchor (anchor.ErrMalformed);
// ErrAnchorsScan.
func (s *Anchors) List(ctx context.Context, ledger string, from, to uint64, limit int) ([]anchor.Anchor, bool, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, false, err
	}
	w, err := kv.Watch(ctx, ledger+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, false, err
	}
	defer w.Stop() //nolint:errcheck // a watcher's stop fails only on a closed connection
	var (
		out     []anchor.Anchor
		scanned int
	)
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case e = <-w.Updates():
		}
		if e == nil { // the initial values are all delivered
			break
		}
		if scanned++; scanned > anchorsScanMax {
			return nil, false, fmt.Errorf("ledger %s: more than %d: %w", ledger, anchorsScanMax, ErrAnchorsScan)
		}
		a, err := anchor.Parse(e.Value())
		if err != nil {
			return nil, false, fmt.Errorf("key %s: %w", e.Key(), err)
		}
		if a.Position < from || to != 0 && a.Position > to {
			continue
		}
		out = append(out, a)
		if len(out) > 2*(limit+1) {
			// Only the page and one more matter: what a List holds is
			// bounded by the page, not by the ledger's anchors.
			sortAnchors(out)
			out = out[:limit+1]
		}
	}
	sortAnchors(out)
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// sortAnchors sorts by position: the bucket delivers them in the order they
// were put, by position within what one ledgerd signed, not across a
// takeover.
func sortAnchors(as []anchor.Anchor) {
	slices.SortFunc(as, func(a, b anchor.Anchor) int { return cmp.Compare(a.Position, b.Position) })
}
