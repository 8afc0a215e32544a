package grpcapi

import (
	"cmp"
	"context"
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	// The proto codec this one wraps registers itself on import.
	_ "google.golang.org/grpc/encoding/proto"
)

// A request that does not decode (a string field that is not UTF-8, wire
// bytes that do not parse) is the client's fault and must say so:
// InvalidArgument naming the field, counted as such by the metrics. grpc-go
// answers any codec error with Internal, before any interceptor runs, so the
// codec below does not fail: it marks the message as undecodable (an unknown
// field of its own) and the interceptors, chained after authentication and
// the metrics, refuse a marked message before any handler sees it.

// decodeMarkField is the field number of the mark: the largest a field may
// have, which no ledger.v1 message uses.
const decodeMarkField = protowire.MaxValidNumber

// decodeReasonLenMax bounds the reason a mark carries (the decoder's error
// text), so that what a status echoes stays small whatever the input.
const decodeReasonLenMax = 256

// DecodeOptions returns the server options that turn a request that does not
// decode into InvalidArgument naming the field (a BadRequest, like every
// other bad field) instead of grpc-go's Internal. Give them after the
// options that chain the metrics and authentication interceptors: their
// interceptors must run after those (the metrics then count the refusal by
// its code; an unauthenticated caller learns nothing about its message).
// Their codec also sends ReadEvents' and ReadStatementLines' messages,
// which AuditServer writes itself (encodedMessage): a server without them
// cannot serve those.
func DecodeOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(markingCodec{base: encoding.GetCodecV2("proto")}),
		grpc.ChainUnaryInterceptor(refuseUndecodedUnary),
		grpc.ChainStreamInterceptor(refuseUndecodedStream),
	}
}

// markingCodec is the proto codec, except that a message that fails to
// decode is marked instead of failing the call.
type markingCodec struct{ base encoding.CodecV2 }

func (c markingCodec) Name() string { return c.base.Name() }

// Marshal marshals v, or hands an encoded message over as it is.
func (c markingCodec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*encodedMessage); ok {
		b, err := e.buffer()
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{b}, nil
	}
	return c.base.Marshal(v)
}

func (c markingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return c.base.Unmarshal(data, v)
	}
	// One contiguous buffer, walked first and then decoded (the base
	// codec takes a buffer of one piece as it is).
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	raw := buf.ReadOnlyData()
	if over := overfullField(m.ProtoReflect().Descriptor(), raw); over != nil {
		// Refused before it is decoded: decoded, a list of tiny elements
		// costs a hundred times its wire bytes (see repeatedMax). Its
		// scalar fields are, for authentication to check the key against
		// the ledger it names, as below.
		_ = proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(scalarFields(m.ProtoReflect().Descriptor(), raw), m)
		mark(m, over.Field, over.Error())
		return nil
	}
	err := c.base.Unmarshal(mem.BufferSlice{buf}, v)
	if err == nil {
		if _, forged := markOf(m); forged {
			// A client sent the mark's field number itself: it is not
			// believed, and the message is refused as malformed.
			mark(m, "", "does not decode: field number reserved by the server")
		}
		return nil
	}
	field := undecodedField(m.ProtoReflect().Descriptor(), raw, "")
	// What was decoded before the fault stays, for authentication to check
	// the key against the ledger it names (so that a key scoped to that
	// ledger hears InvalidArgument, not PermissionDenied); no handler sees
	// it: the interceptors refuse the marked message first.
	mark(m, field, "does not decode: "+err.Error())
	return nil
}

// scalarFields is raw, a message of md on the wire, with only its fields
// that are neither messages nor repeated; what does not parse is left out.
func scalarFields(md protoreflect.MessageDescriptor, raw []byte) []byte {
	var out []byte
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return out
		}
		vlen := protowire.ConsumeFieldValue(num, typ, raw[n:])
		if vlen < 0 {
			return out
		}
		fd := md.Fields().ByNumber(num)
		if fd != nil && !fd.IsList() && !fd.IsMap() && fd.Kind() != protoreflect.MessageKind &&
			fd.Kind() != protoreflect.GroupKind {
			out = append(out, raw[:n+vlen]...)
		}
		raw = raw[n+vlen:]
	}
	return out
}

