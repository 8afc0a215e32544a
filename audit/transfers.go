package audit

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Limits of the transfers check.
const (
	// transfersPageMax is the transfers of one ListTransfers page: the most
	// ledgerd serves.
	transfersPageMax = 1000
	// transferBucketSpan is the positions one digest bucket covers: a
	// bucket that differs is compared transfer by transfer, so it bounds
	// the views the second read of the log keeps for it.
	transferBucketSpan = 1024
	// transferRecheckBucketsMax bounds the buckets compared transfer by
	// transfer.
	transferRecheckBucketsMax = 64
)

// The transfers check keeps in memory only the transfers that may still
// change: open holds and transfers partly reversed. The replay sums a
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
	h, _ := domain.HeaderOf(e)
	v := &transferView{id: h.ID, status: ledgerv1.TransferStatus_TRANSFER_STATUS_POSTED, position: r.Position,
		reference: h.Reference, metadata: metadataText(h.Metadata), effectiveAt: lineTime(h.Effective(r.RecordedAt)),
		recordedAt: lineTime(r.RecordedAt)}
	switch e := e.(type) {
	case domain.TransferCommitted:
		v.kind = ledgerv1.TransferKind_TRANSFER_KIND_TRANSFER
		v.setPostings(e.Postings, false, true)
	case domain.TransferPending:
		v.kind, v.status = ledgerv1.TransferKind_TRANSFER_KIND_PENDING, ledgerv1.TransferStatus_TRANSFER_STATUS_PENDING
		v.setPostings(e.Postings, true, false)
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
		return nil, false
	}
	return v, true
}

// setPostings sets ps as v's postings: a hold's still hold all of their
// amount, a transfer's or post's have had nothing reversed.
func (v *transferView) setPostings(ps []domain.Posting, held, reversible bool) {
	v.original = ps
	v.postings = make([]transferPosting, len(ps))
	for i, p := range ps {
		tp := transferPosting{debit: p.Debit, credit: p.Credit, asset: p.Asset, amount: p.Amount.String()}
		if held {
			tp.remaining = tp.amount
		}
		if reversible {
			tp.reversed = domain.Amount{Scale: p.Amount.Scale}.String()
		}
		v.postings[i] = tp
	}
}

// change applies e to v, the transfer it changes (domain.ChangedID).
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
		v.postings[i].remaining = domain.Amount{Scale: v.original[i].Amount.Scale}.String()
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
		postings: make([]transferPosting, len(t.GetPostings()))}
	if t.GetExpiresAt() != nil {
		v.expiresAt = lineTime(t.GetExpiresAt().AsTime())
	}
	for i, p := range t.GetPostings() {
		v.postings[i] = transferPosting{debit: p.GetDebitAccount(), credit: p.GetCreditAccount(), asset: p.GetAsset(),
			amount: p.GetAmount(), remaining: p.GetRemaining(), reversed: p.GetReversed()}
	}
	return v
}

// digest is v's digest under seed: every field served.
func (v *transferView) digest(seed maphash.Seed) uint64 {
	b := make([]byte, 0, 256)
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
	for _, s := range [...]string{v.id, v.reference, v.metadata, v.pendingID, v.resolvedBy, v.reverses} {
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
// [i*transferBucketSpan, (i+1)*transferBucketSpan).
type transferBuckets []transferBucket

// add puts v's digest in (sign 1) or takes it out (-1).
func (bs *transferBuckets) add(seed maphash.Seed, v *transferView, sign int64) {
	i := int(v.position / transferBucketSpan)
	for len(*bs) <= i {
		*bs = append(*bs, transferBucket{})
	}
	b := &(*bs)[i]
	b.sum += uint64(sign) * v.digest(seed)
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
	// original reads the transfer created at a position again from the log.
	original func(pos uint64) (*transferView, error)
	count    uint64
}

func newTransferBook(seed maphash.Seed, prior ImportPrior) *transferBook {
	b := &transferBook{seed: seed, live: map[string]*transferView{}}
	b.original = func(pos uint64) (*transferView, error) {
		r, err := prior(pos)
		if err != nil {
			return nil, fmt.Errorf("read position %d again: %w", pos, err)
		}
		e, err := domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload)
		if err != nil {
			return nil, fmt.Errorf("read position %d again: %w", pos, err)
		}
		v, ok := expectedTransfer(&r, e)
		if !ok {
			return nil, fmt.Errorf("audit: position %d holds no transfer: a bug of the auditor", pos)
		}
		return v, nil
	}
	return b
}

// apply follows r, whose event e the domain has applied.
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
	b.count++
	if v.kind == ledgerv1.TransferKind_TRANSFER_KIND_PENDING {
		b.live[v.id] = v
	}
	return nil
}

// change applies e to the earlier transfer id: an open hold, kept; a
// transfer reversed in part before, kept; else one read again from the log
// as it was created (the first reversal of a transfer).
//
// Errors: a hold the book does not hold open, a bug of this package.
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

