package audit_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// importLog builds a sealed log of events, as a writer would write it.
type importLog struct {
	ledger string
	at     time.Time
	recs   []eventstore.Record
}

func newImportLog(ledger string) *importLog {
	return &importLog{ledger: ledger, at: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (l *importLog) add(id string, e domain.Event) *importLog {
	l.at = l.at.Add(time.Millisecond)
	l.recs = append(l.recs, eventstore.Record{Ledger: l.ledger, Position: uint64(len(l.recs) + 1), Type: e.EventType(),
		SchemaVersion: domain.SchemaVersion, RecordedAt: l.at, CommandID: id, Payload: domain.AppendEvent(nil, e)})
	return l
}

// importReseal recomputes positions and the chain, as a forger would.
func importReseal(recs []eventstore.Record) {
	var prev eventstore.Hash
	for i := range recs {
		recs[i].Position = uint64(i + 1)
		recs[i].Seal(prev)
		prev = recs[i].Hash
	}
}

func importUSD(cents int64) domain.Amount {
	return domain.Amount{Units: domain.UnitsFromInt64(cents), Scale: 2}
}

func importPosting(from, to string, cents int64) domain.Posting {
	return domain.Posting{Debit: from, Credit: to, Asset: "USD", Amount: importUSD(cents)}
}

var importEffective = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

// importSampleLog is a small ledger: an asset, two accounts, a transfer, a hold
// posted in part, and a reversal of the transfer in part.
func importSampleLog() []eventstore.Record {
	l := newImportLog("books")
	l.add("USD", domain.AssetDefined{Code: "USD", Scale: 2})
	l.add("alice", domain.AccountOpened{ID: "alice", Asset: "USD", Normal: domain.SideCredit})
	l.add("bob", domain.AccountOpened{ID: "bob", Asset: "USD", Normal: domain.SideCredit, Metadata: map[string]string{"k": "v"}})
	l.add("t1", domain.TransferCommitted{ID: "t1", Postings: []domain.Posting{importPosting("alice", "bob", 1000)}, EffectiveAt: importEffective})
	l.add("h1", domain.TransferPending{ID: "h1", Postings: []domain.Posting{importPosting("bob", "alice", 300)}, EffectiveAt: importEffective})
	l.add("p1", domain.PendingPosted{ID: "p1", PendingID: "h1", EffectiveAt: importEffective, Postings: []domain.HeldPosting{
		{Debit: "bob", Credit: "alice", Asset: "USD", Amount: importUSD(100), Held: importUSD(300)}}})
	l.add("r1", domain.TransferReversed{ID: "r1", TransferID: "t1", TransferPosition: 4,
		Postings: []domain.Posting{importPosting("bob", "alice", 400)}, EffectiveAt: importEffective})
	importReseal(l.recs)
	return l.recs
}

// importCheck runs a checker over recs, reading priors from recs, and returns the
// first error.
func importCheck(recs []eventstore.Record) (*audit.ImportChecker, error) {
	c := audit.NewImportChecker(func(pos uint64) (eventstore.Record, error) {
		if pos == 0 || pos > uint64(len(recs)) {
			return eventstore.Record{}, fmt.Errorf("no position %d", pos)
		}
		return recs[pos-1], nil
	})
	for i := range recs {
		if err := c.Check(&recs[i]); err != nil {
			return c, err
		}
	}
	return c, nil
}

func TestImportCheckerAcceptsAWritersLog(t *testing.T) {
	t.Parallel()
	recs := importSampleLog()
	c, err := importCheck(recs)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	head, hash := c.Head()
	if head != uint64(len(recs)) || hash != recs[len(recs)-1].Hash || c.Ledger() != "books" {
		t.Errorf("head %d %x of %q, want %d %x of books", head, hash[:4], c.Ledger(), len(recs), recs[len(recs)-1].Hash[:4])
	}
}

// TestImportCheckerTakesStatementLines: a statement line's command id is
// its external id, which may hold '/', as a bank's ("2026-01-02/000123").
func TestImportCheckerTakesStatementLines(t *testing.T) {
	t.Parallel()
	l := &importLog{ledger: "books", at: importEffective}
	l.recs = importSampleLog()
	line := domain.StatementImported{Account: "alice", Source: "acme-bank", ExternalID: "2026-01-02/000123", Amount: importUSD(100),
		Direction: domain.SideCredit, ValueDate: "2026-01-02"}
	l.at = l.recs[len(l.recs)-1].RecordedAt
	l.add(line.ExternalID, line)
	importReseal(l.recs)
	if _, err := importCheck(l.recs); err != nil {
		t.Errorf("a statement line of external id %s: %v", line.ExternalID, err)
	}
}

func TestImportCheckerRefusesTheFirstBadEvent(t *testing.T) {
	t.Parallel()
	extra := func(recs []eventstore.Record, id string, e domain.Event) []eventstore.Record {
		l := &importLog{ledger: "books", at: recs[len(recs)-1].RecordedAt, recs: recs}
		l.add(id, e)
		importReseal(l.recs)
		return l.recs
	}
	cases := []struct {
		name   string
		tamper func([]eventstore.Record) []eventstore.Record
		pos    uint64
		reason error
	}{
		{"payload byte changed", func(r []eventstore.Record) []eventstore.Record {
			r[3].Payload = bytes.Replace(r[3].Payload, []byte("10.00"), []byte("90.00"), 1)
			return r
		}, 4, audit.ErrImportHash},
		{"event deleted", func(r []eventstore.Record) []eventstore.Record { return append(r[:2], r[3:]...) }, 4, audit.ErrImportPosition},
		{"events swapped", func(r []eventstore.Record) []eventstore.Record {
			r[3], r[4] = r[4], r[3]
			return r
		}, 5, audit.ErrImportPosition},
		{"first event not from 1", func(r []eventstore.Record) []eventstore.Record { return r[1:] }, 2, audit.ErrImportPosition},
		{"prev hash broken", func(r []eventstore.Record) []eventstore.Record {
			r[2].PrevHash[0] ^= 1
			r[2].Seal(r[2].PrevHash)
			return r
		}, 3, audit.ErrImportPrevHash},
		{"another ledger", func(r []eventstore.Record) []eventstore.Record {
			r[2].Ledger = "other"
			importReseal(r)
			return r
		}, 3, audit.ErrImportLedger},
		{"posting to an unknown account, chain recomputed", func(r []eventstore.Record) []eventstore.Record {
			return extra(r, "t9", domain.TransferCommitted{ID: "t9", Postings: []domain.Posting{importPosting("alice", "nobody", 1)}, EffectiveAt: importEffective})
		}, 8, audit.ErrImportInvariant},
		{"category under an unknown parent, chain recomputed", func(r []eventstore.Record) []eventstore.Record {
			return extra(r, "assets:cash", domain.CategoryDefined{Name: "assets:cash", Parent: "assets", Patterns: []string{"bank:*"}})
		}, 8, audit.ErrImportInvariant},
		{"category pattern malformed, chain recomputed", func(r []eventstore.Record) []eventstore.Record {
			return extra(r, "assets", domain.CategoryDefined{Name: "assets", Patterns: []string{"bank:a*"}})
		}, 8, audit.ErrImportInvariant},
		{"transfer id taken twice", func(r []eventstore.Record) []eventstore.Record {
			return extra(r, "t1", domain.TransferCommitted{ID: "t1", Postings: []domain.Posting{importPosting("alice", "bob", 1)}, EffectiveAt: importEffective})
		}, 8, audit.ErrImportDuplicateID},
		{"reversal over what is left", func(r []eventstore.Record) []eventstore.Record {
			return extra(r, "r2", domain.TransferReversed{ID: "r2", TransferID: "t1", TransferPosition: 4,
				Postings: []domain.Posting{importPosting("bob", "alice", 601)}, EffectiveAt: importEffective})
		}, 8, audit.ErrImportReversal},
		{"reversal of a hold", func(r []eventstore.Record) []eventstore.Record {
			return extra(r, "r2", domain.TransferReversed{ID: "r2", TransferID: "h1", TransferPosition: 5,
				Postings: []domain.Posting{importPosting("alice", "bob", 1)}, EffectiveAt: importEffective})
		}, 8, audit.ErrImportReversal},
		{"reversal the wrong way", func(r []eventstore.Record) []eventstore.Record {
			return extra(r, "r2", domain.TransferReversed{ID: "r2", TransferID: "t1", TransferPosition: 4,
				Postings: []domain.Posting{importPosting("alice", "bob", 1)}, EffectiveAt: importEffective})
		}, 8, audit.ErrImportReversal},
		{"payload not canonical, chain recomputed", func(r []eventstore.Record) []eventstore.Record {
			r[1].Payload = append([]byte(" "), r[1].Payload...)
			importReseal(r)
			return r
		}, 2, audit.ErrImportNotCanonical},
		{"NUL in metadata, chain recomputed", func(r []eventstore.Record) []eventstore.Record {
			r[2].Payload = domain.AppendEvent(nil, domain.AccountOpened{ID: "bob", Asset: "USD", Normal: domain.SideCredit,
				Metadata: map[string]string{"k": "a\x00b"}})
			importReseal(r)
			return r
		}, 3, audit.ErrImportPayload},
		{"unknown type, chain recomputed", func(r []eventstore.Record) []eventstore.Record {
			r[1].Type = "AccountOpenedd"
			importReseal(r)
			return r
		}, 2, audit.ErrImportPayload},
		{"recorded_at goes back, chain recomputed", func(r []eventstore.Record) []eventstore.Record {
			r[4].RecordedAt = r[2].RecordedAt.Add(-time.Second)
			importReseal(r)
			return r
		}, 5, audit.ErrImportRecordedAt},
		{"recorded_at under a microsecond, chain recomputed", func(r []eventstore.Record) []eventstore.Record {
			r[4].RecordedAt = r[4].RecordedAt.Add(time.Nanosecond)
			importReseal(r)
			return r
		}, 5, audit.ErrImportEnvelope},
		{"command id malformed, chain recomputed", func(r []eventstore.Record) []eventstore.Record {
			r[3].CommandID = "t 1"
			importReseal(r)
			return r
		}, 4, audit.ErrImportEnvelope},
		{"payload over the bound", func(r []eventstore.Record) []eventstore.Record {
			r[3].Payload = make([]byte, audit.ImportPayloadMax+1)
			return r
		}, 4, audit.ErrImportEnvelope},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recs := tc.tamper(importSampleLog())
			c, err := importCheck(recs)
			var ie *audit.ImportError
			if !errors.As(err, &ie) || ie.Position != tc.pos || !errors.Is(err, tc.reason) {
				t.Fatalf("got %v, want %v at position %d", err, tc.reason, tc.pos)
			}
			// A refused checker stays refused.
			if again := c.Check(&recs[len(recs)-1]); !errors.Is(again, tc.reason) {
				t.Errorf("after the refusal: %v, want %v", again, tc.reason)
			}
		})
	}
}

