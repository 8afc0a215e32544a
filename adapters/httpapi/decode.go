package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ledgerd/ledger/adapters/grpcapi"
)

// A body or query that does not decode (a malformed timestamp, an unknown
// enum name, a string where a number is due) is refused by the gateway
// itself, before any gRPC call, with an InvalidArgument that carries only
// the decoder's text. To answer like every other bad field (a
// google.rpc.BadRequest naming the proto field in snake_case), the decoder
// and the query parser below find the field and say it in a decodeError;
// the generated code turns it into a status message, which errorHandler
// recognises and rebuilds through grpcapi.InvalidArgument.

// decodeErrorTag starts the text of a decodeError: it never leaves the
// process (errorHandler replaces it), and no status the server sends starts
// with a NUL.
const decodeErrorTag = "\x00httpapi-decode\x00"

// decodeError is a request the gateway could not decode: the field (its
// path as a client writes it, "transfers[0].effective_at") and why.
type decodeError struct{ field, reason string }

func (e *decodeError) Error() string { return decodeErrorTag + e.field + "\x00" + e.reason }

// parseDecodeError reads a decodeError back from a status message.
func parseDecodeError(msg string) (field, reason string, ok bool) {
	rest, ok := strings.CutPrefix(msg, decodeErrorTag)
	if !ok {
		return "", "", false
	}
	field, reason, ok = strings.Cut(rest, "\x00")
	return field, reason, ok
}

// errorHandler writes every error as grpc-gateway does, a decodeError first
// made the InvalidArgument every other bad field is.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if b := meteredOf(r.Body); b != nil && b.starved != nil {
		err = b.starved
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument {
		if field, reason, ok := parseDecodeError(st.Message()); ok {
			err = grpcapi.InvalidArgument(field, reason)
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// fieldNamingJSON is the gateway's JSON marshaler, whose decoder names the
// field a body fails on.
type fieldNamingJSON struct{ *runtime.JSONPb }

// messageJSONMax bounds one JSON message of a body, as the gRPC server
// bounds its largest request messages (an ImportEventsRequest among them):
// a REST import is a stream of such messages, one a line, of any length,
// so its body as a whole has no bound (see Gateway.bodyMaxOf) but each of
// its messages has this one.
const messageJSONMax = grpcapi.RecvMaxLarge

// errMessageTooLarge is a body's message over messageJSONMax.
var errMessageTooLarge = fmt.Errorf("a message of more than %d bytes", messageJSONMax)

// NewDecoder returns a decoder of one message a Decode call, from one
// json.Decoder kept across the calls: a client stream (ImportEvents) calls
// it until io.EOF, one message a line. A body marked single (every route
// but a client stream's: see singleMessageBody) must hold one JSON value:
// a second value, or anything but white space after the first, is refused
// rather than dropped.
func (j fieldNamingJSON) NewDecoder(r io.Reader) runtime.Decoder {
	_, single := r.(singleMessageBody)
	body := &boundedReader{r: r}
	dec := json.NewDecoder(body)
	return runtime.DecoderFunc(func(v any) error {
		body.limit = dec.InputOffset() + messageJSONMax
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if m, ok := v.(proto.Message); ok && err == nil {
			if over := overfullJSON(m.ProtoReflect().Descriptor(), raw); over != nil {
				return &decodeError{field: over.Field, reason: over.Error()}
			}
		}
		if err == nil {
			err = j.JSONPb.Unmarshal(raw, v)
		}
		if err == nil && single {
			err = endOfBody(dec)
		}
		if err == nil || errors.Is(err, io.EOF) {
			return err
		}
		return j.decodeFault(v, raw, body, err)
	})
}

// endOfBody checks that dec has nothing left but white space.
//
// Errors: a read error of the body; errTrailingData.
func endOfBody(dec *json.Decoder) error {
	_, err := dec.Token()
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil && !isSyntaxError(err):
		return err
	}
	return errTrailingData
}

// errTrailingData is a body of one message with more after it.
var errTrailingData = errors.New("the body holds more than one JSON value: one request object is due")

func isSyntaxError(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se)
}

