package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/filelog"
	"github.com/ledgerd/ledger/audit/logtest"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// largestPeriodClose is e with every figure of its trial balance the
// longest a sum may be: AccountsMaxDefault accounts, each of the largest
// amount, at ScaleMax. No test posts that much; the close's shape is the
// writer's, its figures at their bound.
func largestPeriodClose(e domain.PeriodClosed) domain.PeriodClosed {
	unitsMax := new(big.Int).Sub(new(big.Int).Exp(big.NewInt(10), big.NewInt(domain.DigitsMax), nil), big.NewInt(1))
	sum := domain.FormatMinor(new(big.Int).Mul(unitsMax, big.NewInt(domain.AccountsMaxDefault)), domain.ScaleMax)
	lines := make([]domain.PeriodAssetTotal, len(e.TrialBalance))
	for i, line := range e.TrialBalance {
		lines[i] = domain.PeriodAssetTotal{Asset: line.Asset, DebitsPosted: sum, CreditsPosted: sum}
	}
	e.TrialBalance = lines
	return e
}

// largestEnvelope is r with the longest envelope a writer writes: the
// largest position, a command id of AlertIDLenMax bytes.
func largestEnvelope(r eventstore.Record) eventstore.Record {
	r.Position = math.MaxUint64
	r.CommandID = strings.Repeat("c", domain.AlertIDLenMax)
	return r
}

// TestImportBoundsHoldLargestEvents: the largest event of every type a
// writer decides fits ImportPayloadMax, and its line, whatever its
// envelope, ImportLineMax; and a log of them exports, imports (the checker,
// reading the lines as log import does) and reads as verify --in does.
func TestImportBoundsHoldLargestEvents(t *testing.T) {
	l := logtest.LargestLog(t)
	for _, typ := range domain.EventTypes() {
		at, ok := l.ByType[typ]
		if !ok {
			t.Errorf("%s: no largest event built: add its case to logtest.LargestLog", typ)
			continue
		}
		r := l.Records[at-1]
		payloads := map[string][]byte{typ: r.Payload}
		if typ == domain.TypePeriodClosed {
			payloads[typ+" (largest figures)"] = domain.AppendEvent(nil, largestPeriodClose(l.Events[at].(domain.PeriodClosed)))
		}
		for name, payload := range payloads {
			r.Payload = payload
			env := largestEnvelope(r)
			line := env.AppendJSON(nil)
			t.Logf("%-32s payload %8d bytes, line %8d", name, len(payload), len(line))
			if len(payload) > audit.ImportPayloadMax {
				t.Errorf("%s: payload of %d bytes, ImportPayloadMax is %d", name, len(payload), audit.ImportPayloadMax)
			}
			if len(line) > audit.ImportLineMax {
				t.Errorf("%s: line of %d bytes, ImportLineMax is %d", name, len(line), audit.ImportLineMax)
			}
		}
	}

	export, err := audit.AppendExport(nil, l.Records)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "largest.jsonl")
	if err := os.WriteFile(path, export, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("import", func(t *testing.T) { checkImportsLargest(t, path, l.Records) })
	t.Run("verify --in", func(t *testing.T) { checkReadsLargest(t, path, l.Records) })
}

// checkImportsLargest reads the export at path line by line as log import
// does, and checks every event.
func checkImportsLargest(t *testing.T, path string, recs []eventstore.Record) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := audit.ImportNewLineReader(f)
	checker := audit.NewImportChecker(func(pos uint64) (eventstore.Record, error) { return recs[pos-1], nil })
	n := 0
	for {
		line, _, err := audit.ImportReadLine(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		if audit.IsTrailer(line) {
			continue
		}
		r, err := eventstore.ParseRecordJSON(line)
		if err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		if err := checker.Check(&r); err != nil {
			t.Fatalf("line %d (%s): %v", n+1, r.Type, err)
		}
		n++
	}
	if err := checker.Complete(); err != nil {
		t.Fatal(err)
	}
	if n != len(recs) {
		t.Errorf("imported %d events, want %d", n, len(recs))
	}
}

// checkReadsLargest reads the export at path as verify --in does.
func checkReadsLargest(t *testing.T, path string, recs []eventstore.Record) {
	n := 0
	fl := &filelog.Log{Path: path}
	err := fl.Read(context.Background(), 1, 0, func(page []eventstore.Record) error {
		for i := range page {
			if !page[i].VerifyHash() || !bytes.Equal(page[i].Payload, recs[n].Payload) {
				return fmt.Errorf("position %d does not read back", page[i].Position)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(recs) {
		t.Errorf("read %d events, want %d", n, len(recs))
	}
}
