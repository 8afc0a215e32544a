package ctl

// Review tests of the ledgerctl side of reconciliation. A test that shows a
// bug is kept, skipped with "BUG: ...", so the suite stays green; remove the
// t.Skip to see it fail.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestReviewAmountDigitsPastTheAssetScale: an amount the first pass accepts
// (no more decimals than the asset) but that has more than DigitsMax digits
// once written at the asset's scale: ledgerd refuses it, after the chunks
// before it went in.
func TestReviewAmountDigitsPastTheAssetScale(t *testing.T) {
	t.Parallel()
	amount := strings.Repeat("9", domain.DigitsMax-1) // 37 digits, no decimals: 39 at scale 2
	_, err := checkStatement(strings.NewReader(header+"a1,"+amount+",credit,2026-03-02,,\n"), csvOpts(), nil)
	if err == nil {
		d, perr := domain.ParseDecimal(amount)
		_, uerr := d.Units(2)
		t.Fatalf("checkStatement accepted %s digits at scale 2; ledgerd's Units(2): %v, %v", amount, perr, uerr)
	}
	checkRefusal(t, err, 2, "amount", errStatementAmount, "digits")
}

// TestReviewRepeatWithAnotherAmountText: "12.5" and "12.50" are the same
// amount to ledgerd (it compares units at the asset's scale and answers
// EXISTS); the first pass refuses the file as an id repeated with another
// amount.
func TestReviewRepeatWithAnotherAmountText(t *testing.T) {
	t.Parallel()
	text := header + "a1,12.5,credit,2026-03-02,,\n" + "a1,12.50,credit,2026-03-02,,\n"
	res, err := checkStatement(strings.NewReader(text), csvOpts(), nil)
	if err != nil {
		t.Fatalf("checkStatement: %v, want 2 lines, 1 repeat", err)
	}
	if res.Repeats != 1 {
		t.Errorf("checkStatement: %+v, want 1 repeat", res)
	}
}

// TestReviewBOMBeforeAQuotedHeader: spreadsheets and many bank exports
// write a byte order mark and quote every cell. The BOM is said to be
// ignored, but it makes the first cell's quote a bare quote.
func TestReviewBOMBeforeAQuotedHeader(t *testing.T) {
	t.Parallel()
	text := "\ufeff\"external_id\",\"amount\",\"direction\",\"value_date\"\r\n" + "\"a1\",\"1.00\",\"credit\",\"2026-03-02\"\r\n"
	res, err := checkStatement(strings.NewReader(text), csvOpts(), nil)
	if err != nil || res.Lines != 1 {
		t.Fatalf("checkStatement: %+v, %v; want 1 line", res, err)
	}
}

// TestReviewBOMInJSONLines: a JSON Lines file with a byte order mark (as
// Windows tools write it) is refused on line 1.
func TestReviewBOMInJSONLines(t *testing.T) {
	t.Parallel()
	text := "\ufeff" + `{"external_id":"a1","amount":"1.00","direction":"credit","value_date":"2026-03-02"}` + "\n"
	res, err := checkStatement(strings.NewReader(text), jsonOpts(), nil)
	if err != nil || res.Lines != 1 {
		t.Fatalf("checkStatement: %+v, %v; want 1 line", res, err)
	}
}

// TestReviewJSONTrailingGarbage: a line with a stray '}' or ']' after its
// object is malformed, but json.Decoder.More reports false before a closing
// delimiter, so it is accepted.
func TestReviewJSONTrailingGarbage(t *testing.T) {
	t.Parallel()
	obj := `{"external_id":"a1","amount":"1.00","direction":"credit","value_date":"2026-03-02"}`
	for _, tail := range []string{"}", "]", "]]}"} {
		_, err := checkStatement(strings.NewReader(obj+tail+"\n"), jsonOpts(), nil)
		if !errors.Is(err, errStatementSyntax) {
			t.Errorf("line %q: error %v, want errStatementSyntax", obj+tail, err)
		}
	}
}

// TestReviewFileChangedKeepingSizeAndTime: the check that the file did not
// change between the passes is its size and modification time. A change of
// the same size whose mtime is kept (cp -p, rsync -t, tar x, a coarse mtime
// clock, or a write during the second pass, after the check) goes through:
// the second pass sends lines the first never checked.
func TestReviewFileChangedKeepingSizeAndTime(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "s.csv")
	checked := header + "a1,10.00,credit,2026-03-02,,\n"
	testenv.NoError(t, os.WriteFile(path, []byte(checked), 0o644))
	f, st, err := openStatement(path)
	testenv.NoError(t, err)
	defer f.Close()
	check, err := checkStatement(f, csvOpts(), nil)
	testenv.NoError(t, err)
	// Another amount, the same size and modification time.
	testenv.NoError(t, os.WriteFile(path, []byte(strings.Replace(checked, "10.00", "99.99", 1)), 0o644))
	testenv.NoError(t, os.Chtimes(path, st.ModTime(), st.ModTime()))
	testenv.NoError(t, sameFile(f, st)) // size and time are the same: only the digests tell
	err = readStatementChunks(f, csvOpts(), func(lines []*ledgerv1.ExternalLine, _ []int) error {
		d := newChunkDigest()
		for _, l := range lines {
			d.add(l)
		}
		if d.sum() != check.Chunks[0] {
			return errFileChanged
		}
		return nil
	})
	if !errors.Is(err, errFileChanged) {
		t.Errorf("the second pass read 99.99 where the first checked 10.00: %v, want errFileChanged", err)
	}
}

