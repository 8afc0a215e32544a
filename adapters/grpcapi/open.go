package grpcapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Bounds of the open methods (openMethodPrefixes: health checks and server
// reflection), which anyone may call without a key.
const (
	// OpenRecvMax bounds a request message of an open method: a service
	// name (health), a symbol, file or service name (reflection), all
	// short. It is checked from the message's length prefix, before the
	// message is read (see OpenServices).
	OpenRecvMax = 1 << 10
	// OpenStreamsMax bounds the open methods' streaming calls in progress,
	// all clients together: a health Watch or a reflection stream lasts as
	// long as its client keeps it. A client that checks health from its
	// side holds one Watch per connection. Beyond: ResourceExhausted.
	OpenStreamsMax = 1024
)

// OpenServices registers the open services on a gRPC server so that they
// read their requests themselves, bounded by OpenRecvMax. grpc-go has one
// receive bound per server (RecvMaxLarge, for batches) and reads a whole
// message before anything of ours runs; an open method has no key to
// charge that to (RecvBudget counts keyed calls), so a keyless Health/Check
// of 48 MiB was read in full, and a Watch held its 4 MiB service name for
// as long as its client wished. Their handlers here read the message's
// 5-byte prefix and refuse a longer one unread, as grpc-go's parser does
// with its own bound, from the call's transport stream.
type OpenServices struct {
	*grpc.Server
	streams *semaphore.Weighted
}

// NewOpenServices returns the registrar of s's open services.
func NewOpenServices(s *grpc.Server) *OpenServices {
	return &OpenServices{Server: s, streams: semaphore.NewWeighted(OpenStreamsMax)}
}

// RegisterService registers an open service (one of openMethodPrefixes;
// any other panics: it would be open without the bounds) with its
// handlers bounded.
func (o *OpenServices) RegisterService(sd *grpc.ServiceDesc, impl any) {
	if !open("/" + sd.ServiceName + "/") {
		panic(fmt.Sprintf("grpcapi: %s is not an open service", sd.ServiceName))
	}
	d := *sd
	d.Methods = make([]grpc.MethodDesc, len(sd.Methods))
	for i, md := range sd.Methods {
		handler := md.Handler
		md.Handler = func(srv any, ctx context.Context, _ func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return handler(srv, ctx, func(v any) error {
				err := recvOpen(ctx, v)
				if errors.Is(err, io.EOF) {
					return status.Error(codes.InvalidArgument, "no request message")
				}
				return err
			}, ic)
		}
		d.Methods[i] = md
	}
	d.Streams = make([]grpc.StreamDesc, len(sd.Streams))
	for i, sdesc := range sd.Streams {
		handler := sdesc.Handler
		sdesc.Handler = func(srv any, ss grpc.ServerStream) error {
			if !o.streams.TryAcquire(1) {
				return status.Errorf(codes.ResourceExhausted, "%d calls of health checks and reflection are open, "+
					"the most there may be: retry when one ends", OpenStreamsMax)
			}
			defer o.streams.Release(1)
			return handler(srv, openStream{ss})
		}
		d.Streams[i] = sdesc
	}
	o.Server.RegisterService(&d, impl)
}

// openStream receives its messages bounded by OpenRecvMax.
type openStream struct{ grpc.ServerStream }

func (s openStream) RecvMsg(m any) error { return recvOpen(s.Context(), m) }

// rawStream is what grpc-go's own parser reads a message with: the call's
// transport stream (grpc.ServerTransportStreamFromContext).
type rawStream interface {
	ReadMessageHeader(header []byte) error
	Read(n int) (mem.BufferSlice, error)
	RecvCompress() string
}

// recvOpen reads the next request message of the call of ctx into m,
// refusing one over OpenRecvMax from its prefix.
//
// Errors: io.EOF (the client sent no more); ResourceExhausted (too long);
// InvalidArgument (it does not decode); Unimplemented (an unknown
// compression); Internal (the stream cannot be read so: a grpc-go whose
// transport changed, which the open methods' tests find out); those of
// the transport (the call ended).
func recvOpen(ctx context.Context, m any) error {
	raw, ok := grpc.ServerTransportStreamFromContext(ctx).(rawStream)
	msg, isProto := m.(proto.Message)
	if !ok || !isProto {
		return status.Error(codes.Internal, "an open method's request cannot be read bounded")
	}
	var prefix [5]byte
	if err := raw.ReadMessageHeader(prefix[:]); err != nil {
		return transportErr(err)
	}
	n := binary.BigEndian.Uint32(prefix[1:])
	if n > OpenRecvMax {
		return status.Errorf(codes.ResourceExhausted, "request of %d bytes: health checks and reflection take at most %d",
			n, OpenRecvMax)
	}
	data, err := raw.Read(int(n))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return transportErr(err)
	}
	b := data.Materialize()
	data.Free()
	if prefix[0]&1 != 0 {
		if b, err = decompressOpen(raw.RecvCompress(), b); err != nil {
			return err
		}
	}
	if err := proto.Unmarshal(b, msg); err != nil {
		return status.Errorf(codes.InvalidArgument, "request does not decode: %v", err)
	}
	return nil
}

// decompressOpen decompresses a message of an open method, at most
// OpenRecvMax of it.
func decompressOpen(name string, b []byte) ([]byte, error) {
	c := encoding.GetCompressor(name)
	if c == nil {
		return nil, status.Errorf(codes.Unimplemented, "request compressed with %q, which is not installed", name)
	}
	r, err := c.Decompress(bytes.NewReader(b))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "request does not decompress: %v", err)
	}
	out, err := io.ReadAll(io.LimitReader(r, OpenRecvMax+1))
	switch {
	case err != nil:
		return nil, status.Errorf(codes.InvalidArgument, "request does not decompress: %v", err)
	case len(out) > OpenRecvMax:
		return nil, status.Errorf(codes.ResourceExhausted, "request decompresses past %d bytes: health checks and "+
			"reflection take at most that", OpenRecvMax)
	}
	return out, nil
}

// transportErr is a status for an error reading the transport stream; io.EOF
// stays as it is (the client has sent all it will).
func transportErr(err error) error {
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return status.Error(codes.Internal, io.ErrUnexpectedEOF.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}