// transfers compares every transfer served up to To with the replay's, and
// returns its notes: it runs beside the other checks, and leaves the report
// to Verify.
func (v *verifier) transfers(ctx context.Context, report func(phase string, done, total uint64)) (*Divergence, []string, error) {
	want := v.tbook
	var got transferBuckets
	listed := uint64(0)
	err := v.listTransfers(ctx, func(t *ledgerv1.TransferView) error {
		got.add(want.seed, servedTransfer(t), 1)
		listed++
		if listed%transfersPageMax == 0 {
			report("transfers", min(listed, want.count), want.count)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	report("transfers", min(listed, want.count), want.count)
	var differ []int
	for i := range max(len(want.buckets), len(got)) {
		var w, g transferBucket
		if i < len(want.buckets) {
			w = want.buckets[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			differ = append(differ, i)
		}
	}
	if len(differ) == 0 {
		return nil, nil, nil
	}
	var notes []string
	if len(differ) > transferRecheckBucketsMax {
		notes = append(notes, fmt.Sprintf("the transfers of %d ranges of %d positions differ; the first %d "+
			"were compared transfer by transfer", len(differ), transferBucketSpan, transferRecheckBucketsMax))
		differ = differ[:transferRecheckBucketsMax]
	}
	d, later, err := v.recheckTransfers(ctx, differ, func(done, total uint64) { report("transfers again", done, total) })
	return d, append(notes, later...), err
}

// listTransfers hands each transfer served at positions up to To to f, in
// position order.
func (v *verifier) listTransfers(ctx context.Context, f func(*ledgerv1.TransferView) error) error {
	at := v.rep.To
	req := &ledgerv1.ListTransfersRequest{Ledger: v.rep.Ledger, MinPosition: at, Limit: transfersPageMax}
	for {
		resp, err := v.listTransfersPage(ctx, req)
		if err != nil {
			return err
		}
		for _, t := range resp.GetTransfers() {
			if t.GetPosition() > at {
				return nil // created after the verified head
			}
			if err := f(t); err != nil {
				return err
			}
		}
		if resp.GetNextCursor() == "" || len(resp.GetTransfers()) == 0 {
			return nil
		}
		req.Cursor = resp.GetNextCursor()
	}
}

func (v *verifier) listTransfersPage(ctx context.Context, req *ledgerv1.ListTransfersRequest) (*ledgerv1.ListTransfersResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := v.proj.ListTransfers(ctx, req, grpc.MaxCallRecvMsgSize(callRecvMax))
	if err != nil {
		return nil, CallError(fmt.Sprintf("transfers up to %d", req.GetMinPosition()), err)
	}
	return resp, nil
}

// recheckTransfers reads the log again, to its head as of now, keeping the
// expected views of the transfers in buckets, and compares each with the
// one served. A transfer changed after To (the log went on meanwhile) is
// served as it is now: only what it was created with is compared. It
// returns the divergence of the lowest position, and a note of the
// transfers changed after To when nothing else differs.
func (v *verifier) recheckTransfers(ctx context.Context, buckets []int, progress func(done, total uint64)) (*Divergence, []string, error) {
	keep := make(map[uint64]bool, len(buckets))
	for _, i := range buckets {
		keep[uint64(i)] = true
	}
	views := map[string]*transferView{}
	byPosition := map[uint64]*transferView{}
	later := map[string]bool{} // changed after To
	to := v.rep.To
	head, err := v.log.Head(ctx)
	if err != nil {
		return nil, nil, err
	}
	changed, err := v.reread(ctx, head, progress, func(r *eventstore.Record, e domain.Event) (*Divergence, error) {
		if r.Position <= to {
			return nil, followKept(r, e, views, byPosition, keep)
		}
		// Past the verified head: only which kept transfers change.
		if id, ok := domain.ChangedID(e); ok && views[id] != nil {
			later[id] = true
		}
		return nil, nil
	})
	if changed != nil || err != nil {
		return changed, nil, err
	}
	var best *Divergence
	seen := map[uint64]bool{}
	err = v.listTransfers(ctx, func(t *ledgerv1.TransferView) error {
		if !keep[t.GetPosition()/transferBucketSpan] {
			return nil
		}
		got := servedTransfer(t)
		want := byPosition[got.position]
		var d *Divergence
		switch {
		case want == nil || seen[got.position]:
			d = &Divergence{Kind: KindTransfer, Position: got.position, Field: "id", Expected: "no transfer",
				Found: got.id, Detail: "transfer " + got.id + " (transfers projection)"}
		default:
			seen[got.position] = true
			if f := diffTransfer(want, got, later[want.id]); f != nil {
				d = &Divergence{Kind: KindTransfer, Position: got.position, Field: f.name, Expected: f.expected,
					Found: f.found, Detail: "transfer " + want.id + " (transfers projection)"}
			}
		}
		if lower(d, best) {
			best = d
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for pos, want := range byPosition {
		if d := (&Divergence{Kind: KindTransfer, Position: pos, Field: "id", Expected: want.id, Found: "no transfer",
			Detail: "transfer " + want.id + " (transfers projection)"}); !seen[pos] && lower(d, best) {
			best = d
		}
	}
	if best == nil && len(later) > 0 {
		return nil, []string{fmt.Sprintf("%d transfers changed after position %d: their status, "+
			"remaining and reversed amounts and reversals were not compared", len(later), to)}, nil
	}
	return best, nil, nil
}

// transfersCheck is the transfers check running beside the others. Its
// progress is held until Verify waits for it: one phase is reported at a
// time.
type transfersCheck struct {
	done   chan struct{}
	cancel context.CancelFunc
	d      *Divergence
	notes  []string
	err    error

	mu       sync.Mutex
	progress Progress // the last reported
}

// startTransfers starts the transfers check: it reads ledgerd's transfers
// while the other checks read the rest.
func (v *verifier) startTransfers(ctx context.Context) *transfersCheck {
	ctx, cancel := context.WithCancel(ctx)
	c := &transfersCheck{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(c.done)
		c.d, c.notes, c.err = v.transfers(ctx, func(phase string, done, total uint64) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.progress = Progress{Phase: phase, Done: done, Total: total}
		})
	}()
	return c
}

// stop ends the check, if it runs still, and waits for it.
func (c *transfersCheck) stop() {
	c.cancel()
	<-c.done
}

// waitTransfers waits for the check, reporting its progress meanwhile, and
// puts its notes and count in the report.
func (v *verifier) waitTransfers(c *transfersCheck) (*Divergence, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last Progress
	forward := func() {
		c.mu.Lock()
		p := c.progress
		c.mu.Unlock()
		if p != last && p.Phase != "" {
			v.progress(p.Phase, p.Done, p.Total)
			last = p
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
	v.rep.Notes = append(v.rep.Notes, c.notes...)
	v.rep.Transfers = v.tbook.count
	return c.d, nil
}

// followKept applies r's event to the kept views: it creates one in a kept
// bucket, or changes one kept.
func followKept(r *eventstore.Record, e domain.Event, views map[string]*transferView,
	byPosition map[uint64]*transferView, keep map[uint64]bool) error {
	if id, ok := domain.ChangedID(e); ok && views[id] != nil {
		if err := views[id].change(e); err != nil {
			return err
		}
	}
	if !keep[r.Position/transferBucketSpan] {
		return nil
	}
	if t, ok := expectedTransfer(r, e); ok {
		views[t.id], byPosition[t.position] = t, t
	}
	return nil
}

// diffTransfer compares an expected transfer with a served one; with later,
// the served one changed after the verified head, and only what it was
// created with is compared.
func diffTransfer(want, got *transferView, later bool) *field {
	fields := []field{
		{"id", want.id, got.id},
		{"kind", enumText(want.kind.String(), "TRANSFER_KIND_"), enumText(got.kind.String(), "TRANSFER_KIND_")},
		{"postings", strconv.Itoa(len(want.postings)), strconv.Itoa(len(got.postings))},
	}
	if f := firstDiff(fields); f != nil {
		return f
	}
	for i := range want.postings {
		w, g := &want.postings[i], &got.postings[i]
		at := fmt.Sprintf("postings[%d].", i)
		fields = append(fields, field{at + "debit_account", w.debit, g.debit}, field{at + "credit_account", w.credit, g.credit},
			field{at + "asset", w.asset, g.asset}, field{at + "amount", w.amount, g.amount})
		if !later {
			fields = append(fields, field{at + "remaining", w.remaining, g.remaining}, field{at + "reversed", w.reversed, g.reversed})
		}
	}
	fields = append(fields,
		field{"reference", want.reference, got.reference},
		field{"metadata", want.metadata, got.metadata},
		field{"effective_at", lineTimeText(want.effectiveAt), lineTimeText(got.effectiveAt)},
		field{"recorded_at", lineTimeText(want.recordedAt), lineTimeText(got.recordedAt)},
		field{"expires_at", expiryText(want.expiresAt), expiryText(got.expiresAt)},
		field{"pending_id", want.pendingID, got.pendingID},
		field{"reverses", want.reverses, got.reverses})
	if !later {
		fields = append(fields,
			field{"status", enumText(want.status.String(), "TRANSFER_STATUS_"), enumText(got.status.String(), "TRANSFER_STATUS_")},
			field{"resolved_by", want.resolvedBy, got.resolvedBy},
			field{"reversed_by", strings.Join(want.reversedBy, ","), strings.Join(got.reversedBy, ",")})
	}
	return firstDiff(fields)
}

// enumText is an enum's name as the read model stores it: posted, not
// TRANSFER_STATUS_POSTED.
func enumText(name, prefix string) string { return strings.ToLower(strings.TrimPrefix(name, prefix)) }

func expiryText(us int64) string {
	if us == 0 {
		return "none"
	}
	return lineTimeText(us)
}
