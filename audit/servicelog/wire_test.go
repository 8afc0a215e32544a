package servicelog

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/eventstore"
)

// randomLogEvent is a LogEvent whose fields are now empty, now long, and
// whose hashes are now and then not 64 hex digits.
func randomLogEvent(rng *rand.Rand) *ledgerv1.LogEvent {
	text := func() string { return strings.Repeat("ü-k", rng.IntN(3)*rng.IntN(40)) }
	hash := func() string {
		var h [eventstore.HashSize]byte
		for i := range h {
			h[i] = byte(rng.IntN(256))
		}
		s := hex.EncodeToString(h[:])
		switch rng.IntN(40) {
		case 0:
			return s[:62]
		case 1:
			return "zz" + s[2:]
		case 2:
			return strings.ToUpper(s)
		case 3:
			return ""
		}
		return s
	}
	e := &ledgerv1.LogEvent{Ledger: []string{"", "main", "other"}[rng.IntN(3)], Position: rng.Uint64() >> rng.IntN(64),
		Type: []string{"", "TransferCommitted", "AccountOpened"}[rng.IntN(3)], SchemaVersion: rng.Uint32() >> rng.IntN(32),
		CommandId: text(), Payload: text(), PrevHash: hash(), Hash: hash()}
	if rng.IntN(8) != 0 {
		e.RecordedAt = timestamppb.New(time.Unix(rng.Int64N(1<<40)-1<<39, rng.Int64N(1e9)))
	}
	return e
}

// extraFields is wire bytes protobuf reads without a change to the event's
// meaning for a reader of this version, or with one it defines: fields of
// numbers it does not know, a known number with another wire type, a field
// given again (the last wins), a second recorded time (merged).
func extraFields(rng *rand.Rand, e *ledgerv1.LogEvent) []byte {
	var b []byte
	for range rng.IntN(4) {
		switch rng.IntN(5) {
		case 0:
			b = protowire.AppendTag(b, protowire.Number(10+rng.IntN(100)), protowire.VarintType)
			b = protowire.AppendVarint(b, rng.Uint64())
		case 1:
			b = protowire.AppendTag(b, protowire.Number(10+rng.IntN(100)), protowire.BytesType)
			b = protowire.AppendBytes(b, []byte("\xff\x00anything"))
		case 2:
			e.Position = rng.Uint64()
			b = protowire.AppendTag(b, 2, protowire.VarintType)
			b = protowire.AppendVarint(b, e.Position)
		case 3:
			nanos := rng.Int32N(1e9)
			if e.RecordedAt == nil {
				e.RecordedAt = &timestamppb.Timestamp{}
			}
			e.RecordedAt.Nanos = nanos
			var ts []byte
			ts = protowire.AppendTag(ts, 2, protowire.VarintType)
			ts = protowire.AppendVarint(ts, uint64(int64(nanos)))
			b = protowire.AppendTag(b, 5, protowire.BytesType)
			b = protowire.AppendBytes(b, ts)
		case 4:
			e.CommandId = "again-" + e.CommandId
			b = protowire.AppendTag(b, 6, protowire.BytesType)
			b = protowire.AppendString(b, e.CommandId)
		}
	}
	return b
}

// A ReadEventsResponse read by hand gives the records protobuf's own
// reading gives through RecordOf, up to the first malformed event, which
// ends the page with RecordOf's error.
func TestEventsCodec(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		var wire []byte
		var want []eventstore.Record
		var wantErr error
		for range rng.IntN(5) {
			e := randomLogEvent(rng)
			ev, err := proto.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			ev = append(ev, extraFields(rng, e)...)
			wire = protowire.AppendTag(wire, 1, protowire.BytesType)
			wire = protowire.AppendBytes(wire, ev)
			if rng.IntN(10) == 0 {
				wire = protowire.AppendTag(wire, 7, protowire.Fixed64Type)
				wire = protowire.AppendFixed64(wire, 1)
			}
			if wantErr == nil {
				r, err := RecordOf(e)
				if err != nil {
					wantErr = err
				} else {
					want = append(want, r)
				}
			}
		}
		// protobuf reads the same bytes as the events they were made from.
		var parsed ledgerv1.ReadEventsResponse
		if err := proto.Unmarshal(wire, &parsed); err != nil {
			t.Fatal(err)
		}
		var p eventPage
		if err := p.decode(wire); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if !reflect.DeepEqual(normal(p.recs), normal(want)) {
			t.Fatalf("%d: read %+v\nwant %+v", i, p.recs, want)
		}
		var got, exp *audit.MalformedError
		if (wantErr == nil) != (p.malformed == nil) ||
			wantErr != nil && (!errors.As(p.malformed, &got) || !errors.As(wantErr, &exp) || got.Error() != exp.Error()) {
			t.Fatalf("%d: malformed %v, want %v", i, p.malformed, wantErr)
		}
	}
}

