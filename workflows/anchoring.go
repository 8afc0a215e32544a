package workflows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// AnchorEveryDefault is how often ledgerd signs each ledger's head, when it
// moved: the most an undetected rewrite of the tail can cover.
const AnchorEveryDefault = 10 * time.Second

// anchorTimeout bounds one ledger's signing and publishing.
const anchorTimeout = 10 * time.Second

// AnchorSink is a place anchors are published, outside PostgreSQL.
type AnchorSink interface {
	Name() string
	Put(ctx context.Context, a anchor.Anchor) error
}

// AnchorHeads is where the heads, and the events at them, are read
// (eventstore.Store).
type AnchorHeads interface {
	Heads(ctx context.Context) ([]eventstore.LedgerHead, error)
	Head(ctx context.Context, ledger string) (uint64, eventstore.Hash, error)
	Read(ctx context.Context, ledger string, from uint64, limit int) ([]eventstore.Record, error)
}

// AnchorMemory is a sink that can say the last anchor it holds of a ledger
// (anchorfile.Sink): a process that has signed nothing of the ledger yet
// (it just started) holds its first head to that.
type AnchorMemory interface {
	Last(ledger string) (anchor.Anchor, bool, error)
}

// ErrNotExtended means a head was not signed: it is not the log's event at
// its position, or the log no longer holds at the last signed position
// what was signed there (rewritten, or restored from an older backup), or
// it went back. An anchor vouches for what the database says only when
// that extends what was vouched for before.
var ErrNotExtended = errors.New("the head does not extend the last signed anchor")

// ErrCovered means a head was not signed because a later one of the same
// log already is (a listing read before a period close signed further on):
// nothing to do, nothing wrong.
var ErrCovered = errors.New("a later head of the log is signed already")

// signedHead is the last position a ledger's anchor was published at,
// and its hash.
type signedHead struct {
	position uint64
	hash     eventstore.Hash
}

// Anchoring signs the ledgers' heads and publishes the anchors to every
// sink. It runs beside the writers, never inside an append: the head is
// read after it committed.
type Anchoring struct {
	heads  AnchorHeads
	signer *anchor.Signer
	sinks  []AnchorSink
	logger *slog.Logger
	mu     sync.Mutex
	// signed is the last head published to every sink, by ledger, since
	// this process started (the sinks keep what came before: the bucket
	// refuses another hash at a position it holds).
	signed map[string]signedHead
}

// NewAnchoring returns an Anchoring signing with signer into sinks. Every
// sink gets every anchor: one that fails or refuses it (anchor.ErrConflict)
// keeps it from no other, since whoever can write one sink (the NATS
// bucket) could otherwise keep the anchor from those it cannot reach (the
// file).
func NewAnchoring(heads AnchorHeads, signer *anchor.Signer, logger *slog.Logger, sinks ...AnchorSink) *Anchoring {
	if logger == nil {
		logger = slog.Default()
	}
	return &Anchoring{heads: heads, signer: signer, sinks: sinks, logger: logger, signed: map[string]signedHead{}}
}

// Run signs every ledger whose head moved, every interval, until ctx ends.
func (a *Anchoring) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.AnchorMoved(ctx); err != nil && ctx.Err() == nil {
			a.logger.Warn("anchoring: heads not signed; trying again at the next interval", "err", err)
		}
	}
}

// AnchorMoved signs the head of each ledger that moved since it was last
// signed. A sink that fails is logged and the ledger tried again next time.
//
// Errors: listing the ledgers.
func (a *Anchoring) AnchorMoved(ctx context.Context) error {
	heads, err := a.heads.Heads(ctx) // one query for every ledger, not one each
	if err != nil {
		return err
	}
	for _, h := range heads {
		if !domain.ValidLedgerName(h.Ledger) {
			// Only a hand-made row has such a name; it would name a file
			// of the file sink.
			a.logger.Error("anchoring: a ledger head with a name no ledger may have: not signed", "ledger", h.Ledger)
			continue
		}
		a.mu.Lock()
		done := h.Position <= a.signed[h.Ledger].position // a listing older than the last signing: covered
		a.mu.Unlock()
		if done || h.Position == 0 {
			continue
		}
		if _, err := a.sign(ctx, h.Ledger, h.Position, h.Hash); err != nil && ctx.Err() == nil && !errors.Is(err, ErrCovered) {
			a.logNotSigned(h.Ledger, err)
		}
	}
	return nil
}

