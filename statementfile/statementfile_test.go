package statementfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/domain"
)

// csvOpts reads the default columns of a USD (scale 2) account.
func csvOpts() Options { return Options{Format: CSV, Scale: 2} }

func jsonOpts() Options { return Options{Format: JSON, Scale: 2} }

// parsed is a statement line as the tests compare it.
type parsed struct {
	At                                int
	ID, Amount, Dir, Date, Ref, Descr string
}

// readAll reads every line of a file that must be well formed.
func readAll(t *testing.T, text string, opts Options) []parsed {
	t.Helper()
	sr, err := NewReader(strings.NewReader(text), opts)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	var got []parsed
	for {
		at, l, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatalf("Next after %d lines: %v", len(got), err)
		}
		dir := map[domain.Side]string{domain.SideCredit: "credit", domain.SideDebit: "debit"}[l.Direction]
		got = append(got, parsed{at, l.ExternalID, l.Amount, dir, l.ValueDate, l.Reference, l.Description})
	}
}

const header = "external_id,amount,direction,value_date,reference,description\n"

// TestStatementMalformed: every malformed file is refused by the first pass
// with the line and the reason.
func TestStatementMalformed(t *testing.T) {
	t.Parallel()
	ok := "a1,10.00,credit,2026-03-02,INV-1,first\n"
	cases := []struct {
		name  string
		opts  func(*Options)
		text  string
		line  int
		field string
		err   error
		says  string
	}{
		{"bad amount", nil, header + ok + "a2,12.3.4,credit,2026-03-02,,\n", 3, "amount", ErrAmount, `"12.3.4" is not a decimal`},
		{"amount with a currency", nil, header + "a2,$12.00,credit,2026-03-02,,\n", 2, "amount", ErrAmount, "not a decimal"},
		{"empty amount", nil, header + ok + ok + "a2,,debit,2026-03-02,,\n", 4, "amount", ErrAmount, "empty"},
		{"zero amount", nil, header + "a2,0.00,debit,2026-03-02,,\n", 2, "amount", ErrAmount, "zero"},
		{"thousands separator", nil, header + `a2,"1,234.56",credit,2026-03-02,,` + "\n", 2, "amount", ErrAmount, "give --thousands"},
		{"decimal comma not declared", nil, header + `a2,"12,50",credit,2026-03-02,,` + "\n", 2, "amount", ErrAmount, "--decimal-comma"},
		{"misplaced thousands separator", func(o *Options) { o.Thousands = true }, header + `a2,"12,50",credit,2026-03-02,,` + "\n",
			2, "amount", ErrAmount, "misplaced"},
		{"more decimals than the asset", nil, header + "a2,1.234,credit,2026-03-02,,\n", 2, "amount", ErrAmount, "3 decimals"},
		{"negative beside a direction", nil, header + "a2,-5.00,debit,2026-03-02,,\n", 2, "amount", ErrAmount, "negative"},
		{"bad date", nil, header + ok + "a2,1.00,credit,2026-13-01,,\n", 3, "value_date", ErrDate, "--date-layout 2006-01-02"},
		{"date in another layout", nil, header + "a2,1.00,credit,02/03/2026,,\n", 2, "value_date", ErrDate, `"02/03/2026"`},
		{"date before 1970", nil, header + "a2,1.00,credit,1969-12-31,,\n", 2, "value_date", ErrDate, "1969-12-31"},
		{"bad direction", nil, header + "a2,1.00,sideways,2026-03-02,,\n", 2, "direction", ErrDirection, `"sideways"`},
		{"empty direction", nil, header + "a2,1.00,,2026-03-02,,\n", 2, "direction", ErrDirection, "empty"},
		{"missing column in the header", nil, "external_id,amount,direction\n" + "a1,1.00,credit\n", 1, "value_date",
			ErrColumn, `no column "value_date"`},
		{"mapped column not in the header", func(o *Options) { o.Columns = map[string]string{"value_date": "Date"} },
			header + ok, 1, "value_date", ErrColumn, `no column "Date"`},
		{"column twice in the header", nil, "external_id,amount,amount,direction,value_date\n", 1, "amount", ErrColumn, "twice"},
		{"row short of a column", nil, header + ok + ok + "a3,1.00,credit,2026-03-02,ref\n", 4, "", ErrColumn, "5 fields, the header has 6"},
		{"row with an extra column", nil, header + "a3,1.00,credit,2026-03-02,ref,fee, monthly\n", 2, "", ErrSyntax, "unquoted delimiter"},
		{"unterminated quote", nil, header + ok + "a3,1.00,credit,2026-03-02,\"ref,x\n", 3, "", ErrSyntax, "quote"},
		{"empty external id", nil, header + ",1.00,credit,2026-03-02,,\n", 2, "external_id", ErrField, "empty"},
		{"external id with a space", nil, header + "a 3,1.00,credit,2026-03-02,,\n", 2, "external_id", ErrField, "must match"},
		{"external id over its limit", nil, header + strings.Repeat("x", domain.ExternalIDLenMax+1) + ",1.00,credit,2026-03-02,,\n",
			2, "external_id", ErrField, "must match"},
		{"reference over its limit", nil, header + "a3,1.00,credit,2026-03-02," + strings.Repeat("r", domain.ReferenceLenMax+1) + ",\n",
			2, "reference", ErrFieldLong, "257 bytes, at most 256"},
		{"description over its limit", nil, header + "a3,1.00,credit,2026-03-02,," + strings.Repeat("d", domain.DescriptionLenMax+1) + "\n",
			2, "description", ErrFieldLong, "1025 bytes, at most 1024"},
		{"description not UTF-8", nil, header + "a3,1.00,credit,2026-03-02,,caf\xe9\n", 2, "description", ErrField, "UTF-8"},
		{"id twice with another amount", nil, header + ok + "b1,1.00,debit,2026-03-03,,\n" + "a1,10.01,credit,2026-03-02,INV-1,first\n",
			4, "amount", ErrDuplicate, `"a1" is also on line 2 with another amount`},
		{"id twice with another description", nil, header + ok + strings.Replace(ok, "first", "second", 1),
			3, "description", ErrDuplicate, "another description"},
		{"id twice with another direction", nil, header + ok + strings.Replace(ok, "credit", "debit", 1),
			3, "direction", ErrDuplicate, "another direction"},
		{"line numbers count a quoted newline", nil, header + "a1,1.00,credit,2026-03-02,,\"two\nlines\"\n" + "a2,x,credit,2026-03-02,,\n",
			4, "amount", ErrAmount, `"x"`},
		{"empty file", nil, "", 0, "", ErrEmpty, "no header"},
		{"header only", nil, header, 0, "", ErrEmpty, "no statement lines"},
		{"signed: no amount column", nil, "external_id,value_date,Amount\n", 1, "amount", ErrColumn, `no column "amount"`},
		{"two columns: both", twoCols, "id,In,Out,date\na1,5.00,1.00,2026-03-02\n", 2, "amount", ErrAmount, "both"},
		{"two columns: neither", twoCols, "id,In,Out,date\na1,,0.00,2026-03-02\n", 2, "amount", ErrAmount, "neither"},
		{"two columns: negative out", twoCols, "id,In,Out,date\na1,,-4.00,2026-03-02\n", 2, "debit", ErrAmount, "negative"},
		{"two columns: bad in", twoCols, "id,In,Out,date\na1,4..0,,2026-03-02\n", 2, "credit", ErrAmount, "not a decimal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			opts := csvOpts()
			if c.opts != nil {
				c.opts(&opts)
			}
			_, err := Check(strings.NewReader(c.text), opts, nil)
			checkRefusal(t, err, c.line, c.field, c.err, c.says)
		})
	}
}

