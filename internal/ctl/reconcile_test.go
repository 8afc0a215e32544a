package ctl_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// sample is the statement docs/reconciliation.md walks through.
const sample = "../../docs/samples/acme-bank-2026-03.csv"

// sampleFlags read the sample: Acme Bank's own column names, one signed
// amount column, US dates.
var sampleFlags = []string{"--account", "bank:acme", "--format", "csv",
	"--map", "external_id=Transaction ID", "--map", "value_date=Value Date", "--map", "amount=Amount",
	"--map", "reference=Reference", "--map", "description=Description", "--date-layout", "01/02/2006"}

// acmeTransfers are the walkthrough's transfers, as the ledger booked them
// before the statement came: id, debited, credited, amount, effective date,
// reference.
var acmeTransfers = [][6]string{
	{"cap-001", "bank:acme", "equity:owner", "25000.00", "2026-03-02", "CAP-001"},
	{"inv-1001", "bank:acme", "customer:globex", "4200.00", "2026-03-03", "INV-1001"},
	{"aws-0304", "expense:cloud", "bank:acme", "312.45", "2026-03-04", ""},
	{"po-552", "supplier:initech", "bank:acme", "1850.00", "2026-03-05", "PO-552"},
	{"inv-1002", "bank:acme", "customer:hooli", "7500.00", "2026-03-06", "INV-1002"},
	{"inv-1003", "bank:acme", "customer:globex", "2500.00", "2026-03-09", "INV-1003"},
	{"pay-0310", "expense:payroll", "bank:acme", "6200.00", "2026-03-10", "PAY-0310"},
	{"inv-1004", "bank:acme", "customer:umbrella", "3150.00", "2026-03-10", "UMB-PO-77"},
	{"gh-0313", "expense:cloud", "bank:acme", "84.00", "2026-03-13", ""},
	{"po-559", "supplier:initech", "bank:acme", "2400.00", "2026-03-16", "PO-559"},
	{"inv-1005", "bank:acme", "customer:globex", "5600.00", "2026-03-17", "INV-1005"},
	{"dep-4417", "bank:acme", "customer:umbrella", "980.00", "2026-03-18", "DEP-4417"},
	{"inv-1007", "bank:acme", "customer:globex", "420.00", "2026-03-20", "INV-1007"},
	{"aws-0320", "expense:cloud", "bank:acme", "298.10", "2026-03-21", ""},
	{"inv-1006", "bank:acme", "customer:hooli", "2750.00", "2026-03-23", "INV-1006"},
	{"slack-0324", "expense:cloud", "bank:acme", "62.50", "2026-03-24", ""},
	{"pay-0325", "expense:payroll", "bank:acme", "6200.00", "2026-03-25", "PAY-0325"},
	{"inv-1008", "bank:acme", "customer:hooli", "1200.00", "2026-03-30", "INV-1008"},
	{"chq-004418", "supplier:initech", "bank:acme", "740.00", "2026-03-30", "CHQ-004418"},
}

// acmePastMax lets the walkthrough book transfers effective in March 2026,
// as ledgerd run with -effective-past-max does in docs/reconciliation.md.
const acmePastMax = 50 * 365 * 24 * time.Hour

