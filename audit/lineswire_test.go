package audit_test

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
)

// randomStatementLine is a line with each field now empty or zero, now at
// a varint's edges, a direction protobuf does not name among them.
func randomStatementLine(rng *rand.Rand) *ledgerv1.StatementLine {
	pick := func(vs ...uint64) uint64 { return vs[rng.IntN(len(vs))] }
	text := func() string { return strings.Repeat("é<x&", rng.IntN(3)*rng.IntN(20)) }
	times := []*timestamppb.Timestamp{nil, {}, {Nanos: 1000}, {Seconds: -1, Nanos: 999_999_000}, {Seconds: 1 << 40, Nanos: 7},
		timestamppb.New(time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)))}
	l := &ledgerv1.StatementLine{Position: pick(0, 1, 127, 128, math.MaxUint64, rng.Uint64()), TransferId: text(), Kind: text(),
		Direction: ledgerv1.Direction(pick(0, 1, 2, 7, math.MaxUint32)), Amount: text(), RunningBalance: text(),
		Pending: rng.IntN(2) == 0, EffectiveAt: times[rng.IntN(len(times))], RecordedAt: times[rng.IntN(len(times))],
		Reference: text(), PostingIndex: uint32(pick(0, 1, 128, math.MaxUint32)), RunningAvailable: text()}
	for range rng.IntN(3) {
		l.CounterAccounts = append(l.CounterAccounts, text())
	}
	if rng.IntN(3) == 0 {
		l.Metadata = map[string]string{}
		for range 1 + rng.IntN(3) {
			l.Metadata[text()] = text()
		}
	}
	return l
}

// Verify reads ReadStatementLines' messages itself: what each line's
// digest covers is what it covers for the line protobuf reads from the
// same bytes, whatever protobuf makes of them (fields repeated, merged,
// unknown), and bytes protobuf refuses are refused.
func TestLinesWireReadsAsProtobuf(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 3000 {
		msg := &ledgerv1.ReadStatementLinesResponse{}
		for range rng.IntN(4) {
			msg.Lines = append(msg.Lines, &ledgerv1.AccountStatementLine{Account: strings.Repeat("a:", rng.IntN(20)),
				Seq: uint32(rng.IntN(3)), Line: randomStatementLine(rng)})
		}
		wire, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if rng.IntN(4) == 0 && len(msg.Lines) > 0 {
			// A line whose StatementLine is given twice (merged), with a
			// field of no known number (skipped).
			again, err := proto.Marshal(&ledgerv1.AccountStatementLine{Seq: 9, Line: randomStatementLine(rng)})
			if err != nil {
				t.Fatal(err)
			}
			more, err := proto.Marshal(randomStatementLine(rng))
			if err != nil {
				t.Fatal(err)
			}
			item := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7)
			item = append(item, again...)
			item = protowire.AppendBytes(protowire.AppendTag(item, 2, protowire.BytesType), more)
			wire = protowire.AppendTag(wire, 1, protowire.BytesType)
			wire = protowire.AppendBytes(wire, item)
		}
		read := &ledgerv1.ReadStatementLinesResponse{}
		if err := proto.Unmarshal(wire, read); err != nil {
			t.Fatalf("message %d: protobuf: %v", i, err)
		}
		got, err := audit.DigestedLines(wire)
		if err != nil || len(got) != len(read.GetLines()) {
			t.Fatalf("message %d: %d lines (%v), protobuf reads %d", i, len(got), err, len(read.GetLines()))
		}
		for j, l := range read.GetLines() {
			if want := audit.Digested(l.GetLine()); !bytes.Equal(got[j], want) {
				t.Fatalf("message %d, line %d: digest covers %q, want %q", i, j, got[j], want)
			}
		}
	}
	// Texts that are not UTF-8: the account, a line's amount, a metadata
	// value.
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	for _, item := range [][]byte{field(1, []byte("\xff")), field(2, field(6, []byte("\xc3"))),
		field(2, field(12, append(field(1, []byte("k")), field(2, []byte("\xff"))...)))} {
		wire := field(1, item)
		if err := proto.Unmarshal(wire, &ledgerv1.ReadStatementLinesResponse{}); err == nil {
			t.Fatalf("protobuf reads %x", wire)
		}
		if _, err := audit.DigestedLines(wire); err == nil {
			t.Errorf("%x read, want it refused as protobuf refuses it", wire)
		}
	}
}

// sameAsProtobuf fails t when what Verify reads from wire differs from
// what protobuf reads: refused by one and not the other, or a line whose
// digest would cover other bytes. A message of more lines than ledgerd
// sends, which Verify refuses and protobuf reads, is not compared.
func sameAsProtobuf(t *testing.T, wire []byte) {
	t.Helper()
	read := &ledgerv1.ReadStatementLinesResponse{}
	perr := proto.Unmarshal(wire, read)
	if perr == nil && len(read.GetLines()) > 1000 {
		return
	}
	got, err := audit.DigestedLines(wire)
	if (err == nil) != (perr == nil) {
		t.Fatalf("%x: read with %v, protobuf with %v", wire, err, perr)
	}
	if err != nil {
		return
	}
	if len(got) != len(read.GetLines()) {
		t.Fatalf("%x: %d lines, protobuf reads %d", wire, len(got), len(read.GetLines()))
	}
	for j, l := range read.GetLines() {
		if want := audit.Digested(l.GetLine()); !bytes.Equal(got[j], want) {
			t.Fatalf("%x, line %d: digest covers %q, want %q", wire, j, got[j], want)
		}
	}
}

// Messages with a byte changed here and there read as protobuf reads them,
// or are refused as protobuf refuses them.
func TestLinesWireReadsChangedBytesAsProtobuf(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 20_000 {
		msg := &ledgerv1.ReadStatementLinesResponse{}
		for range 1 + rng.IntN(2) {
			msg.Lines = append(msg.Lines, &ledgerv1.AccountStatementLine{Account: "a:1", Seq: uint32(rng.IntN(3)),
				Line: randomStatementLine(rng)})
		}
		wire, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		for range 1 + rng.IntN(3) {
			wire[rng.IntN(len(wire))] = byte(rng.IntN(256))
		}
		sameAsProtobuf(t, wire)
	}
}

// FuzzLinesWire: any bytes read as protobuf reads them, or are refused as
// protobuf refuses them.
func FuzzLinesWire(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 8 {
		wire, err := proto.Marshal(&ledgerv1.ReadStatementLinesResponse{Lines: []*ledgerv1.AccountStatementLine{
			{Account: "a", Seq: 1, Line: randomStatementLine(rng)}}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	f.Fuzz(sameAsProtobuf)
}
