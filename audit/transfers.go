package audit

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Limits of the transfers check.
const (
	// transfersPageMax is the transfers of one ListTransfers page: the most
	// ledgerd serves.
	transfersPageMax = 1000
	// transfersProgressEvery is how often Verify, waiting for the transfers
	// check, reports how far it is.
	transfersProgressEvery = 100 * time.Millisecond
)

// The buckets of the transfers check (Options can make them small, for
// tests: export_test.go).
const (
	// transferBucketSpan is the positions one digest bucket covers: a
	// bucket that differs is compared transfer by transfer, so it bounds
	// the views the second read of the log keeps for it.
	transferBucketSpan = 1024
	// transferBucketsPerRead bounds the buckets one second read of the log
	// compares transfer by transfer (their views are kept): more take more
	// reads.
	transferBucketsPerRead = 64
)

// The transfers check keeps in memory only the transfers that may still
// change: open holds and transfers partly reversed (as the domain's state
// keeps what each of those has had reversed). The replay sums a
// digest of each transfer's expected view (keyed by the run's seed) into a
// bucket by the transfer's position; a transfer that changes later (a hold
// resolved or expired, a transfer reversed) takes its old digest out of its
// bucket and puts its new one in. The original of a reversal that is not
// kept is read from the log again, as the import checker does. The served
// transfers, listed in position order up to To, are summed the same way.
// Only the buckets that differ are compared transfer by transfer, in a
// second read of the log.

// transferView is a transfer as the transfers read model serves it, in the
// form both sides are compared in.
type transferView struct {
	id                                 string
	kind                               ledgerv1.TransferKind
	status                             ledgerv1.TransferStatus
	position                           uint64
	postings                           []transferPosting
	reference, metadata                string // metadata: metadataText
	effectiveAt, recordedAt, expiresAt int64  // lineTime; expiresAt 0: none
	pendingID, resolvedBy, reverses    string
	reversedBy                         []string
	alert                              string // a rule's hold's

	// original and done are the expected side's: the postings as the
	// transfer holds or posts them, and what has been reversed of each.
	original []domain.Posting
	done     []domain.Units
}

// transferPosting is a posting with its amounts as decimal text; remaining
// is a hold's, reversed a transfer's or post's, "" where none.
type transferPosting struct {
	debit, credit, asset, amount, remaining, reversed string
}

// expectedTransfer is the transfer e creates, as it stands when created;
// false for an event that creates none.
func expectedTransfer(r *eventstore.Record, e domain.Event) (*transferView, bool) {
	v := &transferView{status: ledgerv1.TransferStatus_TRANSFER_STATUS_POSTED}
	switch e := e.(type) {
	case domain.TransferCommitted:
		v.kind = ledgerv1.TransferKind_TRANSFER_KIND_TRANSFER
		v.setPostings(e.Postings, false, true)
	case domain.TransferPending:
		v.kind, v.status = ledgerv1.TransferKind_TRANSFER_KIND_PENDING, ledgerv1.TransferStatus_TRANSFER_STATUS_PENDING
		v.setPostings(e.Postings, true, false)
		v.alert = e.Alert
		if e.ExpiresAt != nil {
			v.expiresAt = lineTime(*e.ExpiresAt)
		}
	case domain.PendingPosted:
		v.kind, v.pendingID = ledgerv1.TransferKind_TRANSFER_KIND_POST, e.PendingID
		posted, _ := domain.ReversiblePostings(e)
		v.setPostings(posted, false, true)
	case domain.PendingVoided:
		v.kind, v.pendingID = ledgerv1.TransferKind_TRANSFER_KIND_VOID, e.PendingID
		v.setPostings(e.Postings, false, false)
	case domain.TransferReversed:
		v.kind, v.reverses = ledgerv1.TransferKind_TRANSFER_KIND_REVERSAL, e.TransferID
		v.setPostings(e.Postings, false, false)
	default:
		return nil, false // an expiry changes a hold, and creates nothing
	}
	// A void has no business time, metadata or its own: the header says so.
	h, _ := domain.HeaderOf(e)
	v.id, v.position, v.reference, v.metadata = h.ID, r.Position, h.Reference, metadataText(h.Metadata)
	v.effectiveAt, v.recordedAt = lineTime(h.Effective(r.RecordedAt)), lineTime(r.RecordedAt)
	return v, true
}

