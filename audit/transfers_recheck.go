package audit

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// servedAt is a served transfer and the position its page reflects.
type servedAt struct {
	view *transferView
	page uint64
}

// recheckTransfers compares the transfers of buckets (a few: their views
// are kept) one by one, and returns the divergence of the
// lowest position. It lists the served transfers of those buckets with the
// position each page reflects, then reads the log again up to the highest
// of them, building each expected transfer as of its own page: created by
// To, and changed by the events up to To and by those after To that its
// page had applied (writes may go on while Verify runs, and a transfer a
// page shows is as the projection left it at the page's position).
//
// Errors: a call or read that failed; a change the domain's rule refuses
// (a bug of this package).
func (v *verifier) recheckTransfers(ctx context.Context, buckets []int, progress func(done, total uint64)) (*Divergence, error) {
	span := v.tbook.buckets.span
	keep := make(map[uint64]bool, len(buckets))
	for _, i := range buckets {
		keep[uint64(i)] = true
	}
	to := v.rep.To
	until := to
	got := map[uint64]servedAt{} // by position
	err := v.listTransfers(ctx, v.rep.Ledger, to, func(t *ledgerv1.TransferView, page uint64) error {
		until = max(until, page)
		if !keep[t.GetPosition()/span] {
			return nil
		}
		s := servedTransfer(t)
		got[s.position] = servedAt{view: s, page: page} // one a position: listTransfers holds them to it
		return nil
	})
	if err != nil {
		return nil, err
	}
	want := map[string]*transferView{} // by id
	byPosition := map[uint64]*transferView{}
	changed, err := v.reread(ctx, until, progress, func(r *eventstore.Record, e domain.Event) (*Divergence, error) {
		if id, ok := domain.ChangedID(e); ok {
			if t := want[id]; t != nil && (r.Position <= to || r.Position <= got[t.position].page) {
				if err := t.change(e); err != nil {
					return nil, err
				}
			}
		}
		if r.Position <= to && keep[r.Position/span] {
			if t, ok := expectedTransfer(r, e); ok {
				want[t.id], byPosition[t.position] = t, t
			}
		}
		return nil, nil
	})
	if changed != nil || err != nil {
		return changed, err
	}
	var best *Divergence
	for pos, w := range byPosition {
		d := &Divergence{Kind: KindTransfer, Position: pos, Field: "id", Expected: w.id, Found: "no transfer",
			Detail: "transfer " + w.id + " (transfers projection)"}
		if s, ok := got[pos]; ok {
			f := diffTransfer(w, s.view)
			if f == nil {
				continue
			}
			d.Field, d.Expected, d.Found = f.name, f.expected, f.found
			d.Detail = fmt.Sprintf("transfer %s (transfers projection, as of position %d)", w.id, max(s.page, to))
		}
		if lower(d, best) {
			best = d
		}
	}
	for pos, s := range got {
		if byPosition[pos] != nil {
			continue
		}
		if d := (&Divergence{Kind: KindTransfer, Position: pos, Field: "id", Expected: "no transfer", Found: s.view.id,
			Detail: "transfer " + s.view.id + " (transfers projection)"}); lower(d, best) {
			best = d
		}
	}
	return best, nil
}

// diffTransfer compares an expected transfer with a served one.
func diffTransfer(want, got *transferView) *field {
	fields := []field{
		{"id", want.id, got.id},
		{"kind", enumText(want.kind.String(), "TRANSFER_KIND_"), enumText(got.kind.String(), "TRANSFER_KIND_")},
		{"status", enumText(want.status.String(), "TRANSFER_STATUS_"), enumText(got.status.String(), "TRANSFER_STATUS_")},
		{"postings", strconv.Itoa(len(want.postings)), strconv.Itoa(len(got.postings))},
	}
	if f := firstDiff(fields); f != nil {
		return f
	}
	for i := range want.postings {
		w, g := &want.postings[i], &got.postings[i]
		at := fmt.Sprintf("postings[%d].", i)
		fields = append(fields, field{at + "debit_account", w.debit, g.debit}, field{at + "credit_account", w.credit, g.credit},
			field{at + "asset", w.asset, g.asset}, field{at + "amount", w.amount, g.amount},
			field{at + "remaining", w.remaining, g.remaining}, field{at + "reversed", w.reversed, g.reversed})
	}
	return firstDiff(append(fields,
		field{"reference", want.reference, got.reference},
		field{"metadata", want.metadata, got.metadata},
		field{"effective_at", lineTimeText(want.effectiveAt), lineTimeText(got.effectiveAt)},
		field{"recorded_at", lineTimeText(want.recordedAt), lineTimeText(got.recordedAt)},
		field{"expires_at", expiryText(want.expiresAt), expiryText(got.expiresAt)},
		field{"pending_id", want.pendingID, got.pendingID},
		field{"resolved_by", want.resolvedBy, got.resolvedBy},
		field{"reverses", want.reverses, got.reverses},
		field{"reversed_by", strings.Join(want.reversedBy, ","), strings.Join(got.reversedBy, ",")},
		field{"alert", want.alert, got.alert}))
}

// enumText is an enum's name as the read model stores it: posted, not
// TRANSFER_STATUS_POSTED.
func enumText(name, prefix string) string { return strings.ToLower(strings.TrimPrefix(name, prefix)) }

// expiryText is an expiry as a divergence shows it.
func expiryText(us int64) string {
	if us == 0 {
		return "none"
	}
	return lineTimeText(us)
}