// decodeFault turns err, the failure to decode raw into v, into what the
// client is told: a read error of the body as it is (a body over its bound
// says so), anything else a decodeError naming the field, or the message
// when no one field is at fault.
func (j fieldNamingJSON) decodeFault(v any, raw []byte, body *boundedReader, err error) error {
	if body.err != nil {
		return body.err
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	md := m.ProtoReflect().Descriptor()
	if errors.Is(err, errMessageTooLarge) || errors.Is(err, errTrailingData) {
		return &decodeError{field: string(md.Name()), reason: err.Error()}
	}
	field, reason := jsonFault(j.UnmarshalOptions, md, raw, "")
	if field == "" {
		// Not found field by field (a syntax error, a duplicate key):
		// the request is named, with the decoder's own reason.
		field, reason = string(md.Name()), plainReason(err)
	}
	return &decodeError{field: field, reason: reason}
}

// boundedReader is a body read by a json.Decoder that may not read more
// than limit bytes in all: the decoder reads ahead of the value it
// decodes, and is let read up to messageJSONMax past the end of the
// previous value, so a value over it fails with errMessageTooLarge instead
// of being buffered whole.
type boundedReader struct {
	r     io.Reader
	read  int64
	limit int64
	// err is the first error of r but io.EOF: a body cut short or over
	// its bound (http.MaxBytesReader) is told as such, not as bad JSON.
	err error
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.read >= b.limit {
		return 0, errMessageTooLarge
	}
	if int64(len(p)) > b.limit-b.read {
		p = p[:b.limit-b.read]
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	if err != nil && !errors.Is(err, io.EOF) && b.err == nil {
		b.err = err
	}
	return n, err
}

// singleMessageBody marks a request body that holds one message: that of
// every route but a client stream's (Gateway.ServeHTTP marks it).
type singleMessageBody struct{ io.ReadCloser }

// jsonFault returns the path and reason of the first field of raw, a JSON
// object of a message of md, that does not decode on its own; "" if each
// does. A list of messages or a message is searched into, so that the path
// ends at the field itself ("transfers[3].postings[0].amount"). Its depth is
// bounded by the schema (ledger.v1 has no recursive message; well-known
// types are leaves); at each depth the object is read once, key after key
// in the body's order, so its work is linear in the body.
func jsonFault(opts protojson.UnmarshalOptions, md protoreflect.MessageDescriptor, raw []byte, prefix string) (string, string) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", ""
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", ""
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return "", ""
		}
		if f, r := fieldFault(opts, md, key, value, prefix); f != "" {
			return f, r
		}
	}
	return "", ""
}

// fieldFault is jsonFault of one key of an object and its value.
func fieldFault(opts protojson.UnmarshalOptions, md protoreflect.MessageDescriptor, key string, value json.RawMessage, prefix string) (string, string) {
	fd := md.Fields().ByJSONName(key)
	if fd == nil {
		fd = md.Fields().ByName(protoreflect.Name(key))
	}
	if fd == nil {
		return join(prefix, key), "unknown field"
	}
	path := join(prefix, string(fd.Name()))
	err := decodeOne(opts, md, key, value)
	if err == nil {
		return "", ""
	}
	if f, r := jsonFaultIn(opts, fd, key, value, path); f != "" {
		return f, r
	}
	return path, plainReason(err)
}

// jsonFaultIn searches a faulty field's value: the element of a list, the
// field of a message.
func jsonFaultIn(opts protojson.UnmarshalOptions, fd protoreflect.FieldDescriptor, key string, raw json.RawMessage, path string) (string, string) {
	leafMessage := fd.Kind() != protoreflect.MessageKind || fd.IsMap() ||
		strings.HasPrefix(string(fd.Message().FullName()), "google.protobuf.")
	if fd.IsList() {
		// Element by element, not the whole list at once: a list of
		// tiny elements as a []json.RawMessage was 41 times its bytes.
		dec := json.NewDecoder(bytes.NewReader(raw))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return "", ""
		}
		for i := 0; dec.More(); i++ {
			var e json.RawMessage
			if dec.Decode(&e) != nil {
				return "", ""
			}
			at := fmt.Sprintf("%s[%d]", path, i)
			if !leafMessage {
				if f, r := jsonFault(opts, fd.Message(), e, at); f != "" {
					return f, r
				}
			}
			if err := decodeOne(opts, fd.ContainingMessage(), key, json.RawMessage("["+string(e)+"]")); err != nil {
				return at, plainReason(err)
			}
		}
		return "", ""
	}
	if leafMessage {
		return "", ""
	}
	return jsonFault(opts, fd.Message(), raw, path)
}

// decodeOne decodes {key: raw} as a message of md.
func decodeOne(opts protojson.UnmarshalOptions, md protoreflect.MessageDescriptor, key string, raw json.RawMessage) error {
	k, err := json.Marshal(key)
	if err != nil {
		return err
	}
	doc := make([]byte, 0, len(k)+len(raw)+3)
	doc = append(append(append(append(doc, '{'), k...), ':'), raw...)
	doc = append(doc, '}')
	return opts.Unmarshal(doc, dynamicpb.NewMessage(md))
}

// decoderPosition is protojson's "proto: (line 1:27): " in front of a
// reason: the position is in the text the field was decoded from, not in
// the client's body, and the prefix says nothing to a REST client. (protojson
// varies the space after "proto:" on purpose, a non-breaking one included.)
var decoderPosition = regexp.MustCompile(`^proto:[\s\p{Zs}]*(syntax error[\s\p{Zs}]*)?(\(line \d+:\d+\):[\s\p{Zs}]*)?`)

func plainReason(err error) string {
	return decoderPosition.ReplaceAllString(err.Error(), "")
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// fieldNamingQuery is grpc-gateway's query parser, except that a parameter
// that does not parse ("min_position=abc", "status=NOPE") is named.
type fieldNamingQuery struct{ runtime.DefaultQueryParser }

func (q fieldNamingQuery) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	err := q.DefaultQueryParser.Parse(msg, values, filter)
	if err == nil {
		return nil
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		one := msg.ProtoReflect().New().Interface()
		if e := q.DefaultQueryParser.Parse(one, url.Values{k: values[k]}, filter); e != nil {
			return &decodeError{field: k, reason: e.Error()}
		}
	}
	return &decodeError{field: string(msg.ProtoReflect().Descriptor().Name()), reason: err.Error()}
}
