package eventstore

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// AppendJSON appends r as one JSON object, its canonical envelope plus the two
// hashes in hex: the form in which records travel (NATS messages, exports).
func (r *Record) AppendJSON(b []byte) []byte {
	c := r.Canonical()
	b = append(b, c[:len(c)-1]...)
	b = append(b, `,"prev_hash":"`...)
	b = hex.AppendEncode(b, r.PrevHash[:])
	b = append(b, `","hash":"`...)
	b = hex.AppendEncode(b, r.Hash[:])
	return append(b, `"}`...)
}

type recordJSON struct {
	Ledger        string          `json:"ledger"`
	Position      uint64          `json:"position"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	RecordedAt    time.Time       `json:"recorded_at"`
	CommandID     string          `json:"command_id"`
	Payload       json.RawMessage `json:"payload"`
	PrevHash      string          `json:"prev_hash"`
	Hash          string          `json:"hash"`
}

// ErrJSONForm means a JSON record is not byte for byte what AppendJSON
// writes for the record it parses to: a key repeated, unknown or in another
// case, other spacing, recorded_at in another zone or precision, hashes in
// upper case. ledgerd never wrote such a line, and another JSON reader may
// read it as another record (a repeated key is resolved first-wins by some,
// last-wins by encoding/json): what an auditor's tool reads would not be
// what is imported.
var ErrJSONForm = errors.New("not in the form ledgerd writes")

// jsonFormContext bounds the bytes an ErrJSONForm error quotes from either
// side of where the line and AppendJSON's form part.
const jsonFormContext = 32

// ParseRecordJSON reads a record written by AppendJSON: exactly its bytes,
// with or without its line end, LF or CRLF (a file whose line ends were
// converted). It does not verify the hash: call VerifyHash.
//
// Errors: the JSON or hex error of a malformed record; ErrJSONForm.
func ParseRecordJSON(b []byte) (Record, error) {
	b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Record{}, fmt.Errorf("parse record: %w", err)
	}
	r := Record{Ledger: j.Ledger, Position: j.Position, Type: j.Type, SchemaVersion: j.SchemaVersion,
		RecordedAt: j.RecordedAt.UTC(), CommandID: j.CommandID, Payload: []byte(j.Payload)}
	if err := decodeHash(&r.PrevHash, j.PrevHash); err != nil {
		return Record{}, fmt.Errorf("parse record %d: prev_hash: %w", j.Position, err)
	}
	if err := decodeHash(&r.Hash, j.Hash); err != nil {
		return Record{}, fmt.Errorf("parse record %d: hash: %w", j.Position, err)
	}
	if err := checkJSONForm(&r, b); err != nil {
		return Record{}, err
	}
	return r, nil
}

// checkJSONForm holds line to what AppendJSON writes for r, the record
// parsed from it.
//
// Errors: ErrJSONForm, quoting both where they part.
func checkJSONForm(r *Record, line []byte) error {
	want := r.AppendJSON(make([]byte, 0, len(line)))
	if bytes.Equal(line, want) {
		return nil
	}
	i := 0
	for i < len(line) && i < len(want) && line[i] == want[i] {
		i++
	}
	quote := func(b []byte) []byte { return b[i:min(len(b), i+jsonFormContext)] }
	return fmt.Errorf("parse record %d: at byte %d the line has %q, ledgerd writes %q: %w",
		r.Position, i+1, quote(line), quote(want), ErrJSONForm)
}

func decodeHash(h *Hash, s string) error {
	if hex.DecodedLen(len(s)) != HashSize {
		return fmt.Errorf("want %d hex digits, got %d", 2*HashSize, len(s))
	}
	_, err := hex.Decode(h[:], []byte(s))
	return err
}

// binaryMagic starts a record in binary form; its last byte is the version.
const binaryMagic = "LGR\x01"

// ErrMalformed means a record's binary form cannot be read.
var ErrMalformed = errors.New("malformed record")

// AppendBinary appends r in the compact binary form that travels on NATS: the
// magic, then uvarint position, length-prefixed ledger, type and command id,
// uvarint schema version, varint recorded_at in Unix microseconds, the two
// hashes, and the payload to the end. It carries exactly what Canonical hashes.
func (r *Record) AppendBinary(b []byte) []byte {
	b = append(b, binaryMagic...)
	b = binary.AppendUvarint(b, r.Position)
	b = appendBytes(b, r.Ledger)
	b = appendBytes(b, r.Type)
	b = appendBytes(b, r.CommandID)
	b = binary.AppendUvarint(b, uint64(r.SchemaVersion))
	b = binary.AppendVarint(b, r.RecordedAt.UnixMicro())
	b = append(b, r.PrevHash[:]...)
	b = append(b, r.Hash[:]...)
	return append(b, r.Payload...)
}

func appendBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// ParseRecordBinary reads a record written by AppendBinary. The payload shares
// b's memory. It does not verify the hash: call VerifyHash.
//
// Errors: ErrMalformed.
func ParseRecordBinary(b []byte) (Record, error) {
	if len(b) < len(binaryMagic) || string(b[:len(binaryMagic)]) != binaryMagic {
		return Record{}, fmt.Errorf("bad magic: %w", ErrMalformed)
	}
	d := decoder{b: b[len(binaryMagic):]}
	var r Record
	r.Position = d.uvarint()
	r.Ledger = d.str()
	r.Type = d.str()
	r.CommandID = d.str()
	r.SchemaVersion = int(d.uvarint())
	r.RecordedAt = time.UnixMicro(d.varint()).UTC()
	d.hash(&r.PrevHash)
	d.hash(&r.Hash)
	if d.err != nil {
		return Record{}, d.err
	}
	r.Payload = d.b
	return r, nil
}

// decoder reads the binary form, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: %w", what, ErrMalformed)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string length")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) hash(h *Hash) {
	if len(d.b) < HashSize {
		d.fail("hash")
		return
	}
	copy(h[:], d.b[:HashSize])
	d.b = d.b[HashSize:]
}
