package natsbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// putAttemptsMax bounds the reads and writes of one Put at a key that holds
// an entry that is not a trusted anchor: each attempt replaces it at the
// revision read, and one more is made only when the key changed meanwhile.
const putAttemptsMax = 3

// Errors of Put and List.
var (
	// ErrAnchorsScan: a ledger has more anchors than a List reads.
	ErrAnchorsScan = errors.New("too many anchors to list")
	// ErrAnchorKeyBusy: the key of an anchor changed under every attempt
	// of a Put to replace an entry there that is not a trusted anchor.
	ErrAnchorKeyBusy = errors.New("the anchor's key kept changing")
)

// Anchors publishes and lists anchors in AnchorBucket; the bucket is
// created on first use (NATS may be down when ledgerd starts).
//
// Whoever reaches NATS can write the bucket, so an entry counts as an
// anchor only when it parses, is signed by a key of the keyring, and names
// the ledger and position of its key: any other is passed over by List,
// and replaced by Put.
type Anchors struct {
	js     jetstream.JetStream
	ring   *anchor.Keyring
	logger *slog.Logger
	mu     sync.Mutex
	kv     jetstream.KeyValue
}

// NewAnchors returns the anchors of js's AnchorBucket that ring verifies
// (the signing key's public key and those of keys rotated out); logger
// (nil: slog.Default) gets what is passed over or replaced.
func NewAnchors(js jetstream.JetStream, ring *anchor.Keyring, logger *slog.Logger) *Anchors {
	if logger == nil {
		logger = slog.Default()
	}
	return &Anchors{js: js, ring: ring, logger: logger}
}

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

// trusted returns the anchor an entry at key holds, when it is one: it
// parses, its signature verifies with a key of the keyring, and it names
// the ledger and position of key (a genuine anchor copied to another key
// says nothing about that position).
//
// Errors: anchor.ErrMalformed (the value, or a ledger and position other
// than the key's); anchor.ErrUnknownKey; anchor.ErrBadSignature.
func (s *Anchors) trusted(key string, value []byte) (anchor.Anchor, error) {
	a, err := anchor.Parse(value)
	if err != nil {
		return anchor.Anchor{}, err
	}
	if err := s.ring.Verify(&a); err != nil {
		return anchor.Anchor{}, err
	}
	if anchorKey(a.Ledger, a.Position) != key {
		return anchor.Anchor{}, fmt.Errorf("ledger %s at %d under key %s: %w", a.Ledger, a.Position, key, anchor.ErrMalformed)
	}
	return a, nil
}

// Put publishes a, never over another trusted anchor: a position that holds
// one keeps it. Published once more with the hash it holds (a retry, two
// nodes signing one head), a is no error, and the first stays. An entry
// that is not a trusted anchor (trusted: unsigned, garbled, another key's,
// another position's) is no conflict, since anyone who reaches NATS can
// write one: it is replaced at the revision read, so an anchor put there
// meanwhile is not overwritten but read again, and a WARN names the key.
//
// Errors: anchor.ErrConflict when the position holds a trusted anchor of
// another hash (the log there is not what was signed: rewritten, or
// restored from an older backup); ErrAnchorKeyBusy; NATS's.
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
	for range putAttemptsMax {
		_, err = kv.Create(ctx, key, b)
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		held, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since: create it again
		}
		if err != nil {
			return fmt.Errorf("anchor %s: %w", key, err)
		}
		was, bad := s.trusted(key, held.Value())
		if bad == nil {
			if was.Hash != a.Hash {
				return fmt.Errorf("ledger %s at %d: %x held, %x now: %w", a.Ledger, a.Position, was.Hash[:8], a.Hash[:8], anchor.ErrConflict)
			}
			return nil
		}
		_, err = kv.Update(ctx, key, b, held.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			continue // written since: read again
		}
		if err != nil {
			return fmt.Errorf("anchor %s: replace an entry that is not a trusted anchor: %w", key, err)
		}
		s.logger.Warn("anchors: the bucket held a forged or garbled entry at the key of an anchor; replaced with the signed anchor "+
			"(who can write NATS wrote it: check its credentials)", "bucket", AnchorBucket, "key", key, "revision", held.Revision(),
			"why", bad)
		return nil
	}
	return fmt.Errorf("anchor %s: %d attempts: %w", key, putAttemptsMax, ErrAnchorKeyBusy)
}

// List returns ledger's trusted anchors (see trusted) from..to (to 0: the
// last) by position, at most limit, and whether more follow. An entry that
// is not one is never served: List passes over it, and a WARN says how
// many it passed over.
//
// Errors: NATS's; ErrAnchorsScan.
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
		out        []anchor.Anchor
		scanned    int
		passedOver int
		lastBad    error
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
		a, err := s.trusted(e.Key(), e.Value())
		if err != nil {
			passedOver++
			lastBad = fmt.Errorf("key %s: %w", e.Key(), err)
			continue
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
	if passedOver > 0 {
		s.logger.Warn("anchors: passed over entries of the bucket that are not trusted anchors (forged, garbled, or signed by a "+
			"key not trusted: -anchor-pubkey)", "bucket", AnchorBucket, "ledger", ledger, "passed_over", passedOver, "last", lastBad)
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