func twoCols(o *Options) {
	o.Columns = map[string]string{"external_id": "id", "credit": "In", "debit": "Out", "value_date": "date"}
}

// checkRefusal fails unless err is a *Error at line and field,
// wrapping want and saying says.
func checkRefusal(t *testing.T, err error, line int, field string, want error, says string) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want a *Error", err, err)
	}
	if se.Line != line || se.Field != field || !errors.Is(err, want) || !strings.Contains(err.Error(), says) {
		t.Errorf("error %q: line %d, field %q; want line %d, field %q, %q, saying %q", err, se.Line, se.Field, line, field, want, says)
	}
	if line > 0 && !strings.HasPrefix(err.Error(), fmt.Sprintf("line %d: ", line)) {
		t.Errorf("error %q does not start with its line", err)
	}
}

// TestStatementAcceptsEdges: values at their limits and an identical
// repeated line are accepted.
func TestStatementAcceptsEdges(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("x", domain.ExternalIDLenMax)
	text := header +
		id + ",0.01,CR,2026-03-02," + strings.Repeat("r", domain.ReferenceLenMax) + "," + strings.Repeat("d", domain.DescriptionLenMax) + "\n" +
		"\n" + // blank lines are skipped
		"a/2:b@c.d_e-f,+007.50, Debit ,2026-03-31,,café\n" +
		"a/2:b@c.d_e-f,7.50,dr,2026-03-31,,café\n" // the same line again
	res, err := Check(strings.NewReader(text), csvOpts(), nil)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if res.Lines != 3 || res.Repeats != 1 || len(res.Chunks) != 1 {
		t.Errorf("Check: %+v, want 3 lines, 1 repeat, 1 chunk", res)
	}
	got := readAll(t, text, csvOpts())
	want := []parsed{
		{2, id, "0.01", "credit", "2026-03-02", strings.Repeat("r", domain.ReferenceLenMax), strings.Repeat("d", domain.DescriptionLenMax)},
		{4, "a/2:b@c.d_e-f", "7.50", "debit", "2026-03-31", "", "café"},
		{5, "a/2:b@c.d_e-f", "7.50", "debit", "2026-03-31", "", "café"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

// TestStatementColumnMapping reads a bank's own export: its column names,
// semicolons, decimal commas with thousands dots, day-first dates, a byte
// order mark, and columns the statement does not use.
func TestStatementColumnMapping(t *testing.T) {
	t.Parallel()
	text := "\ufeffBooking Date;Transaction ID;Amount;Type;Reference;Details;Balance\r\n" +
		"02.03.2026;TX-1;1.250,00;CR;INV-7;\"Payment; thanks\";10.250,00\r\n" +
		"03.03.2026;TX-2;15,00;DR;;Fee;10.235,00\r\n"
	opts := csvOpts()
	opts.Columns = map[string]string{"external_id": "Transaction ID", "value_date": "Booking Date", "amount": "Amount",
		"direction": "Type", "reference": "Reference", "description": "Details"}
	opts.Delimiter, opts.DateLayout, opts.DecimalComma, opts.Thousands = ';', "02.01.2006", true, true
	got := readAll(t, text, opts)
	want := []parsed{
		{2, "TX-1", "1250.00", "credit", "2026-03-02", "INV-7", "Payment; thanks"},
		{3, "TX-2", "15.00", "debit", "2026-03-03", "", "Fee"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}

	opts.Thousands = false
	_, err := Check(strings.NewReader(text), opts, nil)
	checkRefusal(t, err, 2, "amount", ErrAmount, `thousands separator '.'`)
}

// TestStatementSignedAmount: one signed amount column and no direction: the
// sign gives the direction.
func TestStatementSignedAmount(t *testing.T) {
	t.Parallel()
	text := "Date,Id,Memo,Amount\n" +
		"2026-03-02,T1,Deposit,1500.00\n" +
		"2026-03-03,T2,Card,-42.10\n" +
		"2026-03-04,T3,Refund,+3.00\n"
	opts := csvOpts()
	opts.Columns = map[string]string{"external_id": "Id", "value_date": "Date", "amount": "Amount", "description": "Memo"}
	got := readAll(t, text, opts)
	want := []parsed{
		{2, "T1", "1500.00", "credit", "2026-03-02", "", "Deposit"},
		{3, "T2", "42.10", "debit", "2026-03-03", "", "Card"},
		{4, "T3", "3.00", "credit", "2026-03-04", "", "Refund"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

// TestStatementTwoColumns: money in and money out in columns of their own.
func TestStatementTwoColumns(t *testing.T) {
	t.Parallel()
	text := "id,date,In,Out\n" +
		"a1,2026-03-02,100.00,\n" +
		"a2,2026-03-02,0.00,25.50\n" +
		"a3,2026-03-03,,0.01\n"
	opts := csvOpts()
	twoCols(&opts)
	got := readAll(t, text, opts)
	want := []parsed{
		{2, "a1", "100.00", "credit", "2026-03-02", "", ""},
		{3, "a2", "25.50", "debit", "2026-03-02", "", ""},
		{4, "a3", "0.01", "debit", "2026-03-03", "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

// TestStatementColumnsValidate: --map mistakes are refused before a file
// is opened.
func TestStatementColumnsValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		columns map[string]string
		format  string
		says    string
	}{
		{"unknown field", map[string]string{"date": "Date"}, CSV, "not a field"},
		{"empty column", map[string]string{"amount": ""}, CSV, "empty column"},
		{"credit alone", map[string]string{"credit": "In"}, CSV, "go together"},
		{"credit beside amount", map[string]string{"credit": "In", "debit": "Out", "amount": "Amount"}, CSV, "replace"},
		{"map for JSON", map[string]string{"amount": "Amount"}, JSON, "for CSV"},
	} {
		err := Options{Format: c.format, Columns: c.columns}.ValidateColumns()
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.says)
		}
	}
	if err := (Options{Format: CSV, Columns: map[string]string{"credit": "In", "debit": "Out"}}).ValidateColumns(); err != nil {
		t.Errorf("credit and debit: %v", err)
	}
}

// TestStatementJSONLines reads JSON Lines with the proto's field names.
func TestStatementJSONLines(t *testing.T) {
	t.Parallel()
	text := `{"external_id":"j1","amount":"12.00","direction":"credit","value_date":"2026-03-02","reference":"R1","description":"d"}` + "\n" +
		"\n" +
		`{"external_id":"j2","amount":3.5,"direction":"LINE_DIRECTION_DEBIT","value_date":"2026-03-03"}` + "\r\n" +
		`  {"value_date":"2026-03-04","direction":"Debit","amount":"0.10","external_id":"j3"}  `
	got := readAll(t, text, jsonOpts())
	want := []parsed{
		{1, "j1", "12.00", "credit", "2026-03-02", "R1", "d"},
		{3, "j2", "3.50", "debit", "2026-03-03", "", ""},
		{4, "j3", "0.10", "debit", "2026-03-04", "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}

	good := `{"external_id":"j1","amount":"1.00","direction":"credit","value_date":"2026-03-02"}` + "\n"
	for _, c := range []struct {
		name, line, field string
		err               error
		says              string
	}{
		{"syntax", `{"external_id":"j9",`, "", ErrSyntax, "unexpected EOF"},
		{"unknown field", `{"external_id":"j9","amount":"1","direction":"credit","value_date":"2026-03-02","memo":"x"}`, "", ErrSyntax, `"memo"`},
		{"two values", `{"external_id":"j9","amount":"1","direction":"credit","value_date":"2026-03-02"} {}`, "", ErrSyntax, "more after the JSON object"},
		{"no amount", `{"external_id":"j9","direction":"credit","value_date":"2026-03-02"}`, "amount", ErrColumn, "missing"},
		{"no direction", `{"external_id":"j9","amount":"1","value_date":"2026-03-02"}`, "direction", ErrColumn, "missing"},
		{"no external id", `{"amount":"1","direction":"credit","value_date":"2026-03-02"}`, "external_id", ErrColumn, "missing"},
		{"exponent", `{"external_id":"j9","amount":1e3,"direction":"credit","value_date":"2026-03-02"}`, "amount", ErrAmount, "1e3"},
		{"signed", `{"external_id":"j9","amount":"-1","direction":"credit","value_date":"2026-03-02"}`, "amount", ErrAmount, "negative"},
		{"bad direction", `{"external_id":"j9","amount":"1","direction":"in","value_date":"2026-03-02"}`, "direction", ErrDirection, `"in"`},
		{"bad date", `{"external_id":"j9","amount":"1","direction":"credit","value_date":"2026-3-2"}`, "value_date", ErrDate, "2026-3-2"},
		{"repeat with other fields", `{"external_id":"j1","amount":"1.00","direction":"debit","value_date":"2026-03-02"}`, "direction",
			ErrDuplicate, "also on line 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Check(strings.NewReader(good+"\n"+c.line+"\n"), jsonOpts(), nil)
			checkRefusal(t, err, 3, c.field, c.err, c.says)
		})
	}
	_, err := Check(strings.NewReader("\n\n"), jsonOpts(), nil)
	checkRefusal(t, err, 0, "", ErrEmpty, "no statement lines")
}

// TestStatementLineBytesMax: a line of LineBytesMax bytes is read,
// one byte more is refused with its line number, in either format.
func TestStatementLineBytesMax(t *testing.T) {
	t.Parallel()
	csvLine := func(n int) string {
		row := "a1,1.00,credit,2026-03-02,,,"
		return row + strings.Repeat("p", n-len(row)) + "\n"
	}
	csvHeader := "external_id,amount,direction,value_date,reference,description,padding\n"
	jsonLine := func(n int) string {
		row := `{"external_id":"j1","amount":"1","direction":"credit","value_date":"2026-03-02","description":""}`
		return row + strings.Repeat(" ", n-len(row)) + "\n"
	}
	for _, c := range []struct {
		name string
		opts Options
		text func(n int) string
	}{
		{"csv", csvOpts(), func(n int) string { return csvHeader + "a0,1.00,credit,2026-03-01,,,\n" + csvLine(n) }},
		{"json", jsonOpts(), func(n int) string {
			return `{"external_id":"j0","amount":"1","direction":"credit","value_date":"2026-03-01"}` + "\n" + jsonLine(n)
		}},
		// A long line's start read in a buffer of its own: the limit holds
		// across reads.
		{"csv in small reads", csvOpts(), func(n int) string {
			return csvHeader + strings.Repeat("a0,1.00,credit,2026-03-01,,,\n", 1) + csvLine(n)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var r func(s string) io.Reader = func(s string) io.Reader { return strings.NewReader(s) }
			if strings.Contains(c.name, "small") {
				r = func(s string) io.Reader { return &smallReads{r: strings.NewReader(s), n: 1000} }
			}
			if _, err := Check(r(c.text(LineBytesMax)), c.opts, nil); err != nil {
				t.Errorf("a line of %d bytes: %v", LineBytesMax, err)
			}
			line := 3
			if c.opts.Format == JSON {
				line = 2
			}
			_, err := Check(r(c.text(LineBytesMax+1)), c.opts, nil)
			checkRefusal(t, err, line, "", ErrLineLong, fmt.Sprintf("more than %d bytes", LineBytesMax))
		})
	}
}

// smallReads returns at most n bytes a read.
type smallReads struct {
	r io.Reader
	n int
}

func (s *smallReads) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.n)]) }

// generated is a statement file of n lines made as it is read, so a test
// at LinesMax holds no file.
type generated struct {
	n, next int
	buf     []byte
}

func (g *generated) Read(p []byte) (int, error) {
	for len(g.buf) < len(p) && g.next <= g.n {
		if g.next == 0 {
			g.buf = append(g.buf, "external_id,amount,direction,value_date\n"...)
		} else {
			g.buf = fmt.Appendf(g.buf, "l%d,1.00,credit,2026-03-02\n", g.next)
		}
		g.next++
	}
	if len(g.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.buf)
	g.buf = g.buf[:copy(g.buf, g.buf[n:])]
	return n, nil
}

// TestStatementLinesMax: a file of LinesMax lines is read, one
// line more is refused at that line.
func TestStatementLinesMax(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("reads a million lines")
	}
	// One pass over a million lines: refused at the first line past the
	// limit, so the LinesMax before it were read and accepted (a second pass
	// of exactly LinesMax cost as much again under -race).
	_, err := Check(&generated{n: LinesMax + 1}, csvOpts(), nil)
	checkRefusal(t, err, LinesMax+2, "", ErrTooMany, fmt.Sprintf("more than %d statement lines", LinesMax))
}

// TestStatementFileBytesMax: a file of FileBytesMax bytes is
// opened, one byte more is refused from its size; a stream (a pipe) is cut
// at the byte over it.
func TestStatementFileBytesMax(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "big.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: no disk is written.
	if err := f.Truncate(FileBytesMax); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, _, err := Open(path)
	if err != nil {
		t.Errorf("Open of %d bytes: %v", FileBytesMax, err)
	} else {
		_ = g.Close()
	}
	if err := os.Truncate(path, FileBytesMax+1); err != nil {
		t.Fatal(err)
	}
	_, _, err = Open(path)
	checkRefusal(t, err, 0, "", ErrTooLarge, fmt.Sprintf("%d bytes, at most %d", FileBytesMax+1, FileBytesMax))

	line := bytes.Repeat([]byte("x"), 1023)
	line = append(line, '\n')
	for _, size := range []int64{FileBytesMax, FileBytesMax + 1} {
		lim := newLineLimiter(io.LimitReader(&repeated{line: line}, size))
		n, err := io.Copy(io.Discard, lim)
		switch {
		case size == FileBytesMax && (err != nil || n != size):
			t.Errorf("a stream of %d bytes: %d read, %v", size, n, err)
		case size > FileBytesMax && (!errors.Is(err, ErrTooLarge) || n != FileBytesMax):
			t.Errorf("a stream of %d bytes: %d read, %v; want %d and %v", size, n, err, FileBytesMax, ErrTooLarge)
		}
	}
}

// repeated repeats a line forever.
type repeated struct {
	line []byte
	off  int
}

func (r *repeated) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.line[r.off:])
		n += c
		r.off = (r.off + c) % len(r.line)
	}
	return n, nil
}