// setPostings sets ps as v's postings, as the read model serves them when
// the transfer is created: a hold's (held) still hold all of their amount,
// a transfer's or post's (reversible) have had nothing reversed, and the
// others show neither. It keeps ps for the scales and amounts that a
// resolution and a reversal need.
func (v *transferView) setPostings(ps []domain.Posting, held, reversible bool) {
	v.original = ps
	v.postings = make([]transferPosting, len(ps))
	for i, p := range ps {
		tp := transferPosting{debit: p.Debit, credit: p.Credit, asset: p.Asset, amount: p.Amount.String()}
		if held {
			tp.remaining = tp.amount
		}
		if reversible {
			tp.reversed = zeroText(p.Amount.Scale)
		}
		v.postings[i] = tp
	}
}

// zeroTexts are zero at the scales of assets ("0", "0.0", ...): what a
// transfer's postings show reversed until they are.
var zeroTexts = func() (z [domain.ScaleMax + 1]string) {
	for i := range z {
		z[i] = domain.Amount{Scale: uint8(i)}.String()
	}
	return z
}()

// zeroText is zero at scale.
func zeroText(scale uint8) string {
	if int(scale) < len(zeroTexts) {
		return zeroTexts[scale]
	}
	return domain.Amount{Scale: scale}.String()
}

// change applies e to v, the transfer it changes (domain.ChangedID): a
// hold resolved or expired, a transfer or post reversed.
//
// Errors: those of reverse.
func (v *transferView) change(e domain.Event) error {
	switch e := e.(type) {
	case domain.PendingPosted:
		v.resolve(ledgerv1.TransferStatus_TRANSFER_STATUS_PENDING_POSTED, e.ID)
	case domain.PendingVoided:
		v.resolve(ledgerv1.TransferStatus_TRANSFER_STATUS_VOIDED, e.ID)
	case domain.PendingExpired:
		v.resolve(ledgerv1.TransferStatus_TRANSFER_STATUS_EXPIRED, "")
	case domain.TransferReversed:
		return v.reverse(&e)
	}
	return nil
}

// resolve ends a hold: posted, voided or expired (by is the post or void,
// "" for an expiry). It holds nothing any more.
func (v *transferView) resolve(status ledgerv1.TransferStatus, by string) {
	for i := range v.postings {
		v.postings[i].remaining = zeroText(v.original[i].Amount.Scale)
	}
	v.status, v.resolvedBy = status, by
}

// reverse adds a reversal to v, by the domain's rule.
//
// Errors: a reversal the rule refuses, which the import checker refused
// first: a bug of this package.
func (v *transferView) reverse(e *domain.TransferReversed) error {
	next, err := domain.CheckReversal(v.original, v.done, e.Postings)
	if err != nil {
		return fmt.Errorf("audit: reversal %s of %s: %w: a bug of the auditor", e.ID, e.TransferID, err)
	}
	v.done = next
	full := true
	for i := range v.postings {
		v.postings[i].reversed = domain.Amount{Units: next[i], Scale: v.original[i].Amount.Scale}.String()
		full = full && next[i].Cmp(v.original[i].Amount.Units) == 0
	}
	v.status = ledgerv1.TransferStatus_TRANSFER_STATUS_PARTIALLY_REVERSED
	if full {
		v.status = ledgerv1.TransferStatus_TRANSFER_STATUS_REVERSED
	}
	v.reversedBy = append(v.reversedBy, e.ID)
	return nil
}

// servedTransfer is a served transfer in the form the expected ones take.
func servedTransfer(t *ledgerv1.TransferView) *transferView {
	v := &transferView{id: t.GetId(), kind: t.GetKind(), status: t.GetStatus(), position: t.GetPosition(),
		reference: t.GetReference(), metadata: metadataText(t.GetMetadata()),
		effectiveAt: lineTime(t.GetEffectiveAt().AsTime()), recordedAt: lineTime(t.GetRecordedAt().AsTime()),
		pendingID: t.GetPendingId(), resolvedBy: t.GetResolvedBy(), reverses: t.GetReverses(), reversedBy: t.GetReversedBy(),
		alert: t.GetAlert(), postings: make([]transferPosting, len(t.GetPostings()))}
	if t.GetExpiresAt() != nil {
		v.expiresAt = lineTime(t.GetExpiresAt().AsTime())
	}
	for i, p := range t.GetPostings() {
		v.postings[i] = transferPosting{debit: p.GetDebitAccount(), credit: p.GetCreditAccount(), asset: p.GetAsset(),
			amount: p.GetAmount(), remaining: p.GetRemaining(), reversed: p.GetReversed()}
	}
	return v
}

