package grpcapi

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/queries"
)

// transferKinds maps the read model's kinds to the wire's.
var transferKinds = map[string]ledgerv1.TransferKind{
	"transfer": ledgerv1.TransferKind_TRANSFER_KIND_TRANSFER,
	"pending":  ledgerv1.TransferKind_TRANSFER_KIND_PENDING,
	"post":     ledgerv1.TransferKind_TRANSFER_KIND_POST,
	"void":     ledgerv1.TransferKind_TRANSFER_KIND_VOID,
	"reversal": ledgerv1.TransferKind_TRANSFER_KIND_REVERSAL,
}

// transferStatuses maps the wire's statuses to the read model's.
var transferStatuses = map[ledgerv1.TransferStatus]string{
	ledgerv1.TransferStatus_TRANSFER_STATUS_POSTED:             "posted",
	ledgerv1.TransferStatus_TRANSFER_STATUS_PENDING:            "pending",
	ledgerv1.TransferStatus_TRANSFER_STATUS_PENDING_POSTED:     "pending_posted",
	ledgerv1.TransferStatus_TRANSFER_STATUS_VOIDED:             "voided",
	ledgerv1.TransferStatus_TRANSFER_STATUS_EXPIRED:            "expired",
	ledgerv1.TransferStatus_TRANSFER_STATUS_REVERSED:           "reversed",
	ledgerv1.TransferStatus_TRANSFER_STATUS_PARTIALLY_REVERSED: "partially_reversed",
}

// transferStatusOf maps the read model's statuses to the wire's.
var transferStatusOf = func() map[string]ledgerv1.TransferStatus {
	m := make(map[string]ledgerv1.TransferStatus, len(transferStatuses))
	for st, name := range transferStatuses {
		m[name] = st
	}
	return m
}()

// GetTransfers returns transfers by id with the position they reflect.
func (s *QueryServer) GetTransfers(ctx context.Context, req *ledgerv1.GetTransfersRequest) (*ledgerv1.GetTransfersResponse, error) {
	if n := len(req.GetIds()); n == 0 || n > queries.TransferIDsPerRequestMax {
		return nil, invalidArgument("ids", fmt.Sprintf("want 1..%d transfer ids", queries.TransferIDsPerRequestMax))
	}
	for _, id := range req.GetIds() {
		if !domain.ValidID(id) {
			return nil, invalidArgument("ids", "transfer ids must match [A-Za-z0-9:_.@-]{1,128}")
		}
	}
	got, err := s.q.GetTransfers(ctx, req.GetLedger(), req.GetIds(), req.GetMinPosition())
	if err != nil {
		return nil, statusOf(err)
	}
	views, err := transferViews(got.Transfers)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.GetTransfersResponse{Position: got.Position, Transfers: views}, nil
}

// ListTransfers returns a page of the transfers matching the request's
// filters, in position order.
func (s *QueryServer) ListTransfers(ctx context.Context, req *ledgerv1.ListTransfersRequest) (*ledgerv1.ListTransfersResponse, error) {
	f, err := transferFilter(req)
	if err != nil {
		return nil, err
	}
	if req.GetLimit() > queries.TransfersPageMax {
		return nil, invalidArgument("limit", fmt.Sprintf("at most %d", queries.TransfersPageMax))
	}
	got, err := s.q.ListTransfers(ctx, req.GetLedger(), f, req.GetCursor(), int(req.GetLimit()), req.GetMinPosition())
	if err != nil {
		return nil, statusOf(err)
	}
	views, err := transferViews(got.Transfers)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.ListTransfersResponse{Position: got.Position, NextCursor: got.NextCursor, Transfers: views}, nil
}