// normal makes records comparable with DeepEqual: an empty payload is nil.
func normal(recs []eventstore.Record) []eventstore.Record {
	out := make([]eventstore.Record, len(recs))
	for i, r := range recs {
		if len(r.Payload) == 0 {
			r.Payload = nil
		}
		out[i] = r
	}
	return out
}

// Bytes that are not a message are an error, not records.
func TestEventsCodecRefusesBrokenWire(t *testing.T) {
	ev, err := proto.Marshal(&ledgerv1.LogEvent{Position: 5, Payload: "{}", Hash: strings.Repeat("0", 64),
		PrevHash: strings.Repeat("0", 64), RecordedAt: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	whole := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), ev)
	good, err := proto.Marshal(&ledgerv1.LogEvent{Position: 5, Hash: strings.Repeat("0", 64), PrevHash: strings.Repeat("0", 64)})
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []protowire.Number{1, 3, 6, 7} { // ledger, type, command_id, payload
		bad := protowire.AppendBytes(protowire.AppendTag(slices.Clone(good), field, protowire.BytesType), []byte("{\"a\":\"\xff\"}"))
		nonUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), bad)
		if proto.Unmarshal(nonUTF8, &ledgerv1.ReadEventsResponse{}) == nil {
			t.Fatalf("protobuf reads field %d not UTF-8", field)
		}
		var p eventPage
		if err := p.decode(nonUTF8); err == nil {
			t.Errorf("field %d not UTF-8: %d records, want an error as protobuf's", field, len(p.recs))
		}
	}
	for _, b := range [][]byte{
		whole[:len(whole)-1],                 // the event cut short
		append(whole[:1:1], 0x80),            // a length that does not end
		{0x0a, 0x03, 0x10},                   // an event whose varint does not end
		{0x0a, 0x02, 0x2a, 0x05},             // a recorded time longer than the event
		{0x0a, 0x04, 0x2a, 0x02, 0x08, 0x80}, // a Timestamp whose seconds do not end
	} {
		var p eventPage
		if err := p.decode(b); err == nil {
			t.Errorf("decode(%x) = %d records, want an error", b, len(p.recs))
		}
	}
}

// BenchmarkEventsCodec reads a message of 1,000 transfers into records:
// through protobuf's unmarshalling and RecordOf, as ledgerctl did, and by
// hand (with the copy of the message gRPC's buffers make it take). It
// reports ns and allocations an event.
func BenchmarkEventsCodec(b *testing.B) {
	msg := &ledgerv1.ReadEventsResponse{}
	hash := strings.Repeat("ab", eventstore.HashSize)
	for i := range 1000 {
		msg.Events = append(msg.Events, &ledgerv1.LogEvent{Ledger: "main", Position: uint64(1_000_000 + i),
			Type: "TransferCommitted", SchemaVersion: 1, RecordedAt: timestamppb.New(time.Date(2026, 12, 6, 7, 0, 0, 123_456_000, time.UTC)),
			CommandId: fmt.Sprintf("t-%d", i), PrevHash: hash, Hash: hash, Payload: fmt.Sprintf(
				`{"id":"t-%d","postings":[{"debit":"acc-%d","credit":"acc-%d","asset":"USD","amount":"%d.%02d"}],"effective_at":"2026-12-06T07:00:00.123456Z"}`,
				i, i%10000, (i*7+1)%10000, 1+i%500, i%100)})
	}
	wire, err := proto.Marshal(msg)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("protobuf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got ledgerv1.ReadEventsResponse
			if err := proto.Unmarshal(wire, &got); err != nil {
				b.Fatal(err)
			}
			recs := make([]eventstore.Record, 0, len(got.GetEvents()))
			for _, e := range got.GetEvents() {
				r, err := RecordOf(e)
				if err != nil {
					b.Fatal(err)
				}
				recs = append(recs, r)
			}
			if len(recs) != len(msg.Events) {
				b.Fatalf("%d records, want %d", len(recs), len(msg.Events))
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msg.Events)), "ns/event")
	})
	b.Run("by hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p := eventPage{recs: make([]eventstore.Record, 0, len(msg.Events))}
			if err := p.decode(slices.Clone(wire)); err != nil || p.malformed != nil || len(p.recs) != len(msg.Events) {
				b.Fatal(err, p.malformed)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msg.Events)), "ns/event")
	})
}