// digest is v's digest under seed: every field served. scratch is reused
// for the bytes digested.
func (v *transferView) digest(seed maphash.Seed, scratch *[]byte) uint64 {
	b := (*scratch)[:0]
	defer func() { *scratch = b }()
	for _, n := range [...]uint64{v.position, uint64(v.kind), uint64(v.status), uint64(len(v.postings)), uint64(len(v.reversedBy))} {
		b = binary.AppendUvarint(b, n)
	}
	for _, t := range [...]int64{v.effectiveAt, v.recordedAt, v.expiresAt} {
		b = binary.AppendVarint(b, t)
	}
	text := func(s string) {
		b = append(b, s...)
		b = append(b, 0) // no field holds a NUL
	}
	for _, s := range [...]string{v.id, v.reference, v.metadata, v.pendingID, v.resolvedBy, v.reverses, v.alert} {
		text(s)
	}
	for _, s := range v.reversedBy {
		text(s)
	}
	for i := range v.postings {
		p := &v.postings[i]
		for _, s := range [...]string{p.debit, p.credit, p.asset, p.amount, p.remaining, p.reversed} {
			text(s)
		}
	}
	return maphash.Bytes(seed, b)
}

// transferBucket sums the digests of the transfers at its positions.
type transferBucket struct {
	sum uint64
	n   int64
}

// transferBuckets are the sums of a side, bucket i covering positions
// [i*span, (i+1)*span).
type transferBuckets struct {
	span uint64
	b    []transferBucket
	// scratch holds the bytes of a digest, reused (a side is summed by one
	// goroutine).
	scratch []byte
}

// add puts v's digest in (sign 1) or takes it out (-1).
func (bs *transferBuckets) add(seed maphash.Seed, v *transferView, sign int64) {
	i := int(v.position / bs.span)
	for len(bs.b) <= i {
		bs.b = append(bs.b, transferBucket{})
	}
	b := &bs.b[i]
	b.sum += uint64(sign) * v.digest(seed, &bs.scratch)
	b.n += sign
}

// transferBook follows the transfers the log creates and changes, keeping
// the digests of their views as of the last event applied.
type transferBook struct {
	seed    maphash.Seed
	buckets transferBuckets
	// live are the transfers that may still change and are kept: open
	// holds, transfers partly reversed.
	live map[string]*transferView
	// prior reads an earlier record of the log again, and its event
	// (ImportChecker.priorEvent).
	prior func(pos uint64) (eventstore.Record, domain.Event, error)
}

// newTransferBook returns an empty book whose digests are keyed by seed
// (the statements') in buckets of span positions; prior reads earlier
// records of the log.
func newTransferBook(seed maphash.Seed, span uint64, prior func(pos uint64) (eventstore.Record, domain.Event, error)) *transferBook {
	return &transferBook{seed: seed, buckets: transferBuckets{span: span}, live: map[string]*transferView{}, prior: prior}
}

// count is how many transfers the book holds.
func (b *transferBook) count() uint64 {
	n := int64(0)
	for i := range b.buckets.b {
		n += b.buckets.b[i].n
	}
	return uint64(n)
}

// original is the transfer created at pos, as it was created.
//
// Errors: the log's; a position that holds no transfer (a bug of this
// package: the import checker found the transfer there).
func (b *transferBook) original(pos uint64) (*transferView, error) {
	r, e, err := b.prior(pos)
	if err != nil {
		return nil, err
	}
	v, ok := expectedTransfer(&r, e)
	if !ok {
		return nil, fmt.Errorf("audit: position %d holds no transfer: a bug of the auditor", pos)
	}
	return v, nil
}

