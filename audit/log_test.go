package audit_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/filelog"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// export writes the ledger's log as JSON Lines, as ledgerctl log export does.
func (h *harness) export(t *testing.T, ledger string) []byte {
	t.Helper()
	var all []eventstore.Record
	err := h.serviceLog(ledger).Read(ctx(t), 1, 0, func(recs []eventstore.Record) error {
		all = append(all, recs...)
		return nil
	})
	testenv.NoError(t, err)
	out, err := audit.AppendExport(nil, all)
	testenv.NoError(t, err)
	return out
}

// exportRecords are the records of ledger's export, its trailer left out.
func (h *harness) exportRecords(t *testing.T, ledger string) []eventstore.Record {
	t.Helper()
	var recs []eventstore.Record
	for _, l := range bytes.Split(bytes.TrimSuffix(h.export(t, ledger), []byte("\n")), []byte("\n")) {
		if audit.IsTrailer(l) {
			continue
		}
		r, err := eventstore.ParseRecordJSON(l)
		testenv.NoError(t, err)
		recs = append(recs, r)
	}
	return recs
}

// verifyRecords verifies recs as an exported file, from the log alone.
func verifyRecords(t *testing.T, recs []eventstore.Record) *audit.Report {
	t.Helper()
	out, err := audit.AppendExport(nil, recs)
	testenv.NoError(t, err)
	rep, err := audit.Verify(ctx(t), &filelog.Log{Path: writeFile(t, out)}, nil, audit.Options{})
	testenv.NoError(t, err)
	return rep
}

func writeFile(t *testing.T, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.jsonl")
	testenv.NoError(t, os.WriteFile(path, b, 0o644))
	return path
}

func TestExportedFileVerifiesAlone(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 8).run(60)
	head := h.head(t, ledger)
	data := h.export(t, ledger)

	// Every line parses, every hash verifies, every link holds.
	var prev eventstore.Hash
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	trailer := lines[len(lines)-1]
	if !audit.IsTrailer(trailer) {
		t.Fatalf("the export ends with %s, not its trailer", trailer)
	}
	lines = lines[:len(lines)-1]
	if uint64(len(lines)) != head {
		t.Fatalf("%d lines, head %d", len(lines), head)
	}
	for i, l := range lines {
		r, err := eventstore.ParseRecordJSON(l)
		testenv.NoError(t, err)
		if r.Position != uint64(i+1) || r.Ledger != ledger || !r.VerifyHash() || r.PrevHash != prev {
			t.Fatalf("line %d: position %d ledger %s, hash verifies %v, links %v", i+1, r.Position, r.Ledger, r.VerifyHash(), r.PrevHash == prev)
		}
		prev = r.Hash
	}

	path := writeFile(t, data)
	rep, err := audit.Verify(ctx(t), &filelog.Log{Path: path}, nil, audit.Options{})
	testenv.NoError(t, err)
	mustClean(t, "export", rep)
	if rep.Ledger != ledger || rep.Events != head || !rep.Replayed || len(rep.Notes) == 0 {
		t.Errorf("report %+v, want %d events of %s replayed, noting that projections were not compared", rep, head, ledger)
	}
	// The replay of the file is the replay of the log.
	fromFile, err := audit.Replay(ctx(t), &filelog.Log{Path: path}, audit.At{Position: head / 2})
	testenv.NoError(t, err)
	fromLog, err := audit.Replay(ctx(t), h.serviceLog(ledger), audit.At{Position: head / 2})
	testenv.NoError(t, err)
	if diff := cmp.Diff(fromLog, fromFile); diff != "" {
		t.Errorf("replay of the export (-log +file):\n%s", diff)
	}

	cases := []struct {
		name string
		edit func(lines [][]byte) [][]byte
		want audit.Divergence
	}{
		{"a position changed", func(ls [][]byte) [][]byte {
			l := ls[4]
			i := bytes.Index(l, []byte(`"position":5`)) + len(`"position":`)
			l[i] = '6' // the canonical bytes say position 6 now
			return ls
		}, audit.Divergence{Kind: audit.KindGap, Position: 5}},
		{"a payload changed", func(ls [][]byte) [][]byte {
			l := ls[1] // an asset
			i := bytes.Index(l, []byte(`"scale":`)) + len(`"scale":`)
			l[i] = '9'
			return ls
		}, audit.Divergence{Kind: audit.KindHash, Position: 2}},
		{"a line dropped", func(ls [][]byte) [][]byte { return append(ls[:6:6], ls[7:]...) },
			audit.Divergence{Kind: audit.KindGap, Position: 7}},
		{"lines swapped", func(ls [][]byte) [][]byte { ls[8], ls[9] = ls[9], ls[8]; return ls },
			audit.Divergence{Kind: audit.KindGap, Position: 9}},
		{"a line cut short", func(ls [][]byte) [][]byte { ls[10] = ls[10][:20]; return ls },
			audit.Divergence{Kind: audit.KindHash, Position: 11}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ls := make([][]byte, len(lines))
			for i, l := range lines {
				ls[i] = bytes.Clone(l)
			}
			path := writeFile(t, append(bytes.Join(append(c.edit(ls), trailer), []byte("\n")), '\n'))
			rep, err := audit.Verify(ctx(t), &filelog.Log{Path: path}, nil, audit.Options{})
			testenv.NoError(t, err)
			checkDivergence(t, rep, c.want)
		})
	}
}

// A forger who rewrites an event and re-seals the whole chain after it
// passes the hash checks; the replay refuses what the domain never decided.
func TestVerifyCatchesAResealedForgery(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 9).run(40)
	recs := h.exportRecords(t, ledger)
	forged := -1
	for i, r := range recs {
		if r.Type == "TransferCommitted" && i > len(recs)/3 {
			forged = i
			break
		}
	}
	if forged < 0 {
		t.Fatal("no transfer to forge")
	}
	r := &recs[forged]
	at := bytes.Index(r.Payload, []byte(`"debit":"`)) + len(`"debit":"`)
	end := at + bytes.IndexByte(r.Payload[at:], '"')
	r.Payload = append(append(append([]byte(nil), r.Payload[:at]...), "nobody"...), r.Payload[end:]...)
	for i := range recs {
		if i >= forged {
			recs[i].Seal(recs[i-1].Hash)
		}
	}
	out, err := audit.AppendExport(nil, recs)
	testenv.NoError(t, err)
	rep, err := audit.Verify(ctx(t), &filelog.Log{Path: writeFile(t, out)}, nil, audit.Options{})
	testenv.NoError(t, err)
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindInvariant, Position: uint64(forged + 1)})
	if !bytes.Contains([]byte(rep.Divergence.Found), []byte("nobody")) {
		t.Errorf("the divergence does not name the account: %s", rep.Divergence)
	}
}