// TestReviewLineNumbers: the line a fault is reported on, for records
// spanning lines, CRLF, blank lines and a BOM.
func TestReviewLineNumbers(t *testing.T) {
	t.Parallel()
	ok := "a1,1.00,credit,2026-03-02,,\r\n"
	cases := []struct {
		name string
		text string
		line int
		err  error
	}{
		{"BOM, CRLF, blank lines", "\ufeff" + strings.TrimSuffix(header, "\n") + "\r\n\r\n" + ok + "\r\n\r\n" + "a2,x,credit,2026-03-02,,\r\n", 6, errStatementAmount},
		{"fault in a record spanning lines", header + "a1,1.00,credit,2026-03-02,,\"x\ny\nz\"\n" + "a2,1.00,credit,2026-13-02,\"r\nr\",\n", 5, errStatementDate},
		{"long line inside a quoted field", header + "a1,1.00,credit,2026-03-02,,\"x\n" + strings.Repeat("y", statementLineBytesMax+1) + "\n\"\n", 3, errStatementLineLong},
		{"long line after a quoted newline, record ends on it", header + "a1,1.00,credit,2026-03-02,\"x\n" + strings.Repeat("y", statementLineBytesMax+1) + "\",d\n", 3, errStatementLineLong},
		{"BOM only", "\ufeff", 0, errStatementEmpty},
		{"header only, CRLF", strings.ReplaceAll(header, "\n", "\r\n"), 0, errStatementEmpty},
		{"blank lines only", "\n\r\n\n", 0, errStatementEmpty},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := checkStatement(strings.NewReader(c.text), csvOpts(), nil)
			var se *statementError
			if !errors.As(err, &se) || se.Line != c.line || !errors.Is(err, c.err) {
				t.Errorf("error %v, want line %d, %v", err, c.line, c.err)
			}
		})
	}
}

// TestReviewAmounts: amount forms the first pass must accept or refuse as
// ledgerd would.
func TestReviewAmounts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in        string
		opts      func(*statementOptions)
		abs       string
		neg       bool
		wantError bool
	}{
		{"+1.00", nil, "1.00", false, false},
		{"-0.00", nil, "", false, true},
		{"1e3", nil, "", false, true},
		{"007.50", nil, "7.50", false, false}, // a bank's padding, gone before ledgerd sees it
		{"0.50", nil, "0.50", false, false},
		{"1.", nil, "", false, true},
		{".5", nil, "", false, true},
		{"- 5", nil, "", false, true},
		{"--5", nil, "", false, true},
		{"+-5", nil, "", false, true},
		{"1,234.50", func(o *statementOptions) { o.Thousands = true }, "1234.50", false, false},
		{"-1.234,50", func(o *statementOptions) { o.Thousands, o.DecimalComma = true, true }, "1234.50", true, false},
		{"1.234", func(o *statementOptions) { o.DecimalComma = true }, "", false, true},
		{"00000000000000000000000000000000000000000000000000000000000000001.00", nil, "", false, true}, // over ParseDecimal's 64 bytes
	}
	for _, c := range cases {
		o := csvOpts()
		if c.opts != nil {
			c.opts(&o)
		}
		abs, neg, err := o.amount(c.in)
		if (err != nil) != c.wantError || abs != c.abs || neg != c.neg {
			t.Errorf("amount(%q): %q, %v, %v; want %q, %v, error %v", c.in, abs, neg, err, c.abs, c.neg, c.wantError)
		}
	}
}

// TestReviewDateWithAnOffset: a layout with a time and an offset keeps the
// date as written in its own offset (not converted to UTC).
func TestReviewDateWithAnOffset(t *testing.T) {
	t.Parallel()
	o := csvOpts()
	o.DateLayout = time.RFC3339
	text := header + "a1,1.00,credit,2026-03-01T23:30:00-05:00,,\n"
	got := readAll(t, text, o)
	if len(got) != 1 || got[0].Date != "2026-03-01" {
		t.Errorf("lines %+v, want value date 2026-03-01 (as written)", got)
	}
}

