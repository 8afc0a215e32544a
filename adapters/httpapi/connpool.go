package httpapi

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc"
)

// gatewayConns is how many connections the gateway keeps to ledgerd's gRPC
// port. ledgerd lets a connection carry grpcStreamsPerConnMax (256) calls
// at once, and holds the rest at their client: through one connection, 256
// slow REST calls of one client (min_position waits, rebuild streams) held
// every other client's REST call behind them, while gRPC clients, each on
// connections of its own, went on. Eight carry 2,048, and a call takes the
// next connection in turn.
const gatewayConns = 8

// connPool is a few connections to one address, used in turn: a
// grpc.ClientConnInterface for the generated clients.
type connPool struct {
	conns []*grpc.ClientConn
	next  atomic.Uint32
}

// dialPool makes n connections to addr (lazily connected, as grpc.NewClient).
//
// Errors: an address or option grpc.NewClient refuses.
func dialPool(addr string, n int, opts []grpc.DialOption) (*connPool, error) {
	p := &connPool{}
	for range n {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("gateway client for %s: %w", addr, err)
		}
		p.conns = append(p.conns, conn)
	}
	return p, nil
}

func (p *connPool) pick() *grpc.ClientConn {
	return p.conns[int(p.next.Add(1))%len(p.conns)]
}

func (p *connPool) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return p.pick().Invoke(ctx, method, args, reply, opts...)
}

func (p *connPool) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return p.pick().NewStream(ctx, desc, method, opts...)
}

// Close closes every connection.
func (p *connPool) Close() error {
	var errs []error
	for _, c := range p.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
