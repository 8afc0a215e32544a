package grpcapi

import (
	"context"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// LedgerAdmin creates and archives ledgers (commands.Ledgers).
type LedgerAdmin interface {
	CreateLedger(ctx context.Context, ledger string) (eventstore.Ledger, bool, error)
	Archive(ctx context.Context, ledger string) (eventstore.Ledger, error)
	Unarchive(ctx context.Context, ledger string) (eventstore.Ledger, error)
}

// CreateLedger creates an empty, active ledger; one that exists is answered
// as it is, with created false.
//
// Errors: InvalidArgument on ledger; ResourceExhausted at
// commands.LedgersMaxDefault active or importing ledgers; Internal.
func (s *AdminServer) CreateLedger(ctx context.Context, req *ledgerv1.CreateLedgerRequest) (*ledgerv1.CreateLedgerResponse, error) {
	lg, created, err := s.ledgers.CreateLedger(ctx, req.GetLedger())
	if err != nil {
		return nil, statusOf(err)
	}
	if created {
		if by, ok := KeyFrom(ctx); ok {
			s.logger.Info("ledger created", "ledger", lg.Name, "by", by.ID)
		}
	}
	return &ledgerv1.CreateLedgerResponse{Ledger: ledgerOf(lg), Created: created}, nil
}

// ArchiveLedger archives an active ledger; an archived one is answered as it
// is.
//
// Errors: InvalidArgument on ledger; NotFound; FailedPrecondition for a
// ledger being imported; Internal.
func (s *AdminServer) ArchiveLedger(ctx context.Context, req *ledgerv1.ArchiveLedgerRequest) (*ledgerv1.ArchiveLedgerResponse, error) {
	lg, err := s.ledgers.Archive(ctx, req.GetLedger())
	if err != nil {
		return nil, resourceStatusOf(err)
	}
	if by, ok := KeyFrom(ctx); ok {
		s.logger.Info("ledger archived", "ledger", lg.Name, "by", by.ID)
	}
	return &ledgerv1.ArchiveLedgerResponse{Ledger: ledgerOf(lg)}, nil
}

// UnarchiveLedger makes an archived ledger active; an active one is answered
// as it is.
//
// Errors: as ArchiveLedger.
func (s *AdminServer) UnarchiveLedger(ctx context.Context, req *ledgerv1.UnarchiveLedgerRequest) (*ledgerv1.UnarchiveLedgerResponse, error) {
	lg, err := s.ledgers.Unarchive(ctx, req.GetLedger())
	if err != nil {
		return nil, resourceStatusOf(err)
	}
	if by, ok := KeyFrom(ctx); ok {
		s.logger.Info("ledger unarchived", "ledger", lg.Name, "by", by.ID)
	}
	return &ledgerv1.UnarchiveLedgerResponse{Ledger: ledgerOf(lg)}, nil
}

// GetLedger answers a ledger's status and head.
//
// Errors: InvalidArgument on ledger; NotFound; Internal.
func (s *AdminServer) GetLedger(ctx context.Context, req *ledgerv1.GetLedgerRequest) (*ledgerv1.GetLedgerResponse, error) {
	lg, err := s.store.Ledger(ctx, req.GetLedger())
	if err != nil {
		return nil, resourceStatusOf(err)
	}
	return &ledgerv1.GetLedgerResponse{Ledger: ledgerOf(lg)}, nil
}

// ListLedgers lists ledgers in name order, eventstore.ListLedgersMax a page
// at most.
//
// Errors: InvalidArgument on limit (over the maximum) or page_token (not a
// ledger name); Internal.
func (s *AdminServer) ListLedgers(ctx context.Context, req *ledgerv1.ListLedgersRequest) (*ledgerv1.ListLedgersResponse, error) {
	limit := int(req.GetLimit())
	switch {
	case limit > eventstore.ListLedgersMax:
		return nil, invalidArgument("limit", fmt.Sprintf("at most %d", eventstore.ListLedgersMax))
	case limit == 0:
		limit = eventstore.ListLedgersMax
	}
	after := req.GetPageToken()
	if after != "" && !domain.ValidLedgerName(after) {
		return nil, invalidArgument("page_token", "not a page token of ListLedgers")
	}
	// One more than the page tells whether another page follows.
	lgs, err := s.store.ListLedgers(ctx, after, limit+1)
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.ListLedgersResponse{}
	if len(lgs) > limit {
		lgs = lgs[:limit]
		resp.NextPageToken = lgs[limit-1].Name
	}
	for _, lg := range lgs {
		resp.Ledgers = append(resp.Ledgers, ledgerOf(lg))
	}
	return resp, nil
}

func ledgerOf(lg eventstore.Ledger) *ledgerv1.Ledger {
	return &ledgerv1.Ledger{Name: lg.Name, Status: ledgerStatusOf(lg.Status), Head: lg.Head,
		CreatedAt: timestamppb.New(lg.CreatedAt), StatusChangedAt: timestamppb.New(lg.StatusChangedAt)}
}

func ledgerStatusOf(st eventstore.LedgerStatus) ledgerv1.LedgerStatus {
	switch st {
	case eventstore.StatusActive:
		return ledgerv1.LedgerStatus_LEDGER_STATUS_ACTIVE
	case eventstore.StatusImporting:
		return ledgerv1.LedgerStatus_LEDGER_STATUS_IMPORTING
	case eventstore.StatusArchived:
		return ledgerv1.LedgerStatus_LEDGER_STATUS_ARCHIVED
	}
	return ledgerv1.LedgerStatus_LEDGER_STATUS_UNSPECIFIED
}

// notFound is a NotFound naming the field it is about, with the same
// BadRequest detail as InvalidArgument.
func notFound(field, reason string) error {
	st := status.New(codes.NotFound, field+": "+reason)
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: field, Description: reason},
	}}); err == nil {
		st = d
	}
	return st.Err()
}