// startAcme is start with a ledgerd that accepts effective times up to
// acmePastMax back.
func startAcme(t *testing.T) (addr, key string) {
	t.Helper()
	key, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	m := &daemon.Main{
		Config: daemon.Config{PostgresURL: testenv.MigratedPostgresURL(t), NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: key,
			EffectivePastMax: acmePastMax, EffectiveFutureMax: domain.DefaultPolicy.EffectiveFutureMax},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	testenv.NoError(t, m.Run(context.Background()))
	t.Cleanup(m.Close)
	return m.GRPCAddr(), key
}

// acme opens the walkthrough's accounts and books its transfers.
func acme(t *testing.T) user {
	t.Helper()
	u := user{ledger: testenv.Name(t)}
	u.addr, u.key = startAcme(t)
	u.must(t, "asset", "define", "USD", "2")
	u.must(t, "account", "open", "--asset", "USD", "--normal", "debit", "bank:acme", "expense:cloud", "expense:payroll", "expense:bank-fees")
	u.must(t, "account", "open", "--asset", "USD", "equity:owner", "customer:globex", "customer:hooli", "customer:umbrella", "supplier:initech")
	for _, tr := range acmeTransfers {
		book(t, u, tr)
	}
	return u
}

func book(t *testing.T, u user, tr [6]string) item {
	t.Helper()
	more := []string{"--effective-at", tr[4] + "T12:00:00Z"}
	if tr[5] != "" {
		more = append(more, "--reference", tr[5])
	}
	return u.send(t, tr[0], tr[1], tr[2], tr[3], more...)
}

// importSummary is reconcile import -o json.
type importSummary struct {
	Lines, Repeats, Chunks     int
	ChunksImported             int `json:"chunks_imported"`
	Created, Existing, Refused int
	NotImported                int `json:"not_imported"`
	Refusals                   []refusal
	Position                   uint64
	Stopped                    string
}

type refusal struct {
	Line       int    `json:"line"`
	ExternalID string `json:"external_id"`
	Code       string `json:"code"`
	Detail     string `json:"detail"`
}

// importing runs reconcile import -o json and decodes its summary, whatever
// the exit code.
func (u user) importing(t *testing.T, args ...string) (importSummary, result) {
	t.Helper()
	r := u.run(t, append([]string{"reconcile", "import", "-o", "json"}, args...)...)
	var s importSummary
	if r.stdout != "" {
		if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
			t.Fatalf("reconcile import -o json: %v\n%s", err, r)
		}
	}
	return s, r
}

// reconJSON is reconcile report -o json (protojson: 64-bit counts are strings).
type reconJSON struct {
	Reconciliation struct {
		ExternalBalance            string            `json:"external_balance"`
		LedgerBalance              string            `json:"ledger_balance"`
		Difference                 string            `json:"difference"`
		UnmatchedLinesToEndSum     string            `json:"unmatched_lines_to_end_sum"`
		UnmatchedMovementsToEndSum string            `json:"unmatched_movements_to_end_sum"`
		MatchedDifference          string            `json:"matched_difference"`
		Matches                    string            `json:"matches"`
		MatchesByRule              map[string]string `json:"matches_by_rule"`
	} `json:"reconciliation"`
	UnmatchedLines     reconList `json:"unmatched_lines"`
	UnmatchedMovements reconList `json:"unmatched_movements"`
	Matches            struct {
		Matches []struct {
			Rule       string `json:"rule"`
			Difference string `json:"difference"`
		} `json:"matches"`
	} `json:"matches"`
}

type reconList struct {
	Items []struct {
		Source     string `json:"source"`
		ExternalID string `json:"external_id"`
		TransferID string `json:"transfer_id"`
		Amount     string `json:"amount"`
		ManualOnly bool   `json:"manual_only"`
	} `json:"items"`
}

// names are the items of a listing as ledgerctl names them.
func (l reconList) names() []string {
	var out []string
	for _, it := range l.Items {
		name := it.TransferID
		if it.ExternalID != "" {
			name = it.Source + "/" + it.ExternalID
		}
		if it.ManualOnly {
			name += " (manual only)"
		}
		out = append(out, name)
	}
	return out
}

// report runs reconcile report -o json once the projection has reached pos.
func (u user) report(t *testing.T, pos uint64, more ...string) reconJSON {
	t.Helper()
	r := u.must(t, append([]string{"reconcile", "report", "--account", "bank:acme", "--min-position", at(pos), "-o", "json"}, more...)...)
	var rep reconJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("reconcile report -o json: %v\n%s", err, r)
	}
	return rep
}

// checkUnmatched compares the unmatched items of a report with want.
func checkUnmatched(t *testing.T, what string, rep reconJSON, lines, movements []string) {
	t.Helper()
	if diff := cmp.Diff(lines, rep.UnmatchedLines.names()); diff != "" {
		t.Errorf("%s: unmatched lines (-want +got):\n%s", what, diff)
	}
	if diff := cmp.Diff(movements, rep.UnmatchedMovements.names()); diff != "" {
		t.Errorf("%s: unmatched movements (-want +got):\n%s", what, diff)
	}
}