// mark replaces m's unknown fields with the mark: the field and the reason
// (the whole of what the client is told about it).
func mark(m proto.Message, field, reason string) {
	if len(reason) > decodeReasonLenMax {
		reason = reason[:decodeReasonLenMax]
	}
	b := protowire.AppendTag(nil, decodeMarkField, protowire.BytesType)
	b = protowire.AppendString(b, field+"\x00"+reason)
	m.ProtoReflect().SetUnknown(b)
}

// markOf returns the mark of m, if it has one: its field and reason.
func markOf(m proto.Message) (undecoded, bool) {
	raw := m.ProtoReflect().GetUnknown()
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return undecoded{}, false
		}
		raw = raw[n:]
		if num == decodeMarkField && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(raw)
			if n < 0 {
				return undecoded{}, true
			}
			field, reason := splitMark(string(v))
			return undecoded{field: field, reason: reason}, true
		}
		if n = protowire.ConsumeFieldValue(num, typ, raw); n < 0 {
			return undecoded{}, false
		}
		raw = raw[n:]
	}
	return undecoded{}, false
}

func splitMark(s string) (field, reason string) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], s[i+1:]
		}
	}
	return "", s
}

// undecoded is why a request was not decoded: the field at fault and
// what is wrong with it.
type undecoded struct{ field, reason string }

// status is InvalidArgument naming the field, or the request's message when
// the field could not be found.
func (u undecoded) status(m proto.Message) error {
	field := u.field
	if field == "" {
		field = string(m.ProtoReflect().Descriptor().Name())
	}
	return invalidArgument(field, cmp.Or(u.reason, "does not decode"))
}

// undecodedField returns the path, as a client names it ("accounts[2].id"),
// of the first field of raw (a message of md) that does not decode: a string
// that is not UTF-8, or wire data that ends early; "" when none is found.
// Its depth is bounded by the schema (ledger.v1 has no recursive message)
// and its loop by the bytes.
func undecodedField(md protoreflect.MessageDescriptor, raw []byte, prefix string) string {
	seen := map[protowire.Number]int{}
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return prefix
		}
		raw = raw[n:]
		fd := md.Fields().ByNumber(num)
		path := prefix
		if fd != nil {
			path = joinPath(prefix, string(fd.Name()))
			if fd.IsList() {
				path = fmt.Sprintf("%s[%d]", path, seen[num])
				seen[num]++
			}
		}
		if fd == nil || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, raw); n < 0 {
				return path
			}
			raw = raw[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(raw)
		if n < 0 {
			return path
		}
		raw = raw[n:]
		switch {
		case fd.IsMap():
			// A map names itself: its entries have no index.
			if undecodedField(fd.Message(), v, path) != "" {
				return path
			}
		case fd.Kind() == protoreflect.StringKind:
			if !utf8.Valid(v) {
				return path
			}
		case fd.Kind() == protoreflect.MessageKind:
			if f := undecodedField(fd.Message(), v, path); f != "" {
				return f
			}
		}
	}
	return ""
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// refuseUndecodedUnary refuses a marked request, then one whose ledger is
// not a ledger name (checkLedgerName).
func refuseUndecodedUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if m, ok := req.(proto.Message); ok {
		if u, marked := markOf(m); marked {
			return nil, u.status(m)
		}
	}
	if err := checkLedgerName(info.FullMethod, req, true); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// refuseUndecodedStream refuses each marked message a stream receives, and
// each whose ledger is not a ledger name.
func refuseUndecodedStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &checkedStream{ServerStream: ss, method: info.FullMethod})
}

type checkedStream struct {
	grpc.ServerStream
	method   string
	received bool
}

func (s *checkedStream) RecvMsg(v any) error {
	if err := s.ServerStream.RecvMsg(v); err != nil {
		return err
	}
	if m, ok := v.(proto.Message); ok {
		if u, marked := markOf(m); marked {
			return u.status(m)
		}
	}
	first := !s.received
	s.received = true
	return checkLedgerName(s.method, v, first)
}