// apply follows r, whose event e the domain has applied.
//
// Errors: change's.
func (b *transferBook) apply(r *eventstore.Record, e domain.Event) error {
	if id, ok := domain.ChangedID(e); ok {
		if err := b.change(id, e); err != nil {
			return err
		}
	}
	v, ok := expectedTransfer(r, e)
	if !ok {
		return nil
	}
	b.buckets.add(b.seed, v, 1)
	if v.kind == ledgerv1.TransferKind_TRANSFER_KIND_PENDING {
		b.live[v.id] = v
	}
	return nil
}

// change applies e to the earlier transfer id: an open hold, kept; a
// transfer reversed in part before, kept; else one read again from the log
// as it was created (the first reversal of a transfer).
//
// Errors: a hold the book does not hold open, or a reversal the domain's
// rule refuses (bugs of this package: the domain applied the event); the
// original's read from the log.
func (b *transferBook) change(id string, e domain.Event) error {
	t, ok := b.live[id]
	if !ok {
		r, isReversal := e.(domain.TransferReversed)
		if !isReversal {
			return fmt.Errorf("audit: hold %s is not open in the transfers' book: a bug of the auditor", id)
		}
		var err error
		if t, err = b.original(r.TransferPosition); err != nil {
			return err
		}
	}
	b.buckets.add(b.seed, t, -1)
	if err := t.change(e); err != nil {
		return err
	}
	b.buckets.add(b.seed, t, 1)
	if t.status == ledgerv1.TransferStatus_TRANSFER_STATUS_PARTIALLY_REVERSED {
		b.live[id] = t
	} else {
		delete(b.live, id) // resolved, or reversed in full: final
	}
	return nil
}

