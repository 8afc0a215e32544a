package statementfile

// Review tests of the statement file parser (its ledgerctl side, the
// import, is internal/ctl's reconcile_import_test.go). A test that shows a
// bug is kept, skipped with "BUG: ...", so the suite stays green; remove the
// t.Skip to see it fail.

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestReviewAmountDigitsPastTheAssetScale: an amount the first pass accepts
// (no more decimals than the asset) but that has more than DigitsMax digits
// once written at the asset's scale: ledgerd refuses it, after the chunks
// before it went in.
func TestReviewAmountDigitsPastTheAssetScale(t *testing.T) {
	t.Parallel()
	amount := strings.Repeat("9", domain.DigitsMax-1) // 37 digits, no decimals: 39 at scale 2
	_, err := Check(strings.NewReader(header+"a1,"+amount+",credit,2026-03-02,,\n"), csvOpts(), nil)
	if err == nil {
		d, perr := domain.ParseDecimal(amount)
		_, uerr := d.Units(2)
		t.Fatalf("Check accepted %s digits at scale 2; ledgerd's Units(2): %v, %v", amount, perr, uerr)
	}
	checkRefusal(t, err, 2, "amount", ErrAmount, "digits")
}

// TestReviewRepeatWithAnotherAmountText: "12.5" and "12.50" are the same
// amount to ledgerd (it compares units at the asset's scale and answers
// EXISTS); the first pass refuses the file as an id repeated with another
// amount.
func TestReviewRepeatWithAnotherAmountText(t *testing.T) {
	t.Parallel()
	text := header + "a1,12.5,credit,2026-03-02,,\n" + "a1,12.50,credit,2026-03-02,,\n"
	res, err := Check(strings.NewReader(text), csvOpts(), nil)
	if err != nil {
		t.Fatalf("Check: %v, want 2 lines, 1 repeat", err)
	}
	if res.Repeats != 1 {
		t.Errorf("Check: %+v, want 1 repeat", res)
	}
}

// TestReviewBOMBeforeAQuotedHeader: spreadsheets and many bank exports
// write a byte order mark and quote every cell. The BOM is said to be
// ignored, but it makes the first cell's quote a bare quote.
func TestReviewBOMBeforeAQuotedHeader(t *testing.T) {
	t.Parallel()
	text := "\ufeff\"external_id\",\"amount\",\"direction\",\"value_date\"\r\n" + "\"a1\",\"1.00\",\"credit\",\"2026-03-02\"\r\n"
	res, err := Check(strings.NewReader(text), csvOpts(), nil)
	if err != nil || res.Lines != 1 {
		t.Fatalf("Check: %+v, %v; want 1 line", res, err)
	}
}

// TestReviewBOMInJSONLines: a JSON Lines file with a byte order mark (as
// Windows tools write it) is refused on line 1.
func TestReviewBOMInJSONLines(t *testing.T) {
	t.Parallel()
	text := "\ufeff" + `{"external_id":"a1","amount":"1.00","direction":"credit","value_date":"2026-03-02"}` + "\n"
	res, err := Check(strings.NewReader(text), jsonOpts(), nil)
	if err != nil || res.Lines != 1 {
		t.Fatalf("Check: %+v, %v; want 1 line", res, err)
	}
}