// TestStatementChunks: the second pass sends chunks of ChunkLines
// with each line's place in the file.
func TestStatementChunks(t *testing.T) {
	t.Parallel()
	n := 2*ChunkLines + 1
	var sizes, firsts, lasts []int
	err := ReadChunks(&generated{n: n}, csvOpts(), func(lines []*domain.ImportStatementLine, at []int) error {
		if len(lines) != len(at) || cap(lines) != ChunkLines {
			t.Fatalf("chunk of %d lines, %d places, capacity %d", len(lines), len(at), cap(lines))
		}
		if want := fmt.Sprintf("l%d", at[0]-1); lines[0].ExternalID != want {
			t.Errorf("chunk's first line %s at line %d, want %s", lines[0].ExternalID, at[0], want)
		}
		sizes, firsts, lasts = append(sizes, len(lines)), append(firsts, at[0]), append(lasts, at[len(at)-1])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]int{{ChunkLines, ChunkLines, 1}, {2, ChunkLines + 2, 2*ChunkLines + 2},
		{ChunkLines + 1, 2*ChunkLines + 1, 2*ChunkLines + 2}}
	if diff := cmp.Diff(want, [][]int{sizes, firsts, lasts}); diff != "" {
		t.Errorf("chunks: sizes, first and last lines (-want +got):\n%s", diff)
	}
}

// FuzzStatementCSV: any input is refused with a *Error or read
// into lines whose every field ledgerd would accept.
func FuzzStatementCSV(f *testing.F) {
	f.Add(header + "a1,10.00,credit,2026-03-02,INV-1,first\n")
	f.Add(header + "a1,\"1,0\",cr,2026-03-02,\"x\ny\",\n")
	f.Add("external_id,value_date,amount\na,2026-01-01,-1.5\n")
	f.Fuzz(func(t *testing.T, text string) {
		for _, opts := range []Options{csvOpts(), jsonOpts()} {
			sr, err := NewReader(strings.NewReader(text), opts)
			if err != nil {
				var se *Error
				if !errors.As(err, &se) {
					t.Fatalf("NewReader: %v (%T)", err, err)
				}
				continue
			}
			for {
				_, l, err := sr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					var se *Error
					if !errors.As(err, &se) {
						t.Fatalf("Next: %v (%T)", err, err)
					}
					break
				}
				c := domain.ImportStatementLine{Account: "bank", Source: "acme", ExternalID: l.ExternalID, Amount: l.Amount,
					Direction: domain.SideCredit, ValueDate: l.ValueDate, Reference: l.Reference, Description: l.Description}
				if err := c.Validate(); err != nil {
					t.Fatalf("line %+v is read, but ledgerd refuses it: %v", l, err)
				}
			}
		}
	})
}
