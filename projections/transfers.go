package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Transfers projects every transfer, hold, post, void and reversal into the
// transfers table (one row each, with its current status). An account's
// transfers are found through its statement lines (the movements
// projection), which index them already.
type Transfers struct{}

func (Transfers) Name() string { return "transfers" }
func (Transfers) Version() int { return 2 }

// Tables lists the read-model tables Transfers writes that are keyed by
// ledger. The transfers are keyed by the ledger key's number instead
// (0024): dropRows retires it, and the view Views lists shows them by
// ledger.
func (Transfers) Tables() []string {
	return []string{"transfer_ledgers"}
}

// Views lists the views of Transfers' rows keyed by ledger.
func (Transfers) Views() []string { return []string{"transfer_rows"} }

// dropRows retires the number of the ledger key's transfers (a rebuild's
// swap and a stale shadow's drop): SweepRetired deletes them.
func (Transfers) dropRows(ctx context.Context, tx pgx.Tx, key string) error {
	return retireNumber(ctx, tx, "transfer_ledgers", key)
}

// Kinds and statuses of transfers rows, as stored (see 0003_transfers.sql).
const (
	transferKindTransfer = "transfer"
	transferKindPending  = "pending"
	transferKindPost     = "post"
	transferKindVoid     = "void"
	transferKindReversal = "reversal"

	transferStatusPosted            = "posted"
	transferStatusPending           = "pending"
	transferStatusPendingPosted     = "pending_posted"
	transferStatusVoided            = "voided"
	transferStatusExpired           = "expired"
	transferStatusReversed          = "reversed"
	transferStatusPartiallyReversed = "partially_reversed"
)

// transferStatuses are the statuses the transfers read model stores (its
// check constraint).
var transferStatuses = map[string]bool{transferStatusPosted: true, transferStatusPending: true,
	transferStatusPendingPosted: true, transferStatusVoided: true, transferStatusExpired: true,
	transferStatusReversed: true, transferStatusPartiallyReversed: true}

// IsTransferStatus says whether s is a status the transfers read model stores.
func IsTransferStatus(s string) bool { return transferStatuses[s] }

// transferPosting is one element of the postings column. Remaining is set on
// holds, Reversed on transfers and posts; both at the amount's scale.
type transferPosting struct {
	Debit     string         `json:"debit"`
	Credit    string         `json:"credit"`
	Asset     string         `json:"asset"`
	Amount    domain.Amount  `json:"amount"`
	Remaining *domain.Amount `json:"remaining,omitempty"`
	Reversed  *domain.Amount `json:"reversed,omitempty"`
}

// transferRow is a transfers row while a batch is folded. loaded rows come
// from earlier batches: only their mutable columns are written back.
type transferRow struct {
	id, kind, status                string
	position, updatedPosition       uint64
	postings                        []transferPosting
	reference                       string
	metadata                        map[string]string
	effectiveAt, recordedAt         time.Time
	pendingID, resolvedBy, reverses string
	reversedBy                      []string
	expiresAt                       *time.Time
	// alert is a rule's hold's (TransferPending.Alert).
	alert string

	loaded, changed bool
}

// transferFold is a batch applied in memory: the rows it creates, in
// position order, and the earlier rows it changes.
type transferFold struct {
	// ledgerNo keys the ledger's rows (ledgerNo).
	ledgerNo int32
	rows     map[string]*transferRow
	created  []*transferRow
}

// Apply folds the batch in memory, over the earlier rows it resolves or
// reverses (read with one SELECT), then writes it: new rows and their
// accounts by COPY, changed earlier rows with one UPDATE. A row created and
// resolved within the batch is inserted in its final state.
func (t Transfers) Apply(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record) error {
	return decodeAndApply(ctx, tx, ledger, recs, t)
}

// applyEvents is Apply of records whose events are decoded (eventsApplier).
func (Transfers) applyEvents(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record, events []domain.Event) error {
	created := map[string]bool{}
	var refs []string // ids of earlier batches' rows the batch changes
	for i := range recs {
		e := events[i]
		if id, ok := domain.EventID(e); ok { // the id of the row it creates
			created[id] = true
		}
		if ref, ok := domain.ChangedID(e); ok && !created[ref] {
			refs = append(refs, ref)
		}
	}
	// The number is read in each batch, after the runner locked the
	// checkpoint: a rebuild's swap, which renumbers the key, holds that
	// lock until it commits, so the number read is the one the batch
	// commits under.
	no, err := ledgerNo(ctx, tx, "transfer_ledgers", ledger)
	if err != nil {
		return err
	}
	f := &transferFold{ledgerNo: no, rows: make(map[string]*transferRow, len(recs))}
	if err := f.load(ctx, tx, refs); err != nil {
		return err
	}
	for i := range recs {
		if err := f.apply(&recs[i], events[i]); err != nil {
			return fmt.Errorf("record %d: %w", recs[i].Position, err)
		}
	}
	if err := f.insert(ctx, tx); err != nil {
		return err
	}
	return f.update(ctx, tx)
}

