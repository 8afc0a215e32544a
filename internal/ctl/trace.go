package ctl

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// traceParent starts a W3C trace for this run of ledgerctl: every call it
// makes carries a traceparent with the run's trace id and a span id of its
// own, sampled, so that ledgerd's spans of these calls (-otlp-endpoint)
// are children of it and found by the id --trace prints.
type traceParent struct{ traceID [16]byte }

func newTraceParent() traceParent {
	var t traceParent
	_, _ = rand.Read(t.traceID[:]) // crypto/rand.Read does not fail (Go 1.24+)
	return t
}

func (t traceParent) String() string { return hex.EncodeToString(t.traceID[:]) }

// header is a traceparent for one call: version 00, the trace id, a new
// span id, flags 01 (sampled).
func (t traceParent) header() string {
	var span [8]byte
	_, _ = rand.Read(span[:])
	return fmt.Sprintf("00-%x-%x-01", t.traceID, span)
}

func (t traceParent) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
			invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "traceparent", t.header()), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
			streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(metadata.AppendToOutgoingContext(ctx, "traceparent", t.header()), desc, cc, method, opts...)
		}),
	}
}