// TestReconcileWalkthrough follows docs/reconciliation.md: import the
// sample, import it again, a malformed file imports nothing, the report,
// a manual match, a missing fee booked, an unmatch and a re-match, and the
// journal that ties to the trial balance.
func TestReconcileWalkthrough(t *testing.T) {
	t.Parallel()
	u := acme(t)
	if got := one(t, u.must(t, "reconcile", "rules", "--account", "bank:acme", "reference", "amount_date:window=2",
		"split:window=2,group=4").stdout); got.code != "CREATED" {
		t.Errorf("reconcile rules: %q, want CREATED", got.line)
	}

	first, r := u.importing(t, append([]string{"--source", "acme-bank", sample}, sampleFlags...)...)
	if r.code != 0 || first.Lines != 20 || first.Created != 20 || first.Existing != 0 || first.ChunksImported != 1 || first.Position == 0 {
		t.Fatalf("reconcile import of the sample: %+v\n%s\nwant 20 lines created in 1 chunk", first, r)
	}
	again, r := u.importing(t, append([]string{"--source", "acme-bank", sample}, sampleFlags...)...)
	if r.code != 0 || again.Created != 0 || again.Existing != 20 {
		t.Errorf("reconcile import of the sample again: %+v\n%s\nwant all 20 EXISTS", again, r)
	}

	rep := u.report(t, first.Position)
	want := reconJSON{}.Reconciliation
	want.ExternalBalance, want.LedgerBalance, want.Difference = "35867.95", "35152.95", "715.00"
	want.UnmatchedLinesToEndSum, want.UnmatchedMovementsToEndSum, want.MatchedDifference = "395.00", "-320.00", "0.00"
	want.Matches = "17"
	want.MatchesByRule = map[string]string{"REFERENCE": "11", "AMOUNT_DATE": "5", "SPLIT": "1"}
	got := rep.Reconciliation
	upper := map[string]string{}
	for k, v := range got.MatchesByRule {
		upper[strings.ToUpper(k)] = v
	}
	got.MatchesByRule = upper
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reconciliation of the sample (-want +got):\n%s", diff)
	}
	checkUnmatched(t, "after the import", rep, []string{"acme-bank/ACM2603270018", "acme-bank/ACM2603310020"},
		[]string{"inv-1007", "chq-004418"})

	// The table prints the unmatched items as match and unmatch name them.
	printed := u.must(t, "reconcile", "report", "--account", "bank:acme", "--matches").stdout
	for _, s := range []string{"difference           715.00 = unmatched lines 395.00 - unmatched movements -320.00 + matched difference 0.00",
		"acme-bank/ACM2603270018  2026-03-27  420.00", "chq-004418#0", "SPLIT", "acme-bank/ACM2603090007"} {
		if !strings.Contains(printed, s) {
			t.Errorf("reconcile report: no %q in\n%s", s, printed)
		}
	}

	// A malformed copy, under another source: refused at its line, nothing
	// of it imported.
	text, err := os.ReadFile(sample)
	testenv.NoError(t, err)
	bad := filepath.Join(t.TempDir(), "bad.csv")
	testenv.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(text), `"5600.00"`, `"5,600.00"`, 1)), 0o644))
	r = u.run(t, append([]string{"reconcile", "import", "--source", "acme-bank-2", bad}, sampleFlags...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "line 13: amount:") || !strings.Contains(r.stderr, "--thousands") ||
		!strings.Contains(r.stderr, "nothing was imported") || r.stdout != "" {
		t.Errorf("reconcile import of a malformed file: %s\nwant exit 1 naming line 13's amount, nothing imported", r)
	}
	if rep := u.report(t, first.Position); rep.Reconciliation.ExternalBalance != "35867.95" || len(rep.UnmatchedLines.Items) != 2 {
		t.Errorf("after a malformed import: external balance %s, unmatched lines %v; want 35867.95 and the 2 before",
			rep.Reconciliation.ExternalBalance, rep.UnmatchedLines.names())
	}

	// Globex paid INV-1007 under their own reference, a week late: by hand.
	matchArgs := []string{"reconcile", "match", "--account", "bank:acme", "--id", "m-glx-88", "--line", "acme-bank/ACM2603270018",
		"--movement", "inv-1007#0", "--reason", "Globex paid INV-1007 under their remittance number GLX-REMIT-88"}
	m := u.created(t, matchArgs...)
	if again := one(t, u.must(t, matchArgs...).stdout); again.code != "EXISTS" || again.position != m.position {
		t.Errorf("reconcile match again: %q, want EXISTS at %d", again.line, m.position)
	}
	// The bank's fee, booked: matched by its reference.
	fee := book(t, u, [6]string{"fee-2026-03", "expense:bank-fees", "bank:acme", "25.00", "2026-03-31", "FEE-2026-03"})
	rep = u.report(t, fee.position)
	checkUnmatched(t, "after the manual match and the fee", rep, nil, []string{"chq-004418"})
	if d := rep.Reconciliation.Difference; d != "740.00" {
		t.Errorf("difference %s, want 740.00: the cheque the bank has not cashed", d)
	}

	// Unmatch an automatic match: both sides are then matched by hand only.
	un := u.created(t, "reconcile", "unmatch", "--account", "bank:acme", "--movement", "inv-1004", "--reason", "checking the remittance advice")
	rep = u.report(t, un.position)
	checkUnmatched(t, "after the unmatch", rep, []string{"acme-bank/ACM2603120009 (manual only)"},
		[]string{"inv-1004 (manual only)", "chq-004418"})
	rem := u.created(t, "reconcile", "match", "--account", "bank:acme", "--id", "m-umb-1004", "--line", "acme-bank/ACM2603120009",
		"--movement", "inv-1004", "--reason", "remittance advice checked")
	checkUnmatched(t, "after the re-match", u.report(t, rem.position), nil, []string{"chq-004418"})
	u.refused(t, "LINE_NOT_FOUND", "reconcile", "unmatch", "--account", "bank:acme", "--line", "acme-bank/NOPE", "--reason", "x")

	// The journal's totals tie to the trial balance.
	var j struct {
		Lines  []struct{ Date, Postings, Amount string }
		Totals []struct{ Asset, Postings, Amount string }
	}
	r = u.must(t, "journal", "--asset", "USD", "--min-position", at(rem.position), "-o", "json")
	testenv.NoError(t, json.Unmarshal([]byte(r.stdout), &j))
	if len(j.Totals) != 1 || j.Totals[0].Postings != "20" || j.Totals[0].Amount != "71472.05" {
		t.Errorf("journal totals %+v, want 20 postings of 71472.05 USD", j.Totals)
	}
	if len(j.Lines) == 0 || j.Lines[0].Date != "2026-03-02" || j.Lines[0].Amount != "25000.00" {
		t.Errorf("journal's first day %+v, want 2026-03-02 with 25000.00", j.Lines)
	}
	tb := table(t, u.must(t, "trial-balance").stdout, "ASSET")
	if len(tb) != 1 || tb[0]["DEBITS"] != "71472.05" {
		t.Errorf("trial balance %v, want debits 71472.05 as the journal says", tb)
	}
	if !strings.Contains(u.must(t, "journal", "--from", "2026-03-30", "--to", "2026-03-31").stdout, "2026-03-31") {
		t.Errorf("journal --from --to: no 2026-03-31 line")
	}
}