// reviewLedger starts ledgerd on the test database and returns a user of a
// fresh ledger with USD (scale 2) and a debit-normal bank:acme.
func reviewLedger(t *testing.T) (run func(args ...string) (int, string, string)) {
	t.Helper()
	key, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	m := &daemon.Main{
		Config: daemon.Config{PostgresURL: testenv.MigratedPostgresURL(t), NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: key},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	testenv.NoError(t, m.Run(context.Background()))
	t.Cleanup(m.Close)
	ledger := testenv.Name(t)
	run = func(args ...string) (int, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		env := map[string]string{"LEDGER_API_KEY": key}
		code := Run(ctx, append([]string{"--addr", m.GRPCAddr(), "--ledger", ledger}, args...),
			func(k string) string { return env[k] }, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	for _, args := range [][]string{{"asset", "define", "USD", "2"}, {"account", "open", "--asset", "USD", "--normal", "debit", "bank:acme"}} {
		if code, out, errOut := run(args...); code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	return run
}

// TestReviewImportNothingOfAMalformedFile: a fault the first pass misses in
// chunk 2 leaves chunk 1 imported, against "nothing of a malformed file is
// imported".
func TestReviewImportNothingOfAMalformedFile(t *testing.T) {
	t.Parallel()
	run := reviewLedger(t)
	var b strings.Builder
	b.WriteString(header)
	for i := 1; i <= statementChunkLines; i++ {
		fmt.Fprintf(&b, "n%d,0.01,credit,2026-03-03,,\n", i)
	}
	b.WriteString("big," + strings.Repeat("9", domain.DigitsMax-1) + ",credit,2026-03-03,,\n")
	path := filepath.Join(t.TempDir(), "s.csv")
	testenv.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	code, out, errOut := run("reconcile", "import", "-o", "json", "--account", "bank:acme", "--source", "bank", path)
	var sum importSummary
	_ = json.Unmarshal([]byte(out), &sum)
	if code != 1 || sum.Created != 0 {
		t.Errorf("exit %d, %d created (%d of %d chunks); want the first pass to refuse the file, nothing created\n%s%s",
			code, sum.Created, sum.ChunksImported, sum.Chunks, out, errOut)
	}
}

// TestReviewImportScaleAndRepeats: the asset's scale reaches the first pass
// (an amount with 3 decimals refused, nothing imported, exit 1), and a line
// repeated identically within one chunk is EXISTS (exit 0).
func TestReviewImportScaleAndRepeats(t *testing.T) {
	t.Parallel()
	run := reviewLedger(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	testenv.NoError(t, os.WriteFile(bad, []byte(header+"a1,1.00,credit,2026-03-02,,\na2,1.234,credit,2026-03-02,,\n"), 0o644))
	code, out, errOut := run("reconcile", "import", "--account", "bank:acme", "--source", "bank", bad)
	if code != 1 || !strings.Contains(errOut, "line 3: amount:") || !strings.Contains(errOut, "nothing was imported") {
		t.Errorf("3 decimals on USD: exit %d\n%s%s", code, out, errOut)
	}
	rep := filepath.Join(dir, "rep.csv")
	testenv.NoError(t, os.WriteFile(rep, []byte(header+"a1,1.00,credit,2026-03-02,,\na1,1.00,credit,2026-03-02,,\n"), 0o644))
	code, out, errOut = run("reconcile", "import", "-o", "json", "--account", "bank:acme", "--source", "bank", rep)
	var sum importSummary
	_ = json.Unmarshal([]byte(out), &sum)
	if code != 0 || sum.Created != 1 || sum.Existing != 1 || sum.Repeats != 1 {
		t.Errorf("a repeated line in one chunk: exit %d, %+v\n%s%s", code, sum, out, errOut)
	}
}

// TestReviewImportBadSource: a malformed --source is not checked before the
// first pass; ledgerd refuses every line of chunk 1, each printed.
func TestReviewImportBadSource(t *testing.T) {
	t.Parallel()
	run := reviewLedger(t)
	path := filepath.Join(t.TempDir(), "s.csv")
	testenv.NoError(t, os.WriteFile(path, []byte(header+"a1,1.00,credit,2026-03-02,,\na2,2.00,credit,2026-03-02,,\n"), 0o644))
	code, out, errOut := run("reconcile", "import", "--account", "bank:acme", "--source", "acme bank", path)
	t.Logf("bad --source: exit %d\n%s%s", code, out, errOut)
	if code == 0 {
		t.Errorf("bad --source: exit 0")
	}
	if code != 2 {
		t.Logf("SUSPECT: a malformed --source is not a usage error (exit %d); ledgerd refuses it once per line", code)
	}
}

// TestReviewJSONInvalidUTF8: a JSON line that is not UTF-8 is refused, as
// CSV refuses it, rather than decoded with its bytes replaced by U+FFFD.
func TestReviewJSONInvalidUTF8(t *testing.T) {
	t.Parallel()
	text := `{"external_id":"a1","amount":"1.00","direction":"credit","value_date":"2026-03-02","description":"caf` + "\xe9" + `"}` + "\n"
	_, err := checkStatement(strings.NewReader(text), jsonOpts(), nil)
	if !errors.Is(err, errStatementSyntax) || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("description with byte 0xe9: error %v, want a refusal saying not UTF-8", err)
	}
}
