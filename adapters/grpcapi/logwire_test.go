package grpcapi

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/eventstore"
)

// logEventOf is r as a LogEvent, built field by field as ReadEvents did
// before it wrote its messages itself.
func logEventOf(r *eventstore.Record) *ledgerv1.LogEvent {
	return &ledgerv1.LogEvent{Ledger: r.Ledger, Position: r.Position, Type: r.Type, SchemaVersion: uint32(r.SchemaVersion),
		RecordedAt: timestamppb.New(r.RecordedAt), CommandId: r.CommandID, Payload: string(r.Payload),
		PrevHash: hex.EncodeToString(r.PrevHash[:]), Hash: hex.EncodeToString(r.Hash[:])}
}

// randomRecord is a record with each field now empty or zero, now at a
// varint's edges: what proto3 leaves out and what it writes long.
func randomRecord(rng *rand.Rand) eventstore.Record {
	pick := func(vs ...uint64) uint64 { return vs[rng.IntN(len(vs))] }
	text := func() string { return strings.Repeat("é-x", rng.IntN(3)*rng.IntN(60)) }
	times := []time.Time{{}, time.Unix(0, 0), time.Unix(0, 1000), time.Unix(-1, 999_999_000),
		time.Unix(-62135596800, 0), time.Unix(1<<40, 123_456_000), time.Unix(rng.Int64N(4e9), rng.Int64N(1e6)*1000)}
	r := eventstore.Record{Ledger: text(), Position: pick(0, 1, 127, 128, 1<<35, math.MaxUint64, rng.Uint64()),
		Type: text(), SchemaVersion: int(pick(0, 1, 127, 128, math.MaxUint32)), RecordedAt: times[rng.IntN(len(times))],
		CommandID: text(), Payload: []byte(text() + strings.Repeat("{}", rng.IntN(100)))}
	for i := range r.Hash {
		r.PrevHash[i], r.Hash[i] = byte(rng.IntN(256)), byte(rng.IntN(256))
	}
	return r
}

// The messages ReadEvents writes itself are the bytes proto.Marshal writes
// for the same events, event by event and whole.
func TestEncodedEventsAreProtobufs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		var recs []eventstore.Record
		for range 1 + rng.IntN(4) {
			recs = append(recs, randomRecord(rng))
		}
		want := &ledgerv1.ReadEventsResponse{}
		var got []byte
		for j := range recs {
			want.Events = append(want.Events, logEventOf(&recs[j]))
			var err error
			if got, err = appendEvent(got, &recs[j], eventWireLen(&recs[j])); err != nil {
				t.Fatalf("%d: %v", i, err)
			}
		}
		wire, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wire) {
			t.Fatalf("%d: events %+v\nwritten %x\nproto   %x", i, recs, got, wire)
		}
		back := &ledgerv1.ReadEventsResponse{}
		if err := proto.Unmarshal(got, back); err != nil || !proto.Equal(back, want) {
			t.Fatalf("%d: read back %v (%v), want %v", i, back, err, want)
		}
	}
}

// A stored string that is not UTF-8 is DataLoss naming it, as proto
// would refuse to marshal it.
func TestEncodedEventsRefuseNonUTF8(t *testing.T) {
	base := eventstore.Record{Ledger: "l", Position: 7, Type: "TransferCommitted", CommandID: "t", Payload: []byte(`{}`)}
	for name, edit := range map[string]func(*eventstore.Record){
		"payload":    func(r *eventstore.Record) { r.Payload = []byte("{\"a\":\"\xff\"}") },
		"type":       func(r *eventstore.Record) { r.Type = "T\xc3" },
		"command_id": func(r *eventstore.Record) { r.CommandID = "\xed\xa0\x80" },
		"ledger":     func(r *eventstore.Record) { r.Ledger = "l\xc0" },
	} {
		r := base
		edit(&r)
		_, err := appendEvent(nil, &r, eventWireLen(&r))
		if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "stored "+name+" is not UTF-8") ||
			!strings.Contains(err.Error(), "event 7 of "+r.Ledger) {
			t.Errorf("%s: %v, want DataLoss naming it", name, err)
		}
	}
}