// Anchor signs ledger's head now, moved or not (after a period close), and
// publishes it to every sink.
//
// Errors: errNoHead; reading the head; the sinks' (joined).
func (a *Anchoring) Anchor(ctx context.Context, ledger string) (anchor.Anchor, error) {
	ctx, cancel := context.WithTimeout(ctx, anchorTimeout)
	defer cancel()
	if !domain.ValidLedgerName(ledger) {
		return anchor.Anchor{}, fmt.Errorf("ledger %q: %w", ledger, errNoHead)
	}
	pos, hash, err := a.heads.Head(ctx, ledger)
	if err != nil {
		return anchor.Anchor{}, err
	}
	if pos == 0 {
		return anchor.Anchor{}, fmt.Errorf("ledger %s: %w", ledger, errNoHead)
	}
	return a.sign(ctx, ledger, pos, hash)
}

// errNoHead: a ledger without events has no head to sign.
var errNoHead = errors.New("no event to anchor")

// logNotSigned logs why ledger's head was not signed: at ERROR when the
// log is not what was signed before (a tamperer with the database, or a
// restore from an older backup), else a WARN and a retry next time.
func (a *Anchoring) logNotSigned(ledger string, err error) {
	switch {
	case errors.Is(err, ErrNotExtended):
		a.logger.Error("anchoring: the log is not what was signed before: its head is not signed; "+
			"verify the ledger against its anchors (ledgerctl audit verify --anchors)", "ledger", ledger, "err", err)
		return
	case errors.Is(err, anchor.ErrConflict):
		// Only a trusted key's anchor is a conflict (natsbus.Anchors): a
		// sink holds another hash signed at the head's position.
		a.logger.Error("anchoring: the log is not what was signed before: a sink holds another hash signed at the head's position "+
			"(the other sinks have the head's anchor); verify the ledger against its anchors (ledgerctl audit verify --anchors)",
			"ledger", ledger, "err", err)
		return
	}
	a.logger.Warn("anchoring: head not signed", "ledger", ledger, "err", err)
}

// sign signs ledger's head at pos and publishes the anchor to every sink,
// once it has checked that the head extends what was signed before
// (extends).
//
// Errors: ErrNotExtended; reading the log; signing; the sinks' (joined;
// anchor.ErrConflict among them), with the anchor the other sinks took.
func (a *Anchoring) sign(ctx context.Context, ledger string, pos uint64, hash eventstore.Hash) (anchor.Anchor, error) {
	ctx, cancel := context.WithTimeout(ctx, anchorTimeout)
	defer cancel()
	if err := a.extends(ctx, ledger, pos, hash); err != nil {
		return anchor.Anchor{}, err
	}
	an, err := a.signer.Sign(ledger, pos, hash, time.Now())
	if err != nil {
		return anchor.Anchor{}, err
	}
	var errs []error
	for _, s := range a.sinks {
		// A conflict at one sink is reported, not a reason to withhold the
		// anchor from the rest: the head extends what was signed (extends),
		// and the anchor says what the log holds now.
		if err := s.Put(ctx, an); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return an, err
	}
	a.mu.Lock()
	if pos > a.signed[ledger].position {
		a.signed[ledger] = signedHead{position: pos, hash: hash}
	}
	a.mu.Unlock()
	a.logger.Debug("anchored", "ledger", ledger, "position", pos, "key", an.KeyID)
	return an, nil
}

