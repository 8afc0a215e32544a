package eventstore_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/eventstore"
)

func sampleRecord() eventstore.Record {
	r := eventstore.Record{Ledger: "demo", Position: 1 << 40, Type: "TransferCommitted", SchemaVersion: 1,
		RecordedAt: time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC), CommandID: "t-1",
		Payload: []byte(`{"id":"t-1","postings":[],"effective_at":"2026-11-22T10:00:00Z"}`)}
	r.Seal(eventstore.Hash{9})
	return r
}

func TestBinaryRoundTrip(t *testing.T) {
	want := sampleRecord()
	got, err := eventstore.ParseRecordBinary(want.AppendBinary(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.Ledger != want.Ledger || got.Position != want.Position || got.Type != want.Type || got.SchemaVersion != want.SchemaVersion ||
		!got.RecordedAt.Equal(want.RecordedAt) || got.CommandID != want.CommandID || !bytes.Equal(got.Payload, want.Payload) ||
		got.PrevHash != want.PrevHash || got.Hash != want.Hash || !got.VerifyHash() {
		t.Errorf("round trip: got %+v, want %+v", got, want)
	}
	for _, bad := range [][]byte{nil, []byte("LGR"), []byte("XXXX"), want.AppendBinary(nil)[:20]} {
		if _, err := eventstore.ParseRecordBinary(bad); !errors.Is(err, eventstore.ErrMalformed) {
			t.Errorf("ParseRecordBinary(%q): err = %v, want ErrMalformed", bad, err)
		}
	}
}

// FuzzParseRecordBinary: never panics; what parses re-encodes to the same bytes.
func FuzzParseRecordBinary(f *testing.F) {
	r := sampleRecord()
	f.Add(r.AppendBinary(nil))
	f.Add([]byte("LGR\x01\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := eventstore.ParseRecordBinary(b)
		if err != nil {
			return
		}
		if again := got.AppendBinary(nil); !bytes.Equal(again, b) {
			// Varints have one shortest form; a longer one parses but re-encodes
			// shorter. Parse the re-encoding and compare the records instead.
			back, err := eventstore.ParseRecordBinary(again)
			if err != nil || back.Position != got.Position || back.Ledger != got.Ledger || back.Hash != got.Hash ||
				!bytes.Equal(back.Payload, got.Payload) || back.CommandID != got.CommandID || back.Type != got.Type {
				t.Fatalf("re-encoding differs: %q -> %q (%v)", b, again, err)
			}
		}
	})
}

// ParseRecordJSON reads exactly what AppendJSON writes, with or without its
// line end; any other spelling of the same record is ErrJSONForm. It read
// whatever encoding/json made of a line: a repeated key (last wins), an
// unknown or upper-case key, a time in another zone.
func TestParseRecordJSONReadsOnlyAppendJSONForm(t *testing.T) {
	want := sampleRecord()
	line := string(want.AppendJSON(nil))
	for _, ok := range []string{line, line + "\n", line + "\r\n", line + "\r"} {
		got, err := eventstore.ParseRecordJSON([]byte(ok))
		if err != nil || got.Hash != want.Hash || !got.VerifyHash() {
			t.Errorf("ParseRecordJSON(%q): hash %x, err %v; want the record", ok, got.Hash[:4], err)
		}
	}
	for name, bad := range map[string]string{
		"a space before":     " " + line,
		"a space after":      line + " ",
		"a repeated key":     strings.Replace(line, `"type":`, `"type":"X","type":`, 1),
		"an unknown key":     strings.Replace(line, `,"hash":`, `,"by":"m","hash":`, 1),
		"an upper-case key":  strings.Replace(line, `"ledger":`, `"LEDGER":`, 1),
		"upper-case hex":     strings.Replace(line, hex.EncodeToString(want.Hash[:]), strings.ToUpper(hex.EncodeToString(want.Hash[:])), 1),
		"recorded_at in +01": strings.Replace(line, `10:00:00.123456Z`, `11:00:00.123456+01:00`, 1),
		"recorded_at in ns":  strings.Replace(line, `10:00:00.123456Z`, `10:00:00.123456000Z`, 1),
	} {
		if bad == line {
			t.Fatalf("%s: the edit did nothing", name)
		}
		if _, err := eventstore.ParseRecordJSON([]byte(bad)); !errors.Is(err, eventstore.ErrJSONForm) {
			t.Errorf("%s: ParseRecordJSON(%q): err = %v, want ErrJSONForm", name, bad, err)
		}
	}
}