// TestReviewJSONTrailingGarbage: a line with a stray '}' or ']' after its
// object is malformed, but json.Decoder.More reports false before a closing
// delimiter, so it is accepted.
func TestReviewJSONTrailingGarbage(t *testing.T) {
	t.Parallel()
	obj := `{"external_id":"a1","amount":"1.00","direction":"credit","value_date":"2026-03-02"}`
	for _, tail := range []string{"}", "]", "]]}"} {
		_, err := Check(strings.NewReader(obj+tail+"\n"), jsonOpts(), nil)
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("line %q: error %v, want ErrSyntax", obj+tail, err)
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
	f, st, err := Open(path)
	testenv.NoError(t, err)
	defer f.Close()
	check, err := Check(f, csvOpts(), nil)
	testenv.NoError(t, err)
	// Another amount, the same size and modification time.
	testenv.NoError(t, os.WriteFile(path, []byte(strings.Replace(checked, "10.00", "99.99", 1)), 0o644))
	testenv.NoError(t, os.Chtimes(path, st.ModTime(), st.ModTime()))
	testenv.NoError(t, Rewind(f, st)) // size and time are the same: only the digests tell
	err = ReadChunks(f, csvOpts(), func(lines []*domain.ImportStatementLine, _ []int) error {
		d := newChunkDigest()
		for _, l := range lines {
			d.add(l)
		}
		if d.sum() != check.Chunks[0] {
			return ErrChanged
		}
		return nil
	})
	if !errors.Is(err, ErrChanged) {
		t.Errorf("the second pass read 99.99 where the first checked 10.00: %v, want ErrChanged", err)
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
		{"BOM, CRLF, blank lines", "\ufeff" + strings.TrimSuffix(header, "\n") + "\r\n\r\n" + ok + "\r\n\r\n" + "a2,x,credit,2026-03-02,,\r\n", 6, ErrAmount},
		{"fault in a record spanning lines", header + "a1,1.00,credit,2026-03-02,,\"x\ny\nz\"\n" + "a2,1.00,credit,2026-13-02,\"r\nr\",\n", 5, ErrDate},
		{"long line inside a quoted field", header + "a1,1.00,credit,2026-03-02,,\"x\n" + strings.Repeat("y", LineBytesMax+1) + "\n\"\n", 3, ErrLineLong},
		{"long line after a quoted newline, record ends on it", header + "a1,1.00,credit,2026-03-02,\"x\n" + strings.Repeat("y", LineBytesMax+1) + "\",d\n", 3, ErrLineLong},
		{"BOM only", "\ufeff", 0, ErrEmpty},
		{"header only, CRLF", strings.ReplaceAll(header, "\n", "\r\n"), 0, ErrEmpty},
		{"blank lines only", "\n\r\n\n", 0, ErrEmpty},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Check(strings.NewReader(c.text), csvOpts(), nil)
			var se *Error
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
		opts      func(*Options)
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
		{"1,234.50", func(o *Options) { o.Thousands = true }, "1234.50", false, false},
		{"-1.234,50", func(o *Options) { o.Thousands, o.DecimalComma = true, true }, "1234.50", true, false},
		{"1.234", func(o *Options) { o.DecimalComma = true }, "", false, true},
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

// TestReviewJSONInvalidUTF8: a JSON line that is not UTF-8 is refused, as
// CSV refuses it, rather than decoded with its bytes replaced by U+FFFD.
func TestReviewJSONInvalidUTF8(t *testing.T) {
	t.Parallel()
	text := `{"external_id":"a1","amount":"1.00","direction":"credit","value_date":"2026-03-02","description":"caf` + "\xe9" + `"}` + "\n"
	_, err := Check(strings.NewReader(text), jsonOpts(), nil)
	if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("description with byte 0xe9: error %v, want a refusal saying not UTF-8", err)
	}
}

// TestJSONKeyGivenTwice: a JSON Lines object that gives a key twice, in any
// case (encoding/json matches keys to fields without regard to case, and
// keeps the last), is refused, naming the key, instead of importing one of
// its values.
func TestJSONKeyGivenTwice(t *testing.T) {
	t.Parallel()
	for _, line := range []string{
		`{"external_id":"a1","amount":"1.00","amount":"1000.00","direction":"credit","value_date":"2026-03-02"}`,
		`{"external_id":"a1","amount":"1.00","direction":"credit","value_date":"2026-03-02","Amount":1000}`,
		`{"external_id":"a1","amount":"1.00","direction":"credit","value_date":"2026-03-02","description":"a","deſcription":"b"}`,
	} {
		_, err := Check(strings.NewReader(line+"\n"), jsonOpts(), nil)
		var se *Error
		if !errors.As(err, &se) || !errors.Is(err, ErrSyntax) || se.Field == "" || !strings.Contains(err.Error(), "twice") {
			t.Errorf("%s: %v, want ErrSyntax naming the field given twice", line, err)
		}
	}
	ok := `{"external_id":"a1","amount":"1.00","direction":"credit","value_date":"2026-03-02","reference":"amount","description":"amount"}`
	if res, err := Check(strings.NewReader(ok+"\n"), jsonOpts(), nil); err != nil || res.Lines != 1 {
		t.Errorf("a key's name as a value: %+v, %v; want 1 line", res, err)
	}
}