func TestImportCheckerAtTheBounds(t *testing.T) {
	t.Parallel()
	l := newImportLog("books")
	l.add("USD", domain.AssetDefined{Code: "USD", Scale: 2})
	l.add("alice", domain.AccountOpened{ID: "alice", Asset: "USD", Normal: domain.SideCredit})
	l.add("bob", domain.AccountOpened{ID: "bob", Asset: "USD", Normal: domain.SideCredit})
	// A reversal in parts up to exactly the original, then one cent more.
	l.add("t1", domain.TransferCommitted{ID: "t1", Postings: []domain.Posting{importPosting("alice", "bob", 10)}, EffectiveAt: importEffective})
	for i := range 2 {
		l.add(fmt.Sprintf("r%d", i), domain.TransferReversed{ID: fmt.Sprintf("r%d", i), TransferID: "t1", TransferPosition: 4,
			Postings: []domain.Posting{importPosting("bob", "alice", 5)}, EffectiveAt: importEffective})
	}
	importReseal(l.recs)
	if _, err := importCheck(l.recs); err != nil {
		t.Fatalf("reversed in full, in parts: %v", err)
	}
	l.add("r9", domain.TransferReversed{ID: "r9", TransferID: "t1", TransferPosition: 4,
		Postings: []domain.Posting{importPosting("bob", "alice", 1)}, EffectiveAt: importEffective})
	importReseal(l.recs)
	if _, err := importCheck(l.recs); !errors.Is(err, audit.ErrImportReversal) {
		t.Errorf("one cent past the original: %v, want %v", err, audit.ErrImportReversal)
	}

	// A payload of exactly ImportPayloadMax bytes passes the size bound (and
	// is refused only for what it holds).
	recs := importSampleLog()
	recs[3].Payload = bytes.Repeat([]byte(" "), audit.ImportPayloadMax)
	importReseal(recs)
	if _, err := importCheck(recs); !errors.Is(err, audit.ErrImportPayload) {
		t.Errorf("payload of ImportPayloadMax blanks: %v, want %v", err, audit.ErrImportPayload)
	}
}