// TestReconcileImportChunkRefused: a chunk ledgerd refuses stops the import
// there, naming the file's lines; the chunks before it stay in, and a re-run
// after the fix answers them EXISTS.
func TestReconcileImportChunkRefused(t *testing.T) {
	t.Parallel()
	u := ledger(t)
	u.must(t, "account", "open", "--asset", "USD", "--normal", "debit", "bank:acme")
	dir := t.TempDir()

	// An earlier import, as JSON Lines.
	earlier := filepath.Join(dir, "earlier.jsonl")
	testenv.NoError(t, os.WriteFile(earlier, []byte(`{"external_id":"x1","amount":"1.00","direction":"credit","value_date":"2026-03-02"}`+"\n"+
		`{"external_id":"x2","amount":"2.00","direction":"debit","value_date":"2026-03-02","reference":"R2"}`+"\n"), 0o644))
	s, r := u.importing(t, "--account", "bank:acme", "--source", "bank", earlier)
	if r.code != 0 || s.Created != 2 {
		t.Fatalf("earlier import: %+v\n%s", s, r)
	}

	// Chunk 1: x1 again and new lines; chunk 2 holds x2 with another amount.
	write := func(x2 string) string {
		var b strings.Builder
		b.WriteString("external_id,amount,direction,value_date,reference\n")
		b.WriteString("x1,1.00,credit,2026-03-02,\n")
		n := 8192 + 5
		for i := 2; i <= n; i++ {
			if i == 8192+3 {
				fmt.Fprintf(&b, "x2,%s,debit,2026-03-02,R2\n", x2)
				continue
			}
			fmt.Fprintf(&b, "n%d,0.01,credit,2026-03-03,\n", i)
		}
		path := filepath.Join(dir, "big.csv")
		testenv.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
		return path
	}
	s, r = u.importing(t, "--account", "bank:acme", "--source", "bank", write("2.50"))
	wantRefusal := []refusal{{8192 + 4, "x2", "EXISTS_WITH_DIFFERENT_FIELDS", ""}}
	if r.code != 1 || s.ChunksImported != 1 || s.Created != 8191 || s.Existing != 1 || s.Refused != 1 || s.NotImported != 5 ||
		len(s.Refusals) != 1 || s.Refusals[0].Line != wantRefusal[0].Line || s.Refusals[0].Code != wantRefusal[0].Code ||
		!strings.Contains(s.Refusals[0].Detail, "amount") {
		t.Errorf("import with a conflict in chunk 2: %+v\n%s\nwant chunk 1 in (8191 created, x1 existing), x2 refused at line %d naming amount",
			s, r, wantRefusal[0].Line)
	}
	if !strings.Contains(r.stderr, "chunk 2 of 2 (file lines 8194..8198)") || !strings.Contains(r.stderr, "1 chunk (8192 lines) went in before it") {
		t.Errorf("import with a conflict in chunk 2: stderr %q, want the chunk, its lines and what went in before", r.stderr)
	}
	tableRun := u.run(t, "reconcile", "import", "--account", "bank:acme", "--source", "bank", filepath.Join(dir, "big.csv"))
	if tableRun.code != 1 || !strings.Contains(tableRun.stdout, "EXISTS_WITH_DIFFERENT_FIELDS line 8196  x2") {
		t.Errorf("import again, as a table: %s\nwant the refused line with its file line", tableRun)
	}

	s, r = u.importing(t, "--account", "bank:acme", "--source", "bank", write("2.00"))
	if r.code != 0 || s.ChunksImported != 2 || s.Existing != 8193 || s.Created != 4 {
		t.Errorf("import after the fix: %+v\n%s\nwant chunk 1 and x2 EXISTS, 4 created", s, r)
	}
}