// An encoded message is handed to gRPC once: its buffer goes back to the
// pool when written, so a second marshal would send bytes another message
// may be writing.
func TestEncodedEventsMarshalOnce(t *testing.T) {
	c := markingCodec{base: encoding.GetCodecV2("proto")}
	r := eventstore.Record{Ledger: "l", Position: 1, Type: "AssetDefined", Payload: []byte(`{}`)}
	pool := &bufferPool{}
	wire, err := appendEvent((*pool.Get(0))[:0], &r, eventWireLen(&r))
	if err != nil {
		t.Fatal(err)
	}
	msg := &encodedMessage{wire: wire, pool: pool}
	first, err := c.Marshal(msg)
	if err != nil || !bytes.Equal(first.Materialize(), wire) {
		t.Fatalf("first marshal: %x, %v; want %x", first.Materialize(), err, wire)
	}
	first.Free()
	if again, err := c.Marshal(msg); err == nil {
		t.Errorf("second marshal: %x, want an error", again.Materialize())
	}
}

// benchRecords is a message's worth of transfers as the log holds them.
func benchRecords() []eventstore.Record {
	recs := make([]eventstore.Record, readEventsBatchMax)
	at := time.Date(2026, 12, 6, 7, 0, 0, 123_456_000, time.UTC)
	for i := range recs {
		recs[i] = eventstore.Record{Ledger: "main", Position: uint64(1_000_000 + i), Type: "TransferCommitted", SchemaVersion: 1,
			RecordedAt: at, CommandID: fmt.Sprintf("t-%d", i), Payload: []byte(fmt.Sprintf(
				`{"id":"t-%d","postings":[{"debit":"acc-%d","credit":"acc-%d","asset":"USD","amount":"%d.%02d"}],"effective_at":"2026-12-06T07:00:00.123456Z"}`,
				i, i%10000, (i*7+1)%10000, 1+i%500, i%100))}
		recs[i].Hash[0], recs[i].PrevHash[0] = byte(i), byte(i-1)
	}
	return recs
}

// BenchmarkReadEventsWire writes a message of 1,000 transfers: through
// LogEvents and protobuf's marshalling, as ReadEvents did, and by hand.
// It reports ns and allocations an event.
func BenchmarkReadEventsWire(b *testing.B) {
	recs := benchRecords()
	b.Run("protobuf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			// As ReadEvents did: events and times cut from slabs, both
			// hashes in one string.
			events, times := make([]ledgerv1.LogEvent, len(recs)), make([]timestamppb.Timestamp, len(recs))
			msg := &ledgerv1.ReadEventsResponse{Events: make([]*ledgerv1.LogEvent, 0, len(recs))}
			for i := range recs {
				r, e := &recs[i], &events[i]
				var hexes [4 * eventstore.HashSize]byte
				hex.Encode(hexes[:hexHashLen], r.PrevHash[:])
				hex.Encode(hexes[hexHashLen:], r.Hash[:])
				hashes := string(hexes[:])
				e.Ledger, e.Position, e.Type, e.SchemaVersion = r.Ledger, r.Position, r.Type, uint32(r.SchemaVersion)
				e.RecordedAt, e.CommandId, e.Payload = timestampIn(&times[i], r.RecordedAt), r.CommandID, string(r.Payload)
				e.PrevHash, e.Hash = hashes[:hexHashLen], hashes[hexHashLen:]
				msg.Events = append(msg.Events, e)
			}
			if _, err := proto.Marshal(msg); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/event")
	})
	b.Run("by hand", func(b *testing.B) {
		b.ReportAllocs()
		pool := &bufferPool{}
		for b.Loop() {
			wire := (*pool.Get(0))[:0]
			for i := range recs {
				var err error
				if wire, err = appendEvent(wire, &recs[i], eventWireLen(&recs[i])); err != nil {
					b.Fatal(err)
				}
			}
			pool.Put(&wire)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/event")
	})
}
