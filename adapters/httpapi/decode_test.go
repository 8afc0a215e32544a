package httpapi

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/domain"
)

// spaces is an endless body of white space.
type spaces struct{}

func (spaces) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// padded is an empty JSON object of exactly n bytes, white space before it
// and inside it.
func padded(n int64) io.Reader {
	return io.MultiReader(strings.NewReader("\n{"), io.LimitReader(spaces{}, n-3), strings.NewReader("}"))
}

func testMarshaler() fieldNamingJSON {
	return fieldNamingJSON{&runtime.JSONPb{UnmarshalOptions: protojson.UnmarshalOptions{}}}
}

// TestDecoderStreamsMessagesUpToTheirBound: a stream body (a REST import)
// is decoded one message a call, each message (with the white space before
// it) up to messageJSONMax bytes, then io.EOF; a message one byte over is
// refused, naming the request, without being buffered whole.
func TestDecoderStreamsMessagesUpToTheirBound(t *testing.T) {
	body := io.MultiReader(strings.NewReader(`{"ledger": "a"}`+"\n"+`{"events": [{"position": "2"}]}`),
		padded(messageJSONMax), padded(messageJSONMax+1), strings.NewReader(`{"ledger": "never read"}`))
	dec := testMarshaler().NewDecoder(body)
	var first, second, atBound ledgerv1.ImportEventsRequest
	for _, m := range []*ledgerv1.ImportEventsRequest{&first, &second, &atBound} {
		if err := dec.Decode(m); err != nil {
			t.Fatalf("decode: %v", err)
		}
	}
	if first.GetLedger() != "a" || len(second.GetEvents()) != 1 || second.GetEvents()[0].GetPosition() != 2 {
		t.Errorf("decoded %v then %v, want ledger a, then one event at position 2", &first, &second)
	}
	var over ledgerv1.ImportEventsRequest
	err := dec.Decode(&over)
	var de *decodeError
	if !errors.As(err, &de) || de.field != "ImportEventsRequest" || !strings.Contains(de.reason, "more than") {
		t.Errorf("a message of messageJSONMax+1 bytes: %v, want a decodeError naming ImportEventsRequest", err)
	}

	dec = testMarshaler().NewDecoder(strings.NewReader(`{"ledger": "a"}` + "\n\n"))
	var m ledgerv1.ImportEventsRequest
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := dec.Decode(&m); !errors.Is(err, io.EOF) {
		t.Errorf("decode after the last message: %v, want io.EOF", err)
	}
}

// BenchmarkDecodeFaultManyKeys: finding the faulty field of a body of 256
// KiB of unknown keys, or of good keys before a bad value, is linear in the
// body (it took 14 s for the unknown keys, with a sort whose comparator
// scanned the body).
func BenchmarkDecodeFaultManyKeys(b *testing.B) {
	md := (&ledgerv1.DefineAssetRequest{}).ProtoReflect().Descriptor()
	for _, bc := range []struct {
		name, member, last, field string
	}{
		{"unknown keys", `"k%d":0,`, `"k":0`, "k0"},
		{"good keys, then a bad value", `"code":"USD",`, `"scale":"two"`, "scale"},
	} {
		var body strings.Builder
		body.WriteString("{")
		for i := 0; body.Len() < 256<<10; i++ {
			if strings.Contains(bc.member, "%d") {
				fmt.Fprintf(&body, bc.member, i)
			} else {
				body.WriteString(bc.member)
			}
		}
		body.WriteString(bc.last + "}")
		raw := []byte(body.String())
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if field, _ := jsonFault(protojson.UnmarshalOptions{}, md, raw, ""); field != bc.field {
					b.Fatalf("field %q, want %q", field, bc.field)
				}
			}
		})
	}
}

// TestDecoderTakesTheLargestEvent: a REST import line holding one event of
// the largest payload a writer writes (audit.ImportPayloadMax), every byte
// of it escaped as a JSON encoder may (\u00XX: six bytes a byte), is within
// messageJSONMax and decodes.
func TestDecoderTakesTheLargestEvent(t *testing.T) {
	var line strings.Builder
	line.WriteString(`{"ledger": "a", "events": [{"position": "1", "type": "PeriodClosed", "command_id": "`)
	line.WriteString(strings.Repeat("c", domain.AlertIDLenMax))
	line.WriteString(`", "payload": "`)
	line.WriteString(strings.Repeat(`\u0022`, audit.ImportPayloadMax))
	line.WriteString(`", "prev_hash": "` + strings.Repeat("0", 64) + `", "hash": "` + strings.Repeat("0", 64) + `"}]}` + "\n")
	if line.Len() > messageJSONMax {
		t.Fatalf("a line of %d bytes, messageJSONMax is %d", line.Len(), messageJSONMax)
	}
	var m ledgerv1.ImportEventsRequest
	if err := testMarshaler().NewDecoder(strings.NewReader(line.String())).Decode(&m); err != nil {
		t.Fatalf("decode a line of %d bytes: %v", line.Len(), err)
	}
	if got := m.GetEvents()[0].GetPayload(); len(got) != audit.ImportPayloadMax {
		t.Errorf("payload of %d bytes, want %d", len(got), audit.ImportPayloadMax)
	}
}