// load reads the rows of earlier batches that this one changes.
func (f *transferFold) load(ctx context.Context, tx pgx.Tx, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT id, kind, status, position, updated_position, postings, resolved_by, reversed_by
		FROM transfers WHERE ledger_no = $1 AND id = ANY($2)`, f.ledgerNo, ids)
	if err != nil {
		return fmt.Errorf("load %d transfers: %w", len(ids), err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r                   transferRow
			position, updatedAt int64
			postings            []byte
			resolvedBy          *string
		)
		if err := rows.Scan(&r.id, &r.kind, &r.status, &position, &updatedAt, &postings, &resolvedBy, &r.reversedBy); err != nil {
			return fmt.Errorf("load %d transfers: %w", len(ids), err)
		}
		r.position, r.updatedPosition, r.loaded = uint64(position), uint64(updatedAt), true
		if resolvedBy != nil {
			r.resolvedBy = *resolvedBy
		}
		if err := json.Unmarshal(postings, &r.postings); err != nil {
			return fmt.Errorf("transfer %s: postings: %w", r.id, err)
		}
		f.rows[r.id] = &r
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load %d transfers: %w", len(ids), err)
	}
	return nil
}

// apply folds one event into the batch. An event that contradicts the rows
// (a hold already resolved, a reversal beyond the original) means the read
// model is corrupt: an error, so the batch is rolled back.
func (f *transferFold) apply(rec *eventstore.Record, e domain.Event) error {
	// The row's id, reference, metadata and business time are its
	// header's (a void has neither metadata nor a business time).
	h, _ := domain.HeaderOf(e)
	switch e := e.(type) {
	case domain.TransferCommitted:
		f.create(rec, &h, transferKindTransfer, reversible(e.Postings))
	case domain.TransferPending:
		ps := make([]transferPosting, len(e.Postings))
		for i, p := range e.Postings {
			ps[i] = transferPosting{Debit: p.Debit, Credit: p.Credit, Asset: p.Asset, Amount: p.Amount, Remaining: ptrTo(p.Amount)}
		}
		r := f.create(rec, &h, transferKindPending, ps)
		r.status, r.expiresAt, r.alert = transferStatusPending, e.ExpiresAt, e.Alert
	case domain.PendingPosted:
		if err := f.resolve(rec, e.PendingID, e.ID, transferStatusPendingPosted); err != nil {
			return err
		}
		posted, _ := domain.ReversiblePostings(e) // what the post posted
		r := f.create(rec, &h, transferKindPost, reversible(posted))
		r.pendingID = e.PendingID
	case domain.PendingVoided:
		if err := f.resolve(rec, e.PendingID, e.ID, transferStatusVoided); err != nil {
			return err
		}
		r := f.create(rec, &h, transferKindVoid, plain(e.Postings))
		r.pendingID = e.PendingID
	case domain.PendingExpired:
		return f.resolve(rec, e.PendingID, "", transferStatusExpired)
	case domain.TransferReversed:
		if err := f.reverse(rec, e); err != nil {
			return err
		}
		r := f.create(rec, &h, transferKindReversal, plain(e.Postings))
		r.reverses = e.TransferID
	}
	return nil
}

// create adds the row of the transfer whose header is h, posted unless the
// caller says otherwise. An event without a business time (a void; an
// imported log's may lack one) takes effect when recorded, as its statement
// lines do.
func (f *transferFold) create(rec *eventstore.Record, h *domain.TransferHeader, kind string, ps []transferPosting) *transferRow {
	r := &transferRow{id: h.ID, kind: kind, status: transferStatusPosted, position: rec.Position,
		updatedPosition: rec.Position, postings: ps, reference: h.Reference, metadata: h.Metadata,
		effectiveAt: h.Effective(rec.RecordedAt), recordedAt: rec.RecordedAt}
	f.rows[h.ID] = r
	f.created = append(f.created, r)
	return r
}

// resolve moves a hold from pending to status: it holds nothing any more.
func (f *transferFold) resolve(rec *eventstore.Record, holdID, by, status string) error {
	h, ok := f.rows[holdID]
	if !ok {
		return fmt.Errorf("hold %s: the read model is missing it", holdID)
	}
	if h.kind != transferKindPending || h.status != transferStatusPending {
		return fmt.Errorf("hold %s is a %s %s, not a pending hold: the read model is corrupt", holdID, h.status, h.kind)
	}
	for i := range h.postings {
		p := &h.postings[i]
		p.Remaining = &domain.Amount{Scale: p.Amount.Scale}
	}
	h.status, h.resolvedBy = status, by
	h.touch(rec.Position)
	return nil
}

// reverse adds a reversal's amounts to its original, posting by posting,
// held to the domain's rule (domain.CheckReversal): a reversal the rule
// refuses means the read model is corrupt.
func (f *transferFold) reverse(rec *eventstore.Record, e domain.TransferReversed) error {
	o, ok := f.rows[e.TransferID]
	if !ok {
		return fmt.Errorf("reversed transfer %s: the read model is missing it", e.TransferID)
	}
	if (o.kind != transferKindTransfer && o.kind != transferKindPost) || o.position != e.TransferPosition ||
		len(o.postings) != len(e.Postings) {
		return fmt.Errorf("reversal %s of %s at %d: the read model has a %s at %d with %d postings: it is corrupt",
			e.ID, e.TransferID, e.TransferPosition, o.kind, o.position, len(o.postings))
	}
	original, done := make([]domain.Posting, len(o.postings)), make([]domain.Units, len(o.postings))
	for i, p := range o.postings {
		if p.Reversed == nil {
			return fmt.Errorf("reversed transfer %s: posting %d has no reversed amount: the read model is corrupt", e.TransferID, i)
		}
		original[i] = domain.Posting{Debit: p.Debit, Credit: p.Credit, Asset: p.Asset, Amount: p.Amount}
		done[i] = p.Reversed.Units
	}
	next, err := domain.CheckReversal(original, done, e.Postings)
	if err != nil {
		return fmt.Errorf("reversal %s of %s: the read model is corrupt: %w", e.ID, e.TransferID, err)
	}
	full := true
	for i := range o.postings {
		p := &o.postings[i]
		p.Reversed = &domain.Amount{Units: next[i], Scale: p.Amount.Scale}
		full = full && next[i].Cmp(p.Amount.Units) == 0
	}
	o.status = transferStatusPartiallyReversed
	if full {
		o.status = transferStatusReversed
	}
	o.reversedBy = append(o.reversedBy, e.ID)
	o.touch(rec.Position)
	return nil
}

func (r *transferRow) touch(pos uint64) {
	r.updatedPosition, r.changed = pos, true
}

// reversible is postings as a transfer or post records them: nothing reversed yet.
func reversible(in []domain.Posting) []transferPosting {
	out := plain(in)
	for i := range out {
		out[i].Reversed = &domain.Amount{Scale: out[i].Amount.Scale}
	}
	return out
}

func plain(in []domain.Posting) []transferPosting {
	out := make([]transferPosting, len(in))
	for i, p := range in {
		out[i] = transferPosting{Debit: p.Debit, Credit: p.Credit, Asset: p.Asset, Amount: p.Amount}
	}
	return out
}

func ptrTo[T any](v T) *T { return &v }

// appendPostingsJSON appends ps as json.Marshal writes them (the fields'
// tags, remaining and reversed left out when nil), without reflection: the
// projector writes every transfer's postings.
func appendPostingsJSON(b []byte, ps []transferPosting) []byte {
	if ps == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		p := &ps[i]
		b = append(b, `{"debit":`...)
		b = domain.AppendJSONString(b, p.Debit)
		b = append(b, `,"credit":`...)
		b = domain.AppendJSONString(b, p.Credit)
		b = append(b, `,"asset":`...)
		b = domain.AppendJSONString(b, p.Asset)
		b = appendAmountField(b, `,"amount":"`, &p.Amount)
		if p.Remaining != nil {
			b = appendAmountField(b, `,"remaining":"`, p.Remaining)
		}
		if p.Reversed != nil {
			b = appendAmountField(b, `,"reversed":"`, p.Reversed)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

func appendAmountField(b []byte, key string, a *domain.Amount) []byte {
	b = append(b, key...)
	b = append(b, a.String()...)
	return append(b, '"')
}

// transferColumns are the columns COPY fills, in order.
var transferColumns = []string{"ledger_no", "id", "kind", "status", "position", "postings", "reference", "metadata",
	"effective_at", "recorded_at", "pending_id", "resolved_by", "reverses", "reversed_by", "expires_at", "updated_position", "alert"}

// EffectiveNear is how far a transfer's effective time may be from its
// recorded time for the transfer to be found by effective time through its
// position; the others are effective_far, a column PostgreSQL computes with
// this bound (projections 0022: 300 seconds), indexed on effective time.
const EffectiveNear = 5 * time.Minute

// transferRowBytes is about what a transfer's row takes in a binary COPY
// (one posting, no reference or metadata: 260-280 bytes).
const transferRowBytes = 288

// insert copies the batch's new rows.
func (f *transferFold) insert(ctx context.Context, tx pgx.Tx) error {
	if len(f.created) == 0 {
		return nil
	}
	w := newCopyRows(len(f.created), transferRowBytes)
	for _, r := range f.created {
		w.row(len(transferColumns))
		w.int4(f.ledgerNo)
		w.text(r.id)
		w.text(r.kind)
		w.text(r.status)
		w.int8(int64(r.position))
		at := w.open() // json: its binary form is its text
		w.b = appendPostingsJSON(w.b, r.postings)
		w.close(at)
		w.textOrNull(r.reference)
		w.jsonbMap(r.metadata)
		w.timestamptz(r.effectiveAt)
		w.timestamptz(r.recordedAt)
		w.textOrNull(r.pendingID)
		w.textOrNull(r.resolvedBy)
		w.textOrNull(r.reverses)
		w.textArray(r.reversedBy...)
		if r.expiresAt != nil {
			w.timestamptz(*r.expiresAt)
		} else {
			w.null()
		}
		w.int8(int64(r.updatedPosition))
		w.textOrNull(r.alert)
	}
	err := w.send(ctx, tx.Conn(), "transfers", transferColumns)
	w.release(err)
	return err
}

// update writes back the earlier rows the batch changed, in id order so that
// concurrent writers of one ledger's rows lock them in one order.
func (f *transferFold) update(ctx context.Context, tx pgx.Tx) error {
	var changed []*transferRow
	for _, r := range f.rows {
		if r.loaded && r.changed {
			changed = append(changed, r)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	slices.SortFunc(changed, func(a, b *transferRow) int { return strings.Compare(a.id, b.id) })
	n := len(changed)
	ids, statuses, postings, resolvedBy, reversedBy := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	updated := make([]int64, n)
	for i, r := range changed {
		p, err := json.Marshal(r.postings)
		if err != nil {
			return fmt.Errorf("transfer %s: postings: %w", r.id, err)
		}
		rb, err := json.Marshal(nonNil(r.reversedBy))
		if err != nil {
			return fmt.Errorf("transfer %s: reversed_by: %w", r.id, err)
		}
		ids[i], statuses[i], postings[i], resolvedBy[i], reversedBy[i] = r.id, r.status, string(p), r.resolvedBy, string(rb)
		updated[i] = int64(r.updatedPosition)
	}
	// INSERT … ON CONFLICT DO UPDATE finds each row by its key whatever the
	// planner believes (UPDATE … FROM joined on the ledger alone when a new
	// ledger's statistics said one row). A row not found is inserted with a
	// negative position, not counted, and fails the batch.
	var found int64
	err := tx.QueryRow(ctx, `WITH u AS (
			INSERT INTO transfers AS t (ledger_no, id, kind, status, position, postings, effective_at, recorded_at,
				resolved_by, reversed_by, updated_position)
			SELECT $1, u.id, 'transfer', u.status, -u.updated_position, u.postings::json, 'epoch', 'epoch',
				NULLIF(u.resolved_by, ''),
				ARRAY(SELECT r.id FROM jsonb_array_elements_text(u.reversed_by::jsonb) WITH ORDINALITY AS r(id, n)
					ORDER BY r.n),
				u.updated_position
			FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
				AS u(id, status, postings, resolved_by, reversed_by, updated_position)
			ON CONFLICT (ledger_no, id) DO UPDATE SET status = excluded.status, postings = excluded.postings,
				resolved_by = excluded.resolved_by, reversed_by = excluded.reversed_by,
				updated_position = excluded.updated_position
			RETURNING t.position >= 0 AS found
		) SELECT count(*) FILTER (WHERE found) FROM u`, f.ledgerNo, ids, statuses, postings, resolvedBy, reversedBy, updated).Scan(&found)
	if err != nil {
		return fmt.Errorf("update %d transfers: %w", n, err)
	}
	if int(found) != n {
		return fmt.Errorf("updated %d of %d transfers: the read model is missing some", found, n)
	}
	return nil
}

// nullable stores an absent string as NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nonNil stores an absent list as an empty one, not NULL.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
