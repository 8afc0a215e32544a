package workflows

import (
	"context"

	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/eventstore"
)

// SignAt is sign: a head as a listing read earlier says it.
func (a *Anchoring) SignAt(ctx context.Context, ledger string, pos uint64, hash eventstore.Hash) (anchor.Anchor, error) {
	return a.sign(ctx, ledger, pos, hash)
}
