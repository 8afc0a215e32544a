package grpcapi

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/queries"
)

// randomLine is a statement line with each field now empty or zero, now at
// a varint's edges: what proto3 leaves out and what it writes long.
func randomLine(rng *rand.Rand) queries.StatementLine {
	pick := func(vs ...uint64) uint64 { return vs[rng.IntN(len(vs))] }
	text := func() string { return strings.Repeat("é-x", rng.IntN(3)*rng.IntN(60)) }
	times := []time.Time{{}, time.Unix(0, 0), time.Unix(0, 1000), time.Unix(-1, 999_999_000),
		time.Unix(-62135596800, 0), time.Unix(1<<40, 123_456_000), time.Unix(rng.Int64N(4e9), rng.Int64N(1e6)*1000)}
	l := queries.StatementLine{Position: pick(0, 1, 127, 128, 1<<35, math.MaxUint64, rng.Uint64()), TransferID: text(),
		Kind: text(), Side: []string{"debit", "credit", ""}[rng.IntN(3)], Amount: text(), Pending: rng.IntN(2) == 0,
		RunningBalance: text(), RunningAvailable: text(), EffectiveAt: times[rng.IntN(len(times))],
		RecordedAt: times[rng.IntN(len(times))], Reference: text(), PostingIndex: uint32(pick(0, 1, 127, 128, math.MaxUint32))}
	for range rng.IntN(3) {
		l.CounterAccounts = append(l.CounterAccounts, text())
	}
	if rng.IntN(2) == 0 {
		l.Metadata = map[string]string{}
		for range rng.IntN(4) {
			l.Metadata[text()] = text()
		}
	}
	return l
}

// The messages ReadStatementLines writes itself are the bytes protobuf's
// deterministic marshalling writes for the lines as ListStatement builds
// them (statementLineIn), line by line and whole.
func TestEncodedLinesAreProtobufs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	deterministic := proto.MarshalOptions{Deterministic: true}
	var line, item []byte
	for i := range 2000 {
		want := &ledgerv1.ReadStatementLinesResponse{}
		var got []byte
		for range 1 + rng.IntN(4) {
			l := randomLine(rng)
			account, seq := strings.Repeat("a:", rng.IntN(40)), uint32(rng.Uint64N(3)*rng.Uint64N(1<<33))
			var times [2]timestamppb.Timestamp
			want.Lines = append(want.Lines, &ledgerv1.AccountStatementLine{Account: account, Seq: seq,
				Line: statementLineIn(&ledgerv1.StatementLine{}, times[:], &l)})
			line = appendStatementLine(line[:0], &l)
			if w, err := deterministic.Marshal(want.Lines[len(want.Lines)-1].GetLine()); err != nil || !bytes.Equal(line, w) {
				t.Fatalf("line %d: %x, want %x (%v): %+v", i, line, w, err, l)
			}
			item = appendAccountLine(item[:0], account, line, seq)
			got = protowire.AppendTag(got, linesResponseLines, protowire.BytesType)
			got = protowire.AppendBytes(got, item)
		}
		w, err := deterministic.Marshal(want)
		if err != nil || !bytes.Equal(got, w) {
			t.Fatalf("message %d: %x, want %x (%v)", i, got, w, err)
		}
	}
}

// A stored text that is not UTF-8 (a database whose encoding is SQL_ASCII)
// is named: a proto string cannot carry it.
func TestBadLineText(t *testing.T) {
	l := queries.StatementLine{Amount: "1.00", Metadata: map[string]string{"k": "v"}}
	if bad := badLineText("a", &l); bad != "" {
		t.Errorf("a line of UTF-8: %q named", bad)
	}
	l.CounterAccounts = []string{"b", "\xff"}
	if bad := badLineText("a", &l); bad != "counter_accounts" {
		t.Errorf("a counter account not UTF-8: %q named, want counter_accounts", bad)
	}
	l.CounterAccounts, l.Metadata = nil, map[string]string{"k": "\xc3"}
	if bad := badLineText("a", &l); bad != "metadata" {
		t.Errorf("metadata not UTF-8: %q named, want metadata", bad)
	}
	if bad := badLineText("\xff", &l); bad != "account" {
		t.Errorf("an account not UTF-8: %q named, want account", bad)
	}
}

// sentLines keeps what a lineSender sends, as protobuf reads it.
type sentLines struct {
	messages []*ledgerv1.ReadStatementLinesResponse
	sizes    []int
}

func (s *sentLines) send(m *encodedMessage) error {
	b, err := m.buffer()
	if err != nil {
		return err
	}
	defer b.Free()
	msg := &ledgerv1.ReadStatementLinesResponse{}
	if err := proto.Unmarshal(b.ReadOnlyData(), msg); err != nil {
		return err
	}
	s.messages, s.sizes = append(s.messages, msg), append(s.sizes, b.Len())
	return nil
}

// lineSender sends every line once, in order, in messages of at most
// 1,000 lines and 3 MiB, and refuses a text that is not UTF-8 with
// DataLoss, sending nothing more.
func TestLineSenderBounds(t *testing.T) {
	stream := &sentLines{}
	o := &lineSender{send: stream.send, pool: &bufferPool{}}
	big := strings.Repeat("r", 100_000)
	const small, large = 2500, 70
	for i := range small + large {
		l := queries.StatementLine{Position: uint64(i + 1), Amount: "1.00"}
		if i >= small {
			l.Reference = big
		}
		if err := o.add("a", 0, &l); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.flush(); err != nil {
		t.Fatal(err)
	}
	next := uint64(1)
	for i, m := range stream.messages {
		if n := len(m.GetLines()); n == 0 || n > statementLinesBatchMax || stream.sizes[i] > statementLinesBytesMax {
			t.Errorf("message %d: %d lines, %d bytes; want 1..%d lines, at most %d bytes", i, n, stream.sizes[i],
				statementLinesBatchMax, statementLinesBytesMax)
		}
		for _, l := range m.GetLines() {
			if l.GetLine().GetPosition() != next {
				t.Fatalf("message %d: line at %d, want %d", i, l.GetLine().GetPosition(), next)
			}
			next++
		}
	}
	if next != small+large+1 || len(stream.messages) < 5 {
		t.Errorf("%d lines in %d messages, want %d in at least 5", next-1, len(stream.messages), small+large)
	}

	sent := len(stream.messages)
	if err := o.add("a", 0, &queries.StatementLine{Position: 1}); err != nil {
		t.Fatal(err)
	}
	err := o.add("a", 0, &queries.StatementLine{Position: 2, Reference: "\xff"})
	if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "reference") {
		t.Errorf("a reference not UTF-8: %v, want DataLoss naming it", err)
	}
	o.release()
	if o.wire != nil || len(stream.messages) != sent {
		t.Errorf("after a refusal: %d messages sent, %d before; want none more and the buffer released",
			len(stream.messages), sent)
	}
}