// extends checks that ledger's head (pos, hash), as the heads table says,
// is the log's event at pos, whole (its hash recomputed), and that the log
// still holds, at the last position signed, what was signed there: a head
// the database was made to say, or a log rewritten under the last anchor,
// is not vouched for. It reads two events, not the range between: what
// came after the last anchor was never vouched for, by anyone.
//
// Errors: ErrNotExtended; reading the log.
func (a *Anchoring) extends(ctx context.Context, ledger string, pos uint64, hash eventstore.Hash) error {
	at := func(p uint64) (eventstore.Record, error) {
		recs, err := a.heads.Read(ctx, ledger, p, 1)
		if err != nil {
			return eventstore.Record{}, fmt.Errorf("ledger %s at %d: %w", ledger, p, err)
		}
		if len(recs) != 1 || recs[0].Position != p || !recs[0].VerifyHash() {
			return eventstore.Record{}, fmt.Errorf("ledger %s: no whole event at %d: %w", ledger, p, ErrNotExtended)
		}
		return recs[0], nil
	}
	head, err := at(pos)
	if err != nil {
		return err
	}
	if head.Hash != hash {
		return fmt.Errorf("ledger %s: the head says %x at %d, the event there is %x: %w", ledger, hash[:8], pos, head.Hash[:8],
			ErrNotExtended)
	}
	last, ok, err := a.lastSigned(ledger)
	if err != nil {
		return err
	}
	switch {
	case !ok:
		return nil
	case pos < last.position:
		// A head read before a later one was signed (a period close
		// meanwhile) is covered, if the log still holds what was signed;
		// a log that went back is not.
		prev, err := at(last.position)
		switch {
		case errors.Is(err, ErrNotExtended):
			return fmt.Errorf("ledger %s: the log ends before %d, signed: %w", ledger, last.position, ErrNotExtended)
		case err != nil:
			return err
		case prev.Hash != last.hash:
			return fmt.Errorf("ledger %s at %d: signed %x, the log now holds %x: %w", ledger, last.position, last.hash[:8],
				prev.Hash[:8], ErrNotExtended)
		}
		return fmt.Errorf("ledger %s at %d: %w at %d", ledger, pos, ErrCovered, last.position)
	case pos == last.position && hash != last.hash:
		return fmt.Errorf("ledger %s at %d: signed %x, now %x: %w", ledger, pos, last.hash[:8], hash[:8], ErrNotExtended)
	case pos == last.position:
		return nil
	}
	prev, err := at(last.position)
	if err != nil {
		return err
	}
	if prev.Hash != last.hash {
		return fmt.Errorf("ledger %s at %d: signed %x, the log now holds %x: %w", ledger, last.position, last.hash[:8],
			prev.Hash[:8], ErrNotExtended)
	}
	return nil
}

// lastSigned is the last head of ledger this process signed or, before it
// signed any, the last a sink remembers (AnchorMemory), which it then
// remembers itself; false when neither knows one.
//
// Errors: a sink's.
func (a *Anchoring) lastSigned(ledger string) (signedHead, bool, error) {
	a.mu.Lock()
	last, ok := a.signed[ledger]
	a.mu.Unlock()
	if ok {
		return last, true, nil
	}
	for _, s := range a.sinks {
		m, isMemory := s.(AnchorMemory)
		if !isMemory {
			continue
		}
		an, found, err := m.Last(ledger)
		if err != nil {
			return signedHead{}, false, fmt.Errorf("ledger %s: the last anchor of %s: %w", ledger, s.Name(), err)
		}
		if found && an.Position > last.position {
			last, ok = signedHead{position: an.Position, hash: an.Hash}, true
		}
	}
	if ok {
		a.mu.Lock()
		if cur, have := a.signed[ledger]; !have || cur.position < last.position {
			a.signed[ledger] = last
		}
		a.mu.Unlock()
	}
	return last, ok, nil
}
