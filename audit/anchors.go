package audit

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/eventstore"
)

// What Verify checks besides the chain, when it is given anchors or when
// its Log can say more than its events (checkpoints, rows past the head).
const (
	// KindAnchor: a signed anchor disagrees with the log: its signature does
	// not verify with a trusted key, the log ends before its position (a
	// deleted tail, a database rolled back), or the event there has another
	// hash (history rewritten and re-sealed).
	KindAnchor Kind = "anchor"
	// KindCheckpoint: a projection's checkpoint is past the log's head: the
	// projection applied events the log no longer holds.
	KindCheckpoint Kind = "checkpoint"
	// KindPastHead: the events table holds rows past the ledger's head row:
	// written around the writer (which moves the head with every append).
	KindPastHead Kind = "past_head"
)

// Checkpoint is where a projection of the ledger stands, with the log's
// head read in the same snapshot.
type Checkpoint struct {
	Projection string
	Position   uint64
	Head       uint64
}

// Checkpointer is a Log that can also say where the projections stand
// (servicelog: GetProjectionStatus).
type Checkpointer interface {
	Checkpoints(ctx context.Context) ([]Checkpoint, error)
}

// PastHeadReader is a Log that can also see rows past the head row
// (storelog: the events table itself).
type PastHeadReader interface {
	// PastHead returns the head row's position, the lowest position past
	// it and how many rows are past it (0: none).
	PastHead(ctx context.Context) (head, first, n uint64, err error)
}

// anchorCheck is what Verify holds to check anchors while it reads.
type anchorCheck struct {
	ring    *anchor.Keyring
	anchors []anchor.Anchor
	// seen holds the hashes read at the anchors' positions.
	seen map[uint64]eventstore.Hash
}

func newAnchorCheck(as []anchor.Anchor, ring *anchor.Keyring) *anchorCheck {
	if len(as) == 0 {
		return nil
	}
	c := &anchorCheck{ring: ring, anchors: slices.Clone(as), seen: make(map[uint64]eventstore.Hash, len(as))}
	slices.SortStableFunc(c.anchors, func(a, b anchor.Anchor) int { return cmp.Compare(a.Position, b.Position) })
	for _, a := range c.anchors {
		c.seen[a.Position] = eventstore.Hash{}
	}
	return c
}

// read notes r's hash if an anchor names its position.
func (c *anchorCheck) read(r *eventstore.Record) {
	if c == nil {
		return
	}
	if _, ok := c.seen[r.Position]; ok {
		c.seen[r.Position] = r.Hash
	}
}

// check returns the divergence of the first anchor of rep's ledger, by
// position, that disagrees with the log as read (rep.From..rep.To). ended
// says the read reached the log's end (its head), so that an anchor past
// rep.To means the log lost it; otherwise such an anchor is not judged.
func (c *anchorCheck) check(rep *Report, ended bool) *Divergence {
	var before, after int
	for i := range c.anchors {
		a := &c.anchors[i]
		if a.Ledger != rep.Ledger {
			continue
		}
		signed := fmt.Sprintf("signed %s by key %s", a.Time.Format(time.RFC3339), a.KeyID)
		if err := c.ring.Verify(a); err != nil {
			return &Divergence{Kind: KindAnchor, Position: a.Position, Field: "signature",
				Expected: "a signature by a trusted key", Found: err.Error(), Detail: "an anchor that proves nothing: " + signed}
		}
		switch {
		case a.Position+1 == rep.From && rep.Anchor != "":
			// The hash the verification started from (rep.Anchor): the
			// prev_hash stored at From, not read from the event at From-1.
			if want := hex.EncodeToString(a.Hash[:]); rep.Anchor != want {
				return &Divergence{Kind: KindAnchor, Position: a.Position, Field: "hash", Expected: want, Found: rep.Anchor,
					Detail: fmt.Sprintf("the prev_hash at %d, which the verification starts from, is not the hash signed at %d (%s): "+
						"history before %d rewritten and re-sealed", rep.From, a.Position, signed, rep.From)}
			}
			rep.AnchorSigned = true
			rep.Anchors++
			continue
		case a.Position < rep.From:
			before++
			continue
		case a.Position > rep.To && !ended:
			after++
			continue
		case a.Position > rep.To:
			return &Divergence{Kind: KindAnchor, Position: a.Position, Field: "position",
				Expected: fmt.Sprintf("the event at %d, hash %x (%s)", a.Position, a.Hash[:], signed),
				Found:    fmt.Sprintf("the log ends at %d", rep.To),
				Detail:   "events that were signed are gone: a deleted tail or a database rolled back"}
		}
		if h := c.seen[a.Position]; h != a.Hash {
			return &Divergence{Kind: KindAnchor, Position: a.Position, Field: "hash", Expected: hex.EncodeToString(a.Hash[:]),
				Found:  hex.EncodeToString(h[:]),
				Detail: "the event at a signed position is not the one signed (" + signed + "): history rewritten and re-sealed"}
		}
		rep.Anchors++
	}
	if before+after > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d anchors outside positions %d..%d were not checked", before+after, rep.From, rep.To))
	}
	if rep.Anchors == 0 && before+after == 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("none of the %d anchors given is of ledger %s: nothing was checked against them",
			len(c.anchors), rep.Ledger))
	}
	return nil
}

// checkAnchors runs c's check after a read that found div (nil: none),
// and keeps whichever divergence comes first in the log.
func (v *verifier) checkAnchors(c *anchorCheck, ended bool) {
	if c == nil {
		return
	}
	div := v.rep.Divergence
	if div != nil {
		ended = false // the read stopped at div: the anchors past it are not judged
	}
	if d := c.check(v.rep, ended); d != nil && (div == nil || d.Position < div.Position) {
		v.rep.Divergence = d
	}
}

// checkDatabase asks the Log what it can say besides its events: a
// projection ahead of the head, rows past the head.
func (v *verifier) checkDatabase(ctx context.Context) error {
	if cp, ok := v.log.(Checkpointer); ok {
		cps, err := cp.Checkpoints(ctx)
		if err != nil {
			return err
		}
		slices.SortFunc(cps, func(a, b Checkpoint) int { return strings.Compare(a.Projection, b.Projection) })
		for _, c := range cps {
			if c.Position > c.Head {
				v.rep.Divergence = &Divergence{Kind: KindCheckpoint, Position: c.Position, Field: c.Projection,
					Expected: fmt.Sprintf("a checkpoint at most the head, %d", c.Head), Found: fmt.Sprintf("checkpoint %d", c.Position),
					Detail: fmt.Sprintf("projection %s applied %d events the log does not hold: a deleted tail or a database rolled back",
						c.Projection, c.Position-c.Head)}
				return nil
			}
		}
	}
	if ph, ok := v.log.(PastHeadReader); ok {
		head, first, n, err := ph.PastHead(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			v.rep.Divergence = &Divergence{Kind: KindPastHead, Position: first, Expected: fmt.Sprintf("no event past the head, %d", head),
				Found:  fmt.Sprintf("%d events from position %d", n, first),
				Detail: "rows written around the writer, which moves the head row with every append; they block the ledger"}
		}
	}
	return nil
}