// TestReconcileSplitDifference: a SPLIT match whose lines add up to its
// movement has no difference.
func TestReconcileSplitDifference(t *testing.T) {
	t.Parallel()
	u := ledger(t, "customer")
	u.must(t, "account", "open", "--asset", "USD", "--normal", "debit", "bank:acme")
	paid := u.send(t, "inv-1", "bank:acme", "customer", "2500.00", "--reference", "INV-1")
	day := time.Now().UTC().Format("2006-01-02")
	path := filepath.Join(t.TempDir(), "split.csv")
	testenv.NoError(t, os.WriteFile(path, []byte("external_id,amount,value_date,reference\n"+
		"p1,1500.00,"+day+",INV-1\n"+"p2,1000.00,"+day+",INV-1\n"), 0o644))
	s, r := u.importing(t, "--account", "bank:acme", "--source", "bank", path)
	if r.code != 0 || s.Created != 2 {
		t.Fatalf("import: %+v\n%s", s, r)
	}
	rep := u.report(t, max(s.Position, paid.position), "--matches")
	if rep.Reconciliation.Matches != "1" || len(rep.Matches.Matches) != 1 || rep.Matches.Matches[0].Rule != "SPLIT" {
		t.Fatalf("report: matches %s, listed %+v; want one SPLIT", rep.Reconciliation.Matches, rep.Matches.Matches)
	}
	if d := rep.Reconciliation.MatchedDifference; d != "0.00" {
		t.Errorf("matched difference %s, want 0.00", d)
	}
	if d := rep.Matches.Matches[0].Difference; d != "0.00" {
		t.Errorf("the SPLIT match of lines 1500.00 + 1000.00 to a movement of 2500.00 lists difference %s, want 0.00", d)
	}
}