// TestImportIndexFindsEveryRecord reads back every record of a JSON Lines
// file, across several strides and with blank lines, through the index.
func TestImportIndexFindsEveryRecord(t *testing.T) {
	t.Parallel()
	l := newImportLog("books")
	l.add("USD", domain.AssetDefined{Code: "USD", Scale: 2})
	for i := range 200 {
		id := fmt.Sprintf("a%d", i)
		l.add(id, domain.AccountOpened{ID: id, Asset: "USD", Normal: domain.SideCredit})
	}
	importReseal(l.recs)
	var file []byte
	offsets := make([]int64, len(l.recs))
	for i := range l.recs {
		if i%50 == 7 {
			file = append(file, "  \n"...)
		}
		offsets[i] = int64(len(file))
		file = l.recs[i].AppendJSON(file)
		file = append(file, '\n')
	}
	file = file[:len(file)-1] // the last line without its line feed
	path := filepath.Join(t.TempDir(), "log.jsonl")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	index := audit.NewImportIndex(f, audit.ImportFrameLine, eventstore.ParseRecordJSON)
	for _, off := range offsets {
		index.Add(off)
	}
	for pos := uint64(1); pos <= index.Len(); pos++ {
		r, err := index.Record(pos)
		if err != nil || r.Position != pos || r.Hash != l.recs[pos-1].Hash {
			t.Fatalf("record %d: position %d, err %v", pos, r.Position, err)
		}
	}
	if _, err := index.Record(index.Len() + 1); err == nil {
		t.Errorf("record past the end: no error")
	}
}
