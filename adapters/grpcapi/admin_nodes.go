package grpcapi

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/eventstore"
)

// Bounds of the registry of nodes as served.
const (
	// nodeIDMax bounds a node id in a request (ledgerd's -node-id).
	nodeIDMax = 128
)

// NodeRegistry is the registry of ledgerd processes and their leases
// (eventstore.Nodes).
type NodeRegistry interface {
	List(ctx context.Context) ([]eventstore.Node, error)
	SetDraining(ctx context.Context, id string, draining bool) (eventstore.Node, error)
	Placements(ctx context.Context) ([]eventstore.Placement, error)
}

// Lags reads how many events the furthest-behind projection of each ledger
// has not applied, for the ledgers named.
type Lags func(ctx context.Context, ledgers []string) (map[string]uint64, error)

// WithNodes serves ListNodes, DrainNode and ListPlacements from nodes, with
// the projections' lags from lags.
func (s *AdminServer) WithNodes(nodes NodeRegistry, lags Lags) *AdminServer {
	s.nodes, s.lags = nodes, lags
	return s
}

// ListNodes lists the registered nodes with the leases each holds now.
//
// Errors: Internal.
func (s *AdminServer) ListNodes(ctx context.Context, _ *ledgerv1.ListNodesRequest) (*ledgerv1.ListNodesResponse, error) {
	nodes, err := s.nodes.List(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	places, err := s.nodes.Placements(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.ListNodesResponse{Nodes: make([]*ledgerv1.Node, len(nodes))}
	for i, n := range nodes {
		resp.Nodes[i] = nodeOf(n, places)
	}
	return resp, nil
}

// DrainNode sets or clears a node's draining flag.
//
// Errors: InvalidArgument on node; NotFound; Internal.
func (s *AdminServer) DrainNode(ctx context.Context, req *ledgerv1.DrainNodeRequest) (*ledgerv1.DrainNodeResponse, error) {
	switch id := req.GetNode(); {
	case id == "":
		return nil, invalidArgument("node", "required: a node's id (ListNodes)")
	case len(id) > nodeIDMax:
		return nil, invalidArgument("node", fmt.Sprintf("%d bytes, at most %d", len(id), nodeIDMax))
	}
	n, err := s.nodes.SetDraining(ctx, req.GetNode(), req.GetDrain())
	if err != nil {
		return nil, statusOf(err)
	}
	places, err := s.nodes.Placements(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	if by, ok := KeyFrom(ctx); ok {
		s.logger.Info("node drain set", "node", n.ID, "drain", req.GetDrain(), "by", by.ID)
	}
	return &ledgerv1.DrainNodeResponse{Node: nodeOf(n, places)}, nil
}

// ListPlacements says which node writes and projects each ledger (or the
// one asked for), and the projections' lag.
//
// Errors: InvalidArgument on ledger; NotFound for an unknown ledger; Internal.
func (s *AdminServer) ListPlacements(ctx context.Context, req *ledgerv1.ListPlacementsRequest) (*ledgerv1.ListPlacementsResponse, error) {
	var lgs []eventstore.Ledger
	if name := req.GetLedger(); name != "" {
		lg, err := s.store.Ledger(ctx, name)
		if err != nil {
			return nil, resourceStatusOf(err)
		}
		lgs = []eventstore.Ledger{lg}
	} else {
		var err error
		if lgs, err = s.store.ListLedgers(ctx, "", eventstore.ListLedgersMax); err != nil {
			return nil, statusOf(err)
		}
	}
	places, err := s.nodes.Placements(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	names := make([]string, len(lgs))
	for i, lg := range lgs {
		names[i] = lg.Name
	}
	lags, err := s.lags(ctx, names)
	if err != nil {
		return nil, statusOf(err)
	}
	byLedger := map[string]*ledgerv1.Placement{}
	resp := &ledgerv1.ListPlacementsResponse{Placements: make([]*ledgerv1.Placement, len(lgs))}
	for i, lg := range lgs {
		p := &ledgerv1.Placement{Ledger: lg.Name, Status: ledgerStatusOf(lg.Status), Head: lg.Head, LagPositions: lags[lg.Name]}
		resp.Placements[i], byLedger[lg.Name] = p, p
	}
	for _, pl := range places {
		p, ok := byLedger[pl.Ledger]
		if !ok {
			continue
		}
		switch pl.Role {
		case eventstore.RoleWriter:
			p.WriterNode, p.WriterSince = pl.Node, timestamppb.New(pl.AcquiredAt)
		case eventstore.RoleProjector:
			p.ProjectorNode, p.ProjectorSince = pl.Node, timestamppb.New(pl.AcquiredAt)
		}
	}
	return resp, nil
}

// nodeOf is n on the wire, with the leases of places it holds.
func nodeOf(n eventstore.Node, places []eventstore.Placement) *ledgerv1.Node {
	out := &ledgerv1.Node{Id: n.ID, Roles: n.Roles, GrpcAddr: n.GRPCAddr, HttpAddr: n.HTTPAddr, Host: n.Host,
		Pid: uint32(max(n.PID, 0)), Version: n.Version, StartedAt: timestamppb.New(n.StartedAt),
		SeenAt: timestamppb.New(n.SeenAt), Live: n.Live, Draining: n.Draining}
	for _, p := range places {
		if p.Node != n.ID {
			continue
		}
		switch p.Role {
		case eventstore.RoleWriter:
			out.WriterLeases++
		case eventstore.RoleProjector:
			out.ProjectorLeases++
		}
	}
	return out
}
