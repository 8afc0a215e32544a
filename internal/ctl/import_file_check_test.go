package ctl

// Tests of the file checks of log import (importScan) and audit verify --in
// (filelog): the file must be one that log export could have written, and
// both readers judge it alike.

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/grpcapi"
	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/filelog"
	"github.com/ledgerd/ledger/audit/logtest"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// booksLog is a small sealed log of ledger "books", as a writer writes it.
func booksLog() []eventstore.Record {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	usd := func(c int64) domain.Amount { return domain.Amount{Units: domain.UnitsFromInt64(c), Scale: 2} }
	eff := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	var recs []eventstore.Record
	add := func(id string, e domain.Event) {
		at = at.Add(time.Millisecond)
		recs = append(recs, eventstore.Record{Ledger: "books", Position: uint64(len(recs) + 1), Type: e.EventType(),
			SchemaVersion: domain.SchemaVersion, RecordedAt: at, CommandID: id, Payload: domain.AppendEvent(nil, e)})
	}
	add("USD", domain.AssetDefined{Code: "USD", Scale: 2})
	add("alice", domain.AccountOpened{ID: "alice", Asset: "USD", Normal: domain.SideCredit})
	add("bob", domain.AccountOpened{ID: "bob", Asset: "USD", Normal: domain.SideCredit})
	add("t1", domain.TransferCommitted{ID: "t1", EffectiveAt: eff,
		Postings: []domain.Posting{{Debit: "alice", Credit: "bob", Asset: "USD", Amount: usd(1000)}}})
	add("t2", domain.TransferCommitted{ID: "t2", EffectiveAt: eff,
		Postings: []domain.Posting{{Debit: "bob", Credit: "alice", Asset: "USD", Amount: usd(250)}}})
	reseal(recs)
	return recs
}

func reseal(recs []eventstore.Record) {
	var prev eventstore.Hash
	for i := range recs {
		recs[i].Seal(prev)
		prev = recs[i].Hash
	}
}

func scanExport(t *testing.T, b []byte) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.jsonl")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, _, _, err = importScan(f)
	return err
}

