package httpapi

import (
	"bytes"
	"encoding/json"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ledgerd/ledger/adapters/grpcapi"
)

// A JSON list of tiny elements costs far more decoded than in the body:
// "{}," is a Transfer of some 150 bytes, so 64 MiB of them would be
// gigabytes. Before a body is decoded its lists and maps are counted as
// the gRPC server counts a message's on the wire (see grpcapi.RepeatedMax):
// all of a field's elements in the body together, against its bound times
// the bounds of the lists it is in; one over is refused as the server
// would refuse it, naming the field.

// overfullJSON returns the first list or map of raw, the JSON object of a
// message of md, whose elements in all of raw are more than its bound; nil
// if none is, or if raw is not the object of such a message (the decoder
// then says why). raw must be one valid JSON value (json.Decoder.Decode
// into a json.RawMessage checked it): it is scanned once, byte by byte,
// allocating for the keys of objects and the answer's path. Its depth is
// bounded by the schema (ledger.v1 has no recursive message; well-known
// types and what is not a field are skipped without recursion).
func overfullJSON(md protoreflect.MessageDescriptor, raw []byte) *grpcapi.OverfullError {
	s := &jsonScan{b: raw, counts: map[protoreflect.FieldDescriptor]int{}}
	return s.object(md, 1)
}

// jsonScan reads a valid JSON value: at i, the next byte to read; counts
// are the elements of each repeated field met so far.
type jsonScan struct {
	b      []byte
	i      int
	counts map[protoreflect.FieldDescriptor]int
}

// next is the next byte that is not white space, not taken; 0 at the end.
func (s *jsonScan) next() byte {
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return c
		}
	}
	return 0
}

// object is overfullJSON of the value at s.i, a message of md within lists
// whose bounds multiply to outer; skipped if not an object.
func (s *jsonScan) object(md protoreflect.MessageDescriptor, outer int) *grpcapi.OverfullError {
	if s.next() != '{' {
		s.skip()
		return nil
	}
	s.i++
	for {
		switch s.next() {
		case '}':
			s.i++
			return nil
		case ',':
			s.i++
			continue
		case 0:
			return nil
		}
		key := s.key()
		if s.next() != ':' {
			return nil
		}
		s.i++
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(key))
		}
		var over *grpcapi.OverfullError
		switch {
		case fd == nil:
			s.skip()
		case fd.IsList() || fd.IsMap():
			over = s.list(fd, outer)
		case fd.Kind() == protoreflect.MessageKind && !wellKnown(fd.Message()):
			if over = s.object(fd.Message(), outer); over != nil {
				over.Field = string(fd.Name()) + "." + over.Field
			}
		default:
			s.skip()
		}
		if over != nil {
			return over
		}
	}
}

// list counts the elements of the list or map of fd at s.i, within lists
// whose bounds multiply to outer, and searches into the messages of a list.
func (s *jsonScan) list(fd protoreflect.FieldDescriptor, outer int) *grpcapi.OverfullError {
	open, end := byte('['), byte(']')
	if fd.IsMap() {
		open, end = '{', '}'
	}
	if s.next() != open {
		s.skip()
		return nil
	}
	s.i++
	own := grpcapi.RepeatedMax(fd)
	limit := own * outer
	messages := fd.IsList() && fd.Kind() == protoreflect.MessageKind && !wellKnown(fd.Message())
	for {
		switch s.next() {
		case end:
			s.i++
			return nil
		case ',':
			s.i++
			continue
		case 0:
			return nil
		}
		if fd.IsMap() {
			s.skip() // the key
			if s.next() != ':' {
				return nil
			}
			s.i++
		}
		if s.counts[fd]++; s.counts[fd] > limit {
			return &grpcapi.OverfullError{Field: string(fd.Name()), N: s.counts[fd], Max: limit}
		}
		if messages {
			if over := s.object(fd.Message(), outer*own); over != nil {
				over.Field = string(fd.Name()) + "[]." + over.Field
				return over
			}
			continue
		}
		s.skip()
	}
}

// key reads the string at s.i, unescaped.
func (s *jsonScan) key() string {
	start := s.i
	s.skip()
	quoted := s.b[start:s.i]
	if len(quoted) < 2 || quoted[0] != '"' {
		return ""
	}
	if bytes.IndexByte(quoted, '\\') < 0 {
		return string(quoted[1 : len(quoted)-1])
	}
	var k string
	_ = json.Unmarshal(quoted, &k)
	return k
}

// skip reads the value at s.i: a string, a number or literal, or a whole
// object or array.
func (s *jsonScan) skip() {
	depth := 0
	for s.next() != 0 {
		switch s.b[s.i] {
		case '"':
			s.i++
			for s.i < len(s.b) && s.b[s.i] != '"' {
				if s.b[s.i] == '\\' {
					s.i++
				}
				s.i++
			}
			s.i++
		case '{', '[':
			depth++
			s.i++
		case '}', ']':
			if depth == 0 {
				return // the end of the enclosing value: not this one's
			}
			depth--
			s.i++
		case ',', ':':
			if depth == 0 {
				return
			}
			s.i++
		default: // a number or literal
			for s.i < len(s.b) && !endsScalar(s.b[s.i]) {
				s.i++
			}
		}
		if depth == 0 {
			return
		}
	}
}

// endsScalar says whether c ends a number or literal.
func endsScalar(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', ',', ':', ']', '}':
		return true
	}
	return false
}

// wellKnown says whether md is a google.protobuf type, which has a JSON
// form of its own: a leaf here.
func wellKnown(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile().Package() == "google.protobuf"
}