// transfers compares every transfer of ledger served up to at (To) with
// the replay's. It runs beside the other checks, and reports its progress
// through report. Started before the log is read (at is then its head),
// it lists the served transfers beside the replay and waits for it to
// compare them; a listing that failed then (projections that had not
// reached at in time, say) is made again.
//
// Errors: a call or read that failed; those of a second read of the log.
func (v *verifier) transfers(ctx context.Context, ledger string, at uint64,
	report func(phase string, done, total uint64)) (*Divergence, error) {
	seed, span := v.book.seed, cmp.Or(v.opts.transferBucketSpan, transferBucketSpan)
	replayed := func() bool {
		select {
		case <-v.replayed:
			return true
		default:
			return false
		}
	}
	list := func() (transferBuckets, uint64, error) {
		got, listed := transferBuckets{span: span}, uint64(0)
		err := v.listTransfers(ctx, ledger, at, func(t *ledgerv1.TransferView, _ uint64) error {
			got.add(seed, servedTransfer(t), 1)
			if listed++; listed%transfersPageMax == 0 && replayed() {
				total := v.tbook.count()
				report("transfers", min(listed, total), total)
			}
			return nil
		})
		return got, listed, err
	}
	early := !replayed()
	got, listed, err := list()
	select {
	case <-v.replayed:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err != nil && early && ctx.Err() == nil {
		got, listed, err = list()
	}
	if err != nil {
		return nil, err
	}
	want := v.tbook
	total := want.count()
	report("transfers", min(listed, total), total)
	var differ []int
	for i := range max(len(want.buckets.b), len(got.b)) {
		var w, g transferBucket
		if i < len(want.buckets.b) {
			w = want.buckets.b[i]
		}
		if i < len(got.b) {
			g = got.b[i]
		}
		if w != g {
			differ = append(differ, i)
		}
	}
	// In position order, a few buckets a read: the first divergence found
	// is the lowest.
	perRead := cmp.Or(v.opts.transferBucketsPerRead, transferBucketsPerRead)
	rounds := (len(differ) + perRead - 1) / perRead
	for round := 1; len(differ) > 0; round++ {
		n := min(len(differ), perRead)
		phase := "transfers again"
		if rounds > 1 {
			phase = fmt.Sprintf("transfers again, %d of %d", round, rounds)
		}
		d, err := v.recheckTransfers(ctx, differ[:n], func(done, total uint64) { report(phase, done, total) })
		if d != nil || err != nil {
			return d, err
		}
		differ = differ[n:]
	}
	return nil, nil
}

// listTransfers hands each transfer of ledger served at positions up to at
// to f, in position order, with the position its page reflects (the
// projection's checkpoint, read in the same snapshot as the page's rows).
//
// Errors: a call that failed; f's.
func (v *verifier) listTransfers(ctx context.Context, ledger string, at uint64,
	f func(t *ledgerv1.TransferView, page uint64) error) error {
	req := &ledgerv1.ListTransfersRequest{Ledger: ledger, MinPosition: at, Limit: transfersPageMax}
	// Positions only go up (one transfer an event), up to at: that bounds
	// the listing, whatever the cursors.
	last := uint64(0)
	for {
		resp, err := v.listTransfersPage(ctx, req)
		if err != nil {
			return err
		}
		for _, t := range resp.GetTransfers() {
			if t.GetPosition() > at {
				return nil // created after the verified head
			}
			if t.GetPosition() <= last {
				return fmt.Errorf("transfers up to %d: ledgerd served %s at position %d after position %d: %w",
					at, t.GetId(), t.GetPosition(), last, errOutOfOrder)
			}
			last = t.GetPosition()
			if err := f(t, resp.GetPosition()); err != nil {
				return err
			}
		}
		if resp.GetNextCursor() == "" || len(resp.GetTransfers()) == 0 {
			return nil
		}
		req.Cursor = resp.GetNextCursor()
	}
}

// errOutOfOrder: a listing that is not in its order (transfers by position,
// accounts by id), or repeats an item.
var errOutOfOrder = errors.New("out of order")

// listTransfersPage is one ListTransfers call, bounded by callTimeout.
func (v *verifier) listTransfersPage(ctx context.Context, req *ledgerv1.ListTransfersRequest) (*ledgerv1.ListTransfersResponse, error) {
	return unary(ctx, fmt.Sprintf("transfers up to %d", req.GetMinPosition()), v.proj.ListTransfers, req)
}

// transfersCheck is the transfers check running beside the others. Its
// progress is held until Verify waits for it: one phase is reported at a
// time.
type transfersCheck struct {
	done   chan struct{}
	cancel context.CancelFunc
	d      *Divergence
	err    error

	mu sync.Mutex
	// phases holds the last report of each phase, in order.
	phases []Progress
}

// startTransfers starts the transfers check of ledger up to at: it reads
// ledgerd's transfers while the replay, or the other checks, read the rest.
func (v *verifier) startTransfers(ctx context.Context, ledger string, at uint64) *transfersCheck {
	ctx, cancel := context.WithCancel(ctx)
	c := &transfersCheck{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(c.done)
		c.d, c.err = v.transfers(ctx, ledger, at, func(phase string, done, total uint64) {
			c.mu.Lock()
			defer c.mu.Unlock()
			p := Progress{Phase: phase, Done: done, Total: total}
			if n := len(c.phases); n > 0 && c.phases[n-1].Phase == phase {
				c.phases[n-1] = p
			} else {
				c.phases = append(c.phases, p)
			}
		})
	}()
	return c
}

// stop ends the check, if it runs still, and waits for it.
func (c *transfersCheck) stop() {
	c.cancel()
	<-c.done
}

// waitTransfers waits for the check, reporting its progress meanwhile (each
// phase's last report, in order), and puts its count in the report.
//
// Errors: the check's.
func (v *verifier) waitTransfers(c *transfersCheck) (*Divergence, error) {
	tick := time.NewTicker(transfersProgressEvery)
	defer tick.Stop()
	sent, last := 0, Progress{}
	forward := func() {
		c.mu.Lock()
		phases := append([]Progress(nil), c.phases[min(sent, len(c.phases)):]...)
		c.mu.Unlock()
		for i, p := range phases {
			if p != last {
				v.progress(p.Phase, p.Done, p.Total)
				last = p
			}
			if i < len(phases)-1 {
				sent++ // a phase over: its last report is sent
			}
		}
	}
	for waiting := true; waiting; {
		select {
		case <-c.done:
			waiting = false
		case <-tick.C:
		}
		forward()
	}
	if c.err != nil {
		return nil, c.err
	}
	v.rep.Transfers = v.tbook.count()
	return c.d, nil
}