// transferFilter validates a ListTransfers request's filters (the ledger
// name is checked by the interceptors: checkLedgerName).
func transferFilter(req *ledgerv1.ListTransfersRequest) (queries.TransferFilter, error) {
	var f queries.TransferFilter
	if a := req.GetAccount(); a != "" && !domain.ValidID(a) {
		return f, invalidArgument("account", "must match [A-Za-z0-9:_.@-]{1,128}")
	}
	if len(req.GetReference()) > domain.ReferenceLenMax {
		return f, invalidArgument("reference", fmt.Sprintf("at most %d bytes", domain.ReferenceLenMax))
	}
	// PostgreSQL text cannot hold a NUL: no stored label has one.
	for _, label := range [...]struct{ field, s string }{{"reference", req.GetReference()},
		{"metadata_key", req.GetMetadataKey()}, {"metadata_value", req.GetMetadataValue()}} {
		if strings.ContainsRune(label.s, 0) {
			return f, invalidArgument(label.field, "must not contain NUL")
		}
	}
	switch key, value := req.GetMetadataKey(), req.GetMetadataValue(); {
	case len(key) > domain.MetadataKeyLenMax:
		return f, invalidArgument("metadata_key", fmt.Sprintf("at most %d bytes", domain.MetadataKeyLenMax))
	case key == "" && value != "":
		return f, invalidArgument("metadata_key", "required with metadata_value")
	case len(value) > domain.MetadataBytesMax:
		return f, invalidArgument("metadata_value", fmt.Sprintf("at most %d bytes", domain.MetadataBytesMax))
	}
	if st := req.GetStatus(); st != ledgerv1.TransferStatus_TRANSFER_STATUS_UNSPECIFIED {
		name, ok := transferStatuses[st]
		if !ok {
			return f, invalidArgument("status", fmt.Sprintf("unknown status %d", st))
		}
		f.Status = name
	}
	switch req.GetTimeBasis() {
	case ledgerv1.TimeBasis_TIME_BASIS_UNSPECIFIED:
	case ledgerv1.TimeBasis_TIME_BASIS_EFFECTIVE:
		f.Effective = true
	default:
		return f, invalidArgument("time_basis", fmt.Sprintf("unknown time basis %d", req.GetTimeBasis()))
	}
	var err error
	if f.From, err = timeOf("from_time", req.GetFromTime()); err != nil {
		return f, err
	}
	if f.To, err = timeOf("to_time", req.GetToTime()); err != nil {
		return f, err
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.From.After(f.To) {
		return f, invalidArgument("from_time", "after to_time")
	}
	if err := transferRangeFilters(req, &f); err != nil {
		return f, err
	}
	f.Account, f.Reference, f.MetadataKey, f.MetadataValue = req.GetAccount(), req.GetReference(), req.GetMetadataKey(), req.GetMetadataValue()
	return f, nil
}

// transferView converts a transfers row to its wire form.
//
// Errors: a kind or status this build does not know (the read model is
// newer than the server), as Internal.
func transferView(t *queries.Transfer) (*ledgerv1.TransferView, error) {
	kind, ok := transferKinds[t.Kind]
	if !ok {
		return nil, status.Errorf(codes.Internal, "transfer %s: unknown kind %q", t.ID, t.Kind)
	}
	st, ok := transferStatusOf[t.Status]
	if !ok {
		return nil, status.Errorf(codes.Internal, "transfer %s: unknown status %q", t.ID, t.Status)
	}
	v := &ledgerv1.TransferView{Id: t.ID, Kind: kind, Status: st, Reference: t.Reference, Metadata: t.Metadata,
		EffectiveAt: timestamppb.New(t.EffectiveAt), RecordedAt: timestamppb.New(t.RecordedAt), Position: t.Position,
		PendingId: t.PendingID, ResolvedBy: t.ResolvedBy, Reverses: t.Reverses, ReversedBy: t.ReversedBy, Alert: t.Alert,
		Postings: make([]*ledgerv1.TransferPosting, len(t.Postings))}
	if !t.ExpiresAt.IsZero() {
		v.ExpiresAt = timestamppb.New(t.ExpiresAt)
	}
	for i, p := range t.Postings {
		v.Postings[i] = &ledgerv1.TransferPosting{DebitAccount: p.Debit, CreditAccount: p.Credit, Asset: p.Asset,
			Amount: p.Amount, Remaining: p.Remaining, Reversed: p.Reversed}
	}
	return v, nil
}

// transferViews converts rows to their wire form.
func transferViews(ts []queries.Transfer) ([]*ledgerv1.TransferView, error) {
	out := make([]*ledgerv1.TransferView, len(ts))
	for i := range ts {
		v, err := transferView(&ts[i])
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}