// TestReconcileUsage: mistakes in the flags are usage errors, found
// before ledgerd is called.
func TestReconcileUsage(t *testing.T) {
	t.Parallel()
	e := env{"LEDGER_ADDR": closedAddr(t)}
	for _, c := range []struct {
		name string
		args []string
		says string
	}{
		{"import without a file", []string{"reconcile", "import", "--account", "a", "--source", "s"}, "one FILE"},
		{"import without --account", []string{"reconcile", "import", "--source", "s", "x.csv"}, "--account"},
		{"import without --source", []string{"reconcile", "import", "--account", "a", "x.csv"}, "--source"},
		{"import of an unknown extension", []string{"reconcile", "import", "--account", "a", "--source", "s", "x.xls"}, "--format"},
		{"import with a bad --format", []string{"reconcile", "import", "--account", "a", "--source", "s", "--format", "xls", "x"}, "csv or json"},
		{"import with an unknown --map field", []string{"reconcile", "import", "--account", "a", "--source", "s", "--map", "date=D", "x.csv"}, "not a field"},
		{"import with a --map without =", []string{"reconcile", "import", "--account", "a", "--source", "s", "--map", "date", "x.csv"}, "FIELD=COLUMN"},
		{"import with credit alone", []string{"reconcile", "import", "--account", "a", "--source", "s", "--map", "credit=In", "x.csv"}, "together"},
		{"import with a long delimiter", []string{"reconcile", "import", "--account", "a", "--source", "s", "--delimiter", ";;", "x.csv"}, "--delimiter"},
		{"rules without a rule", []string{"reconcile", "rules", "--account", "a"}, "at least one RULE"},
		{"rules with an unknown kind", []string{"reconcile", "rules", "--account", "a", "fuzzy"}, "reference, amount_date or split"},
		{"rules with an unknown key", []string{"reconcile", "rules", "--account", "a", "split:size=3"}, "window, tolerance or group"},
		{"rules with a bad window", []string{"reconcile", "rules", "--account", "a", "amount_date:window=two"}, "not a number"},
		{"match without --reason", []string{"reconcile", "match", "--account", "a", "--id", "m", "--line", "s/x", "--movement", "t"}, "--reason"},
		{"match without a movement", []string{"reconcile", "match", "--account", "a", "--id", "m", "--line", "s/x", "--reason", "r"}, "--movement"},
		{"match with a bad line", []string{"reconcile", "match", "--account", "a", "--id", "m", "--line", "x", "--movement", "t", "--reason", "r"}, "SOURCE/EXTERNAL_ID"},
		{"match with a bad posting", []string{"reconcile", "match", "--account", "a", "--id", "m", "--line", "s/x", "--movement", "t#a", "--reason", "r"}, "posting"},
		{"unmatch with both", []string{"reconcile", "unmatch", "--account", "a", "--line", "s/x", "--movement", "t", "--reason", "r"}, "one of"},
		{"unmatch with neither", []string{"reconcile", "unmatch", "--account", "a", "--reason", "r"}, "one of"},
		{"report without --account", []string{"reconcile", "report"}, "--account"},
		{"report with a bad date", []string{"reconcile", "report", "--account", "a", "--from", "2026-3-1"}, "YYYY-MM-DD"},
		{"report with from after to", []string{"reconcile", "report", "--account", "a", "--from", "2026-03-02", "--to", "2026-03-01"}, "after"},
		{"journal with an argument", []string{"journal", "USD"}, "only flags"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := e.run(t, c.args...)
			if r.code != 2 || !strings.Contains(r.stderr, "Usage:") || !strings.Contains(r.stderr, c.says) || r.stdout != "" {
				t.Errorf("ledgerctl %q: %s\nwant exit 2, usage on stderr saying %q, nothing on stdout", c.args, r, c.says)
			}
		})
	}
	if !slices.ContainsFunc(strings.Split(e.run(t, "--help").stdout, "\n"), func(l string) bool {
		return strings.HasPrefix(l, "  ledgerctl reconcile import")
	}) {
		t.Errorf("the usage lists no reconcile import")
	}
}
