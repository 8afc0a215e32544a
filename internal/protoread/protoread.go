// Package protoread reads protobuf's wire by hand, as protobuf reads it,
// for the streams ledgerctl reads in bulk (ReadEvents' and
// ReadStatementLines' messages): protobuf's unmarshalling builds a
// message, a string per text and a Timestamp per time, which the reader
// then copies into its own form; read by hand, the texts stay slices of
// the message. What reads a message through it reads it as protobuf does:
// fields of numbers or wire types not expected are skipped, a scalar given
// twice keeps its last value, a message given twice is merged, and bytes
// that are not fields fail the message.
package protoread

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	// The proto codec requests go through registers itself on import.
	_ "google.golang.org/grpc/encoding/proto"
)

// Reader is a message that reads its own wire (Codec).
type Reader interface {
	// ReadWire reads the message from data, which it must not keep: gRPC
	// frees it once ReadWire returns.
	ReadWire(data mem.BufferSlice) error
}

// Codec is protobuf's gRPC codec, except that a Reader reads itself. Its
// name is protobuf's: the server sees a protobuf call. A call gives it with
// grpc.ForceCodecV2 and receives into a Reader through RecvMsg.
type Codec struct{}

var protoCodec = encoding.GetCodecV2("proto")

func (Codec) Name() string { return protoCodec.Name() }

func (Codec) Marshal(v any) (mem.BufferSlice, error) { return protoCodec.Marshal(v) }

func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(Reader); ok {
		return r.ReadWire(data)
	}
	return protoCodec.Unmarshal(data, v)
}

// Field is one field of a message: a varint's value in V, a
// length-delimited field's bytes in Bytes (a slice of the message).
type Field struct {
	Num   protowire.Number
	Type  protowire.Type
	V     uint64
	Bytes []byte
}

// Next reads the field b starts with, and returns b past it: at once for
// the usual field, a tag of one byte and a varint or a length of one byte.
//
// Errors: for bytes that are not a field, or a field number protobuf
// refuses.
func Next(b []byte) (Field, []byte, error) {
	if len(b) >= 2 && b[0] < 0x80 && b[0] >= 1<<3 && b[1] < 0x80 {
		num, typ := protowire.Number(b[0]>>3), protowire.Type(b[0]&7)
		switch n := int(b[1]); {
		case typ == protowire.VarintType:
			return Field{Num: num, Type: typ, V: uint64(n)}, b[2:], nil
		case typ == protowire.BytesType && len(b) >= 2+n:
			return Field{Num: num, Type: typ, Bytes: b[2 : 2+n : 2+n]}, b[2+n:], nil
		}
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return Field{}, nil, protowire.ParseError(n)
	}
	if num > protowire.MaxValidNumber {
		return Field{}, nil, fmt.Errorf("field number %d: past protobuf's %d", num, protowire.MaxValidNumber)
	}
	b = b[n:]
	f := Field{Num: num, Type: typ}
	switch typ {
	case protowire.VarintType:
		f.V, n = protowire.ConsumeVarint(b)
	case protowire.BytesType:
		f.Bytes, n = protowire.ConsumeBytes(b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, b)
	}
	if n < 0 {
		return Field{}, nil, protowire.ParseError(n)
	}
	return f, b[n:], nil
}

// Field numbers of google.protobuf.Timestamp.
const (
	timestampSeconds = 1
	timestampNanos   = 2
)

// Timestamp reads a Timestamp's fields into t (seconds, nanos), which
// keeps what an earlier occurrence of the field set (protobuf merges them).
//
// Errors: for bytes that are not a message.
func Timestamp(b []byte, t *[2]int64) error {
	for len(b) > 0 {
		var f Field
		var err error
		if f, b, err = Next(b); err != nil {
			return err
		}
		switch {
		case f.Type != protowire.VarintType:
		case f.Num == timestampSeconds:
			t[0] = int64(f.V)
		case f.Num == timestampNanos:
			t[1] = int64(int32(f.V))
		}
	}
	return nil
}
