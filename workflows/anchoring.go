package workflows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ledgerd/ledger/anchor"
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

// AnchorHeads is where the heads are read (eventstore.Store).
type AnchorHeads interface {
	Heads(ctx context.Context) ([]eventstore.LedgerHead, error)
	Head(ctx context.Context, ledger string) (uint64, eventstore.Hash, error)
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
	// signed is the last position published to every sink, by ledger.
	signed map[string]uint64
}

// NewAnchoring returns an Anchoring signing with signer into sinks.
func NewAnchoring(heads AnchorHeads, signer *anchor.Signer, logger *slog.Logger, sinks ...AnchorSink) *Anchoring {
	if logger == nil {
		logger = slog.Default()
	}
	return &Anchoring{heads: heads, signer: signer, sinks: sinks, logger: logger, signed: map[string]uint64{}}
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
		a.mu.Lock()
		done := a.signed[h.Ledger] == h.Position
		a.mu.Unlock()
		if done || h.Position == 0 {
			continue
		}
		if _, err := a.sign(ctx, h.Ledger, h.Position, h.Hash); err != nil && ctx.Err() == nil {
			a.logger.Warn("anchoring: head not signed", "ledger", h.Ledger, "err", err)
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

// sign signs ledger's head at pos and publishes the anchor to every sink.
//
// Errors: signing; the sinks' (joined).
func (a *Anchoring) sign(ctx context.Context, ledger string, pos uint64, hash eventstore.Hash) (anchor.Anchor, error) {
	ctx, cancel := context.WithTimeout(ctx, anchorTimeout)
	defer cancel()
	an, err := a.signer.Sign(ledger, pos, hash, time.Now())
	if err != nil {
		return anchor.Anchor{}, err
	}
	var errs []error
	for _, s := range a.sinks {
		if err := s.Put(ctx, an); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return an, err
	}
	a.mu.Lock()
	a.signed[ledger] = max(a.signed[ledger], pos)
	a.mu.Unlock()
	a.logger.Debug("anchored", "ledger", ledger, "position", pos, "key", an.KeyID)
	return an, nil
}
