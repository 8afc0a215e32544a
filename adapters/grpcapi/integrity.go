package grpcapi

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ledgerd/ledger/anchor"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
)

// ListAnchorsMax is the most anchors one ListAnchors answers.
const ListAnchorsMax = 1000

// AnchorLister lists a ledger's anchors from where they were published
// (natsbus.Anchors), never from PostgreSQL.
type AnchorLister interface {
	List(ctx context.Context, ledger string, from, to uint64, limit int) ([]anchor.Anchor, bool, error)
}

// IntegrityServer serves ledger.v1.IntegrityService.
type IntegrityServer struct {
	ledgerv1.UnimplementedIntegrityServiceServer
	anchors AnchorLister
}

// NewIntegrityServer serves the anchors of anchors; nil: none published
// (anchoring off), every list is FailedPrecondition: a state of this
// ledgerd's configuration, not a failure that a retry outlasts.
func NewIntegrityServer(anchors AnchorLister) *IntegrityServer {
	return &IntegrityServer{anchors: anchors}
}

// ListAnchors returns a page of a ledger's anchors by position.
func (s *IntegrityServer) ListAnchors(ctx context.Context, req *ledgerv1.ListAnchorsRequest) (*ledgerv1.ListAnchorsResponse, error) {
	ledger, from, to := req.GetLedger(), req.GetFromPosition(), req.GetToPosition()
	limit := int(req.GetLimit())
	switch {
	case !domain.ValidLedgerName(ledger):
		return nil, invalidArgument("ledger", fmt.Sprintf("%q is not a ledger name", ledger))
	case to != 0 && from > to:
		return nil, invalidArgument("from_position", fmt.Sprintf("%d is after to_position %d", from, to))
	case limit > ListAnchorsMax:
		return nil, invalidArgument("limit", fmt.Sprintf("%d is over %d", limit, ListAnchorsMax))
	case limit == 0:
		limit = ListAnchorsMax
	}
	if s.anchors == nil {
		return nil, status.Error(codes.FailedPrecondition, "anchoring is off: ledgerd has no anchor key (-anchor-key-file)")
	}
	as, more, err := s.anchors.List(ctx, ledger, from, to, limit)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, statusOf(err)
		}
		return nil, status.Error(codes.Unavailable, "anchors of "+ledger+": "+err.Error())
	}
	resp := &ledgerv1.ListAnchorsResponse{Anchors: make([]*ledgerv1.Anchor, 0, len(as))}
	for i := range as {
		resp.Anchors = append(resp.Anchors, AnchorProto(&as[i]))
	}
	if more {
		resp.NextFromPosition = as[len(as)-1].Position + 1
	}
	return resp, nil
}

// AnchorProto is an anchor in its wire form.
func AnchorProto(a *anchor.Anchor) *ledgerv1.Anchor {
	return &ledgerv1.Anchor{Ledger: a.Ledger, Position: a.Position, Hash: hex.EncodeToString(a.Hash[:]),
		Time: timestamppb.New(a.Time), KeyId: a.KeyID, Signature: a.Signature}
}

// AnchorOf is an anchor read from the wire.
//
// Errors: anchor.ErrMalformed (a hash that is not 32 bytes of hex).
func AnchorOf(p *ledgerv1.Anchor) (anchor.Anchor, error) {
	h, err := hex.DecodeString(p.GetHash())
	if err != nil || len(h) != anchor.HashSize {
		return anchor.Anchor{}, fmt.Errorf("anchor at %d: hash %q: %w", p.GetPosition(), p.GetHash(), anchor.ErrMalformed)
	}
	a := anchor.Anchor{Ledger: p.GetLedger(), Position: p.GetPosition(), Time: p.GetTime().AsTime().UTC(), KeyID: p.GetKeyId(),
		Signature: p.GetSignature()}
	copy(a.Hash[:], h)
	return a, nil
}