// A line that is not byte for byte what log export writes for its record
// (eventstore.Record.AppendJSON) was not written by ledgerd, and is refused
// (eventstore.ErrJSONForm): a duplicate key (which parsers resolve
// differently: what an auditor's tool reads is not what is imported), a key
// ledgerd never writes, or an envelope written in another form. importScan
// took each as the record json.Unmarshal made of it.
func TestImportScanRefusesALineNotInTheFormLedgerdWrites(t *testing.T) {
	recs := booksLog()
	clean, err := audit.AppendExport(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	if err := scanExport(t, clean); err != nil {
		t.Fatalf("the clean export is refused: %v", err)
	}
	lines := bytes.SplitAfter(clean, []byte("\n"))
	const k = 3 // line 4: the transfer t1
	orig := string(lines[k])
	for name, edit := range map[string]func(string) string{
		// The first "payload" is what a first-wins reader (and a human) sees;
		// the second, what is imported.
		"a duplicate payload key": func(l string) string {
			return strings.Replace(l, `"payload":`, `"payload":{"id":"t1","postings":[{"debit":"alice","credit":"bob","asset":"USD","amount":"999999.00"}]},"payload":`, 1)
		},
		"a duplicate ledger key": func(l string) string {
			return strings.Replace(l, `{"ledger":"books"`, `{"ledger":"other","ledger":"books"`, 1)
		},
		"a key ledgerd never writes": func(l string) string {
			return strings.Replace(l, `,"hash":`, `,"approved_by":"mallory","hash":`, 1)
		},
		"a key in another case": func(l string) string {
			return strings.Replace(l, `"command_id":`, `"COMMAND_ID":`, 1)
		},
		"recorded_at in another time zone": func(l string) string {
			r, err := eventstore.ParseRecordJSON([]byte(l))
			if err != nil {
				t.Fatal(err)
			}
			const layout = "2006-01-02T15:04:05.000000Z07:00"
			utc := r.RecordedAt.Format(layout)
			other := r.RecordedAt.In(time.FixedZone("", 3600)).Format(layout)
			if !strings.Contains(l, utc) {
				t.Fatalf("line %q lacks %q", l, utc)
			}
			return strings.Replace(l, utc, other, 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			edited := edit(orig)
			if edited == orig {
				t.Fatalf("edit did nothing: %s", orig)
			}
			b := bytes.Join(append(append(append([][]byte{}, lines[:k]...), []byte(edited)), lines[k+1:]...), nil)
			err := scanExport(t, b)
			if !errors.Is(err, eventstore.ErrJSONForm) {
				t.Errorf("log import of line %d with %s: %v, want ErrJSONForm:\n%s", k+1, name, err, edited)
			}
			t.Logf("importScan: %v", err)
		})
	}
}

// The trailer's anchors are the evidence a re-sealed export is caught by
// (operations.md, Integrity: "export trailer | log import ... | an export
// ... re-sealed"). An export whose events were edited and re-sealed, its
// trailer's last_hash updated, but its (signed) anchors kept, contradicts
// itself: the anchor signs, at its position, a hash the file does not hold.
// log import and audit verify --in checked only the anchors' ledger and
// positions, never their hash against the file's event there, and took it;
// now both refuse it (audit.ErrTrailer).
func TestImportAndVerifyInRefuseATrailerWhoseAnchorContradictsTheFile(t *testing.T) {
	recs := booksLog()
	s := anchor.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	a, err := s.Sign("books", 4, recs[3].Hash, time.Date(2025, 3, 1, 13, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	write := func(recs []eventstore.Record) []byte {
		var b []byte
		var tc audit.TrailerCheck
		for i := range recs {
			b = append(recs[i].AppendJSON(b), '\n')
			if err := tc.Event(&recs[i]); err != nil {
				t.Fatal(err)
			}
		}
		tr := tc.Written("books")
		tr.Anchors = []anchor.Anchor{a}
		b, err := audit.AppendTrailer(b, &tr)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := scanExport(t, write(recs)); err != nil {
		t.Fatalf("the genuine export is refused: %v", err)
	}
	// Forge: t1 moves 9,000.00 instead of 10.00; re-seal the chain from it.
	forged := booksLog()
	forged[3].Payload = domain.AppendEvent(nil, domain.TransferCommitted{ID: "t1",
		EffectiveAt: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), Postings: []domain.Posting{{Debit: "alice", Credit: "bob",
			Asset: "USD", Amount: domain.Amount{Units: domain.UnitsFromInt64(900000), Scale: 2}}}})
	reseal(forged)
	if forged[3].Hash == recs[3].Hash {
		t.Fatal("the forgery did not change the hash")
	}
	file := write(forged)
	if err := scanExport(t, file); !errors.Is(err, audit.ErrTrailer) {
		t.Errorf("log import of an export whose trailer's anchor at 4 signs %x, the file's event 4 has %x: %v, want ErrTrailer",
			recs[3].Hash[:4], forged[3].Hash[:4], err)
	}
	path := filepath.Join(t.TempDir(), "log.jsonl")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.Verify(t.Context(), &filelog.Log{Path: path}, nil, audit.Options{}); !errors.Is(err, audit.ErrTrailer) {
		t.Errorf("audit verify --in of the same export: %v, %+v; want ErrTrailer", err, rep)
	}
}

// log import and audit verify --in agree on a file with a line of white
// space: importScan skipped such a line (audit.ImportBlankLine), filelog.Log
// only an empty one, and reported the other as a malformed event: the same
// export was imported, and said to diverge by the offline verification.
// Now both skip it.
func TestVerifyInAgreesWithImportOnABlankLine(t *testing.T) {
	clean, err := audit.AppendExport(nil, booksLog())
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(clean, []byte("\n"))
	b := bytes.Join(append(append(append([][]byte{}, lines[:2]...), []byte(" \t\n")), lines[2:]...), nil)
	importErr := scanExport(t, b)
	path := filepath.Join(t.TempDir(), "log.jsonl")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(t.Context(), &filelog.Log{Path: path}, nil, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if importErr != nil || !rep.Clean() {
		t.Errorf("log import: %v; audit verify --in: clean %v, %+v; want both to skip the blank line",
			importErr, rep.Clean(), rep.Divergence)
	}
}

// TestImportScanTakesTheLargestEvents: log import reads and checks a log of
// the largest event of every type a writer decides (a period's close over
// the most assets is a line of over a megabyte), and a message of its
// events, however full, stays within ledgerd's bound of one.
func TestImportScanTakesTheLargestEvents(t *testing.T) {
	l := logtest.LargestLog(t)
	b, err := audit.AppendExport(nil, l.Records)
	if err != nil {
		t.Fatal(err)
	}
	if err := scanExport(t, b); err != nil {
		t.Errorf("importScan: %v", err)
	}
	// importSend sends once a message holds importMessageBytesMax: the
	// event that fills it may be the largest line.
	if got := importMessageBytesMax + audit.ImportLineMax + importEnvelopeBytes; got > grpcapi.RecvMaxLarge {
		t.Errorf("a message of up to %d bytes, ledgerd takes %d", got, grpcapi.RecvMaxLarge)
	}
}
