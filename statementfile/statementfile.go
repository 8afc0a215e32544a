// Package statementfile reads a bank's or a provider's statement of an
// account, as CSV with a header row or as JSON Lines, one line at a time, into
// the domain's statement lines (domain.ImportStatementLine, without the
// account and source, which the file does not say). A file is read twice:
// once to check all of it (Check), so that nothing of a malformed file is
// imported, and once to send it in chunks (ReadChunks). Neither pass holds the
// file: the first keeps a small digest per external id, the second one chunk.
// Its messages name ledgerctl's flags (--map, --date-layout): ledgerctl is
// who reads statement files.
package statementfile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"io"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ledgerd/ledger/domain"
)

// Limits of a statement file. Each is checked before anything is sent.
const (
	// FileBytesMax bounds a file; a larger one is refused from its
	// size, before it is read.
	FileBytesMax = 256 << 20
	// LinesMax bounds the statement lines of a file, and with them
	// the first pass's index of external ids (about 50 bytes a line).
	LinesMax = 1_000_000
	// LineBytesMax bounds one physical line of the file, without its
	// newline (a '\r' before it counts). A line with every field at its limit takes under 2 KiB; bank
	// exports carry columns of their own besides.
	LineBytesMax = 16 << 10
	// RecordBytesMax bounds one CSV record, whose quoted fields may span
	// physical lines: encoding/csv holds a record whole before its fields
	// can be checked. Four lines at their bound; read ahead of the record
	// (4 KiB) counts too.
	RecordBytesMax = 4 * LineBytesMax
	// ChunkLines is the most lines one ImportStatement call takes:
	// the server's bound.
	ChunkLines = 8192
)

// Why a statement file is refused; a *Error wraps one of them.
var (
	ErrAmount    = errors.New("bad amount")
	ErrDate      = errors.New("bad date")
	ErrDirection = errors.New("bad direction")
	ErrColumn    = errors.New("missing column")
	ErrField     = errors.New("bad field")
	ErrFieldLong = errors.New("field over its limit")
	ErrDuplicate = errors.New("external id repeated with other fields")
	ErrSyntax    = errors.New("malformed line")
	ErrLineLong  = errors.New("line too long")
	ErrTooMany   = errors.New("too many lines")
	ErrTooLarge  = errors.New("file too large")
	ErrEmpty     = errors.New("no statement lines")
)

// ErrChanged means a statement file changed between the check and the
// sending: nothing more of it is sent.
var ErrChanged = errors.New("the file changed since it was checked")

// Error is a refused statement file: where and why.
type Error struct {
	// Line is the file's line, from 1; 0 is the file as a whole.
	Line int
	// Field is the statement field at fault ("amount"), if one is.
	Field string
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Statement file formats.
const (
	CSV  = "csv"
	JSON = "json"
)

// Statement fields, as the proto names them, and the two columns of banks
// that split amounts into money in and money out.
const (
	FieldExternalID  = "external_id"
	FieldAmount      = "amount"
	FieldDirection   = "direction"
	FieldValueDate   = "value_date"
	FieldReference   = "reference"
	FieldDescription = "description"
	FieldCredit      = "credit"
	FieldDebit       = "debit"
)

// Fields are the fields --map may name.
var Fields = []string{FieldExternalID, FieldAmount, FieldDirection, FieldValueDate, FieldReference,
	FieldDescription, FieldCredit, FieldDebit}

// Options say how to read a file.
type Options struct {
	// Format is CSV or JSON.
	Format string
	// Columns maps a statement field to the CSV header's name for it; a
	// field not in it is read from the column of its own name.
	Columns map[string]string
	// Delimiter separates CSV fields; 0 is a comma.
	Delimiter rune
	// DateLayout is the dates' layout (Go's reference time); "" is
	// YYYY-MM-DD.
	DateLayout string
	// DecimalComma reads "12,50" as 12.50, and '.' as the thousands separator.
	DecimalComma bool
	// Thousands accepts thousands separators ("1,234.56"); without it they
	// are refused, because a European "1,234" (1.234) would otherwise be
	// read as 1234.
	Thousands bool
	// Scale is the account asset's: an amount with more decimals is
	// refused. Below 0: not known, ledgerd checks.
	Scale int
}

// ValidateColumns checks the --map mapping on its own.
//
// Errors: a field that is not a statement field; credit without debit or
// beside amount or direction.
func (o Options) ValidateColumns() error {
	for f, col := range o.Columns {
		if !isField(f) {
			return fmt.Errorf("--map %s: not a field (%s)", f, strings.Join(Fields, ", "))
		}
		if col == "" {
			return fmt.Errorf("--map %s: empty column name", f)
		}
	}
	_, credit := o.Columns[FieldCredit]
	_, debit := o.Columns[FieldDebit]
	_, amount := o.Columns[FieldAmount]
	_, direction := o.Columns[FieldDirection]
	switch {
	case credit != debit:
		return errors.New("--map credit and --map debit go together")
	case credit && (amount || direction):
		return errors.New("--map credit and debit replace amount and direction: map one or the other")
	case o.Format == JSON && len(o.Columns) > 0:
		return errors.New("--map is for CSV: JSON Lines use the proto's field names")
	}
	return nil
}

func isField(f string) bool {
	for _, s := range Fields {
		if s == f {
			return true
		}
	}
	return false
}

// Open opens a statement file, refusing one over
// FileBytesMax before reading it.
//
// Errors: the file's own; ErrTooLarge in a *Error.
func Open(path string) (*os.File, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close() // read only: nothing to flush
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%s is not a regular file: an import reads it twice (check, then send)", path)
	}
	if st.Size() > FileBytesMax {
		_ = f.Close()
		return nil, nil, &Error{Err: fmt.Errorf("%d bytes, at most %d: %w", st.Size(),
			FileBytesMax, ErrTooLarge)}
	}
	return f, st, nil
}

// Rewind checks that the file is as it was when first opened (its size and
// modification time: the chunks' digests catch what these miss), and
// rewinds it for the second pass.
//
// Errors: ErrChanged; the file's own.
func Rewind(f *os.File, before os.FileInfo) error {
	now, err := f.Stat()
	if err != nil {
		return err
	}
	if now.Size() != before.Size() || !now.ModTime().Equal(before.ModTime()) {
		return ErrChanged
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}

// lineLimiter counts a file's physical lines and bytes as they are read, and
// fails the read at the first line over LineBytesMax, the first
// byte over FileBytesMax, or (once startRecord is called: CSV) a record
// read past RecordBytesMax: the parsers above it then never buffer more
// than a line, or a record of a few. A file that is not a regular file (a
// pipe) has no size to check up front, hence the byte count.
type lineLimiter struct {
	r io.Reader
	// line is the physical line being read, from 1; lineBytes its bytes so far.
	line, lineBytes int
	total           int64
	// recordBytes are the bytes read since startRecord; records says it
	// was called.
	recordBytes int
	records     bool
	// err is sticky: the first limit passed.
	err *Error
}

func newLineLimiter(r io.Reader) *lineLimiter { return &lineLimiter{r: r, line: 1} }

func (l *lineLimiter) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	if room := FileBytesMax - l.total; int64(n) > room {
		n = int(room)
		l.err = &Error{Line: l.line, Err: fmt.Errorf("more than %d bytes: %w", FileBytesMax, ErrTooLarge)}
	}
	for i := 0; i < n; {
		nl := bytes.IndexByte(p[i:n], '\n')
		end := n
		if nl >= 0 {
			end = i + nl
		}
		if l.lineBytes+end-i > LineBytesMax {
			l.err = &Error{Line: l.line, Err: fmt.Errorf("more than %d bytes: %w", LineBytesMax, ErrLineLong)}
			n = i + LineBytesMax - l.lineBytes
			break
		}
		if nl < 0 {
			l.lineBytes += end - i
			break
		}
		l.line, l.lineBytes = l.line+1, 0
		i = end + 1
	}
	l.total += int64(n)
	if l.records && l.err == nil {
		if l.recordBytes += n; l.recordBytes > RecordBytesMax {
			l.err = &Error{Line: l.line, Err: fmt.Errorf("a record of more than %d bytes (a quoted field left open?): %w",
				RecordBytesMax, ErrLineLong)}
		}
	}
	if l.err != nil {
		return n, l.err
	}
	return n, err
}

// startRecord starts the count of a record's bytes.
func (l *lineLimiter) startRecord() { l.records, l.recordBytes = true, 0 }

// failedAt is the limiter's error if it is at line or before: a parser that
// read ahead of the limit reports its own errors first.
func (l *lineLimiter) failedAt(line int) error {
	if l.err != nil && l.err.Line <= line {
		return l.err
	}
	return nil
}

// Reader reads a statement file one statement line at a time.
type Reader struct {
	opts  Options
	lim   *lineLimiter
	next  func() (int, *domain.ImportStatementLine, error)
	lines int
}

const utf8BOM = "\ufeff"

// NewReader reads r as opts say; for CSV it reads the header.
//
// Errors: a *Error (a header without a needed column, an empty
// file, a limit passed); the reader's own.
func NewReader(r io.Reader, opts Options) (*Reader, error) {
	if opts.DateLayout == "" {
		opts.DateLayout = domain.DateLayout
	}
	// A byte order mark, as spreadsheets and some exports write, is no part
	// of the first field or line.
	br := bufio.NewReader(r)
	if b, err := br.Peek(len(utf8BOM)); err == nil && string(b) == utf8BOM {
		_, _ = br.Discard(len(utf8BOM))
	}
	s := &Reader{opts: opts, lim: newLineLimiter(br)}
	switch opts.Format {
	case CSV:
		c, err := newCSVStatement(s.lim, opts)
		if err != nil {
			return nil, err
		}
		s.next = c.next
	case JSON:
		j := &jsonStatement{lim: s.lim, opts: opts, sc: bufio.NewScanner(s.lim)}
		// The limiter bounds a line: the buffer holds the longest and its
		// "\r\n".
		j.sc.Buffer(make([]byte, 0, 64<<10), LineBytesMax+2)
		s.next = j.next
	default:
		return nil, fmt.Errorf("format %q: want %s or %s", opts.Format, CSV, JSON)
	}
	return s, nil
}

// Next returns the next statement line and the file line it starts on.
//
// Errors: io.EOF at the end; a *Error for a malformed line or a
// limit passed; the reader's own.
func (s *Reader) Next() (int, *domain.ImportStatementLine, error) {
	at, l, err := s.next()
	if err != nil {
		return at, nil, err
	}
	s.lines++
	if s.lines > LinesMax {
		return at, nil, &Error{Line: at, Err: fmt.Errorf("more than %d statement lines: %w", LinesMax, ErrTooMany)}
	}
	return at, l, nil
}

// Bytes is how much of the file was read.
func (s *Reader) Bytes() int64 { return s.lim.total }

// csvStatement reads CSV with a header row.
type csvStatement struct {
	r    *csv.Reader
	lim  *lineLimiter
	opts Options
	// cols is the column of each field, -1 when the header has none.
	cols    map[string]int
	names   map[string]string // field to its column's name, for errors
	width   int
	signed  bool // one signed amount column, no direction
	twoCols bool // credit and debit columns
}

func newCSVStatement(lim *lineLimiter, opts Options) (*csvStatement, error) {
	r := csv.NewReader(lim)
	r.Comma = ','
	if opts.Delimiter != 0 {
		r.Comma = opts.Delimiter
	}
	r.FieldsPerRecord = -1 // checked here, with a better message
	r.ReuseRecord = true
	c := &csvStatement{r: r, lim: lim, opts: opts}
	lim.startRecord()
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, &Error{Err: fmt.Errorf("no header row: %w", ErrEmpty)}
	}
	if err != nil {
		return nil, c.readError(err)
	}
	at, _ := r.FieldPos(0)
	c.width = len(header)
	index := make(map[string]int, len(header))
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, utf8BOM) // one inside the quotes of a quoted first name
		}
		h = strings.TrimSpace(h)
		if _, dup := index[h]; dup {
			index[h] = -2 // ambiguous: refused if used
			continue
		}
		index[h] = i
	}
	_, c.twoCols = opts.Columns[FieldCredit]
	used := []string{FieldExternalID, FieldAmount, FieldDirection, FieldValueDate, FieldReference, FieldDescription}
	if c.twoCols {
		used = []string{FieldExternalID, FieldValueDate, FieldReference, FieldDescription, FieldCredit, FieldDebit}
	}
	c.cols, c.names = map[string]int{}, map[string]string{}
	for _, f := range Fields {
		c.cols[f] = -1
	}
	for _, f := range used {
		name, mapped := opts.Columns[f]
		if !mapped {
			name = f
		}
		i, ok := index[name]
		switch {
		case ok && i == -2:
			return nil, &Error{Line: at, Field: f, Err: fmt.Errorf("column %q is in the header twice: %w", name, ErrColumn)}
		case !ok && mapped:
			return nil, &Error{Line: at, Field: f, Err: fmt.Errorf("no column %q in the header: %w", name, ErrColumn)}
		case ok:
			c.cols[f] = i
		}
		c.names[f] = name
	}
	c.signed = !c.twoCols && c.cols[FieldDirection] < 0
	required := []string{FieldExternalID, FieldValueDate, FieldAmount}
	if c.twoCols {
		required = []string{FieldExternalID, FieldValueDate, FieldCredit, FieldDebit}
	}
	for _, f := range required {
		if c.cols[f] < 0 {
			return nil, &Error{Line: at, Field: f, Err: fmt.Errorf("no column %q in the header (see --map): %w",
				c.names[f], ErrColumn)}
		}
	}
	return c, nil
}

// readError is the error of a failed Read: the limiter's when the parser
// failed on the line the limiter cut, else the parser's.
func (c *csvStatement) readError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		if lerr := c.lim.failedAt(pe.StartLine); lerr != nil {
			return lerr
		}
		return &Error{Line: pe.StartLine, Err: fmt.Errorf("%w: %w", pe.Err, ErrSyntax)}
	}
	if c.lim.err != nil {
		return c.lim.err
	}
	return err
}

func (c *csvStatement) next() (int, *domain.ImportStatementLine, error) {
	c.lim.startRecord()
	rec, err := c.r.Read()
	if errors.Is(err, io.EOF) {
		return 0, nil, io.EOF
	}
	if err != nil {
		return 0, nil, c.readError(err)
	}
	at, _ := c.r.FieldPos(0)
	if end, _ := c.r.FieldPos(len(rec) - 1); c.lim.failedAt(end) != nil {
		return at, nil, c.lim.err
	}
	switch {
	case len(rec) < c.width:
		return at, nil, &Error{Line: at, Err: fmt.Errorf("%d fields, the header has %d: %w", len(rec), c.width, ErrColumn)}
	case len(rec) > c.width:
		return at, nil, &Error{Line: at, Err: fmt.Errorf("%d fields, the header has %d (an unquoted delimiter?): %w",
			len(rec), c.width, ErrSyntax)}
	}
	cell := func(f string) string {
		if i := c.cols[f]; i >= 0 {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	l := &domain.ImportStatementLine{ExternalID: cell(FieldExternalID), ValueDate: cell(FieldValueDate),
		Reference: cell(FieldReference), Description: cell(FieldDescription)}
	switch {
	case c.twoCols:
		err = c.opts.twoColumns(l, cell(FieldCredit), cell(FieldDebit))
	case c.signed:
		err = c.opts.signedAmount(l, cell(FieldAmount))
	default:
		err = c.opts.amountAndDirection(l, cell(FieldAmount), cell(FieldDirection))
	}
	if err == nil {
		err = c.opts.finish(l)
	}
	if err != nil {
		return at, nil, atLine(at, err)
	}
	return at, l, nil
}

// atLine places a field's error at a line.
func atLine(line int, err error) error {
	var se *Error
	if errors.As(err, &se) {
		se.Line = line
		return se
	}
	return &Error{Line: line, Err: err}
}

func fieldError(field string, format string, args ...any) error {
	return &Error{Field: field, Err: fmt.Errorf(format, args...)}
}

// jsonStatement reads JSON Lines, one ExternalLine (proto field names) a
// line; blank lines are skipped.
type jsonStatement struct {
	lim  *lineLimiter
	opts Options
	sc   *bufio.Scanner
	line int
}

// jsonLine is a JSON Lines statement line. The amount may be a string or a
// number, whose text is taken as written, never through a float.
type jsonLine struct {
	ExternalID  *string         `json:"external_id"`
	Amount      json.RawMessage `json:"amount"`
	Direction   *string         `json:"direction"`
	ValueDate   *string         `json:"value_date"`
	Reference   string          `json:"reference"`
	Description string          `json:"description"`
}

func (j *jsonStatement) next() (int, *domain.ImportStatementLine, error) {
	for j.sc.Scan() {
		j.line++
		if err := j.lim.failedAt(j.line); err != nil {
			return j.line, nil, err
		}
		b := bytes.TrimSpace(j.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		l, err := j.parse(b)
		if err != nil {
			return j.line, nil, atLine(j.line, err)
		}
		return j.line, l, nil
	}
	if err := j.sc.Err(); err != nil {
		if j.lim.err != nil {
			return j.line + 1, nil, j.lim.err
		}
		return j.line + 1, nil, err
	}
	return 0, nil, io.EOF
}

func (j *jsonStatement) parse(b []byte) (*domain.ImportStatementLine, error) {
	if !utf8.Valid(b) {
		// encoding/json would replace the bad bytes and import altered text.
		return nil, fmt.Errorf("not UTF-8: %w", ErrSyntax)
	}
	var v jsonLine
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrSyntax)
	}
	if dec.InputOffset() != int64(len(b)) {
		return nil, fmt.Errorf("more after the JSON object: %w", ErrSyntax)
	}
	if key, ok := duplicateKey(b); ok {
		// encoding/json keeps the last of them: which amount was meant is
		// not for the importer to guess.
		return nil, fieldError(key, "given twice: %w", ErrSyntax)
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{FieldExternalID, v.ExternalID}, {FieldDirection, v.Direction}, {FieldValueDate, v.ValueDate}} {
		if f.v == nil {
			return nil, fieldError(f.name, "missing: %w", ErrColumn)
		}
	}
	var amount string
	switch {
	case len(v.Amount) == 0 || string(v.Amount) == "null":
		return nil, fieldError(FieldAmount, "missing: %w", ErrColumn)
	case v.Amount[0] == '"':
		if err := json.Unmarshal(v.Amount, &amount); err != nil {
			return nil, fieldError(FieldAmount, "%w: %w", err, ErrAmount)
		}
	default:
		amount = string(v.Amount) // a JSON number's text
	}
	l := &domain.ImportStatementLine{ExternalID: strings.TrimSpace(*v.ExternalID), ValueDate: strings.TrimSpace(*v.ValueDate),
		Reference: strings.TrimSpace(v.Reference), Description: strings.TrimSpace(v.Description)}
	if err := j.opts.amountAndDirection(l, strings.TrimSpace(amount), strings.TrimSpace(*v.Direction)); err != nil {
		return nil, err
	}
	return l, j.opts.finish(l)
}

// duplicateKey returns a key that b, one JSON object that decoded, holds
// twice at its top level, compared as encoding/json matches keys to fields
// (without regard to case).
func duplicateKey(b []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	seen := map[string]bool{}
	depth, key := 0, true
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		switch t := tok.(type) {
		case json.Delim:
			if t == '{' || t == '[' {
				depth++
			} else {
				depth--
			}
			if depth == 1 { // back from a value at the top level
				key = true
			}
			continue
		case string:
			if depth == 1 && key {
				folded := foldKey(t)
				if seen[folded] {
					return t, true
				}
				seen[folded] = true
				key = false
				continue
			}
		}
		if depth == 1 {
			key = true // a scalar value read: a key is next
		}
	}
}

// foldKey is k with each letter the least of its Unicode simple case
// folding orbit: two keys encoding/json matches to one field (it folds as
// bytes.EqualFold does, so "ſ" is "s") have one foldKey.
func foldKey(k string) string {
	var b strings.Builder
	for _, r := range k {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// amountAndDirection reads a positive amount and a direction column.
func (o Options) amountAndDirection(l *domain.ImportStatementLine, amount, direction string) error {
	abs, neg, err := o.amount(amount)
	if err != nil {
		return fieldError(FieldAmount, "%w", err)
	}
	if neg {
		return fieldError(FieldAmount, "%q is negative beside a direction column (the direction gives the sign): %w",
			amount, ErrAmount)
	}
	d, err := parseLineDirection(direction)
	if err != nil {
		return fieldError(FieldDirection, "%w", err)
	}
	l.Amount, l.Direction = abs, d
	return nil
}

// signedAmount reads one signed amount: negative lowers the statement's
// balance (DEBIT), positive raises it (CREDIT).
func (o Options) signedAmount(l *domain.ImportStatementLine, amount string) error {
	abs, neg, err := o.amount(amount)
	if err != nil {
		return fieldError(FieldAmount, "%w", err)
	}
	l.Amount, l.Direction = abs, domain.SideCredit
	if neg {
		l.Direction = domain.SideDebit
	}
	return nil
}

// twoColumns reads a money-in and a money-out column: exactly one holds a
// positive amount; the other is empty or zero.
func (o Options) twoColumns(l *domain.ImportStatementLine, credit, debit string) error {
	in, err := o.cashColumn(FieldCredit, credit)
	if err != nil {
		return err
	}
	out, err := o.cashColumn(FieldDebit, debit)
	if err != nil {
		return err
	}
	switch {
	case in != "" && out != "":
		return fieldError(FieldAmount, "both credit %q and debit %q: %w", credit, debit, ErrAmount)
	case in != "":
		l.Amount, l.Direction = in, domain.SideCredit
	case out != "":
		l.Amount, l.Direction = out, domain.SideDebit
	default:
		return fieldError(FieldAmount, "neither credit nor debit holds an amount: %w", ErrAmount)
	}
	return nil
}

// cashColumn is a credit or debit column's positive amount, "" when it is
// empty or zero.
func (o Options) cashColumn(field, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	abs, neg, err := o.amount(s)
	if errors.Is(err, errZeroAmount) {
		return "", nil
	}
	if err != nil {
		return "", fieldError(field, "%w", err)
	}
	if neg {
		return "", fieldError(field, "%q is negative: the column gives the direction: %w", s, ErrAmount)
	}
	return abs, nil
}

// errZeroAmount is an amount of zero: no line moves nothing.
var errZeroAmount = fmt.Errorf("zero: %w", ErrAmount)

// amount normalizes a statement's amount to a plain positive decimal string
// and its sign.
//
// Errors: ErrAmount (errZeroAmount for a zero).
func (o Options) amount(s string) (string, bool, error) {
	if s == "" {
		return "", false, fmt.Errorf("empty: %w", ErrAmount)
	}
	point, sep := byte('.'), byte(',')
	if o.DecimalComma {
		point, sep = ',', '.'
	}
	body, neg := s, false
	switch body[0] {
	case '-':
		body, neg = body[1:], true
	case '+':
		body = body[1:]
	}
	intPart, frac, hasPoint := strings.Cut(body, string(point))
	if strings.IndexByte(intPart, sep) >= 0 {
		if !o.Thousands {
			hint := " (give --thousands to accept thousands separators, or --decimal-comma if ',' is the decimal point)"
			if o.DecimalComma {
				hint = " (give --thousands to accept thousands separators)"
			}
			return "", false, fmt.Errorf("%q has a thousands separator %q%s: %w", s, sep, hint, ErrAmount)
		}
		groups := strings.Split(intPart, string(sep))
		for i, g := range groups {
			if i == 0 && (len(g) == 0 || len(g) > 3) || i > 0 && len(g) != 3 {
				return "", false, fmt.Errorf("%q has a misplaced thousands separator %q: %w", s, sep, ErrAmount)
			}
		}
		intPart = strings.Join(groups, "")
	}
	plain := intPart
	if hasPoint {
		plain += "." + frac
	}
	// Bank files pad amounts with zeros ("007.50"), which ledgerd's grammar
	// refuses: they go here, the length bound still applying to the text as
	// written.
	if len(plain) > domain.DecimalLenMax {
		return "", false, fmt.Errorf("%q is over %d bytes: %w", s, domain.DecimalLenMax, ErrAmount)
	}
	for len(intPart) > 1 && intPart[0] == '0' {
		intPart, plain = intPart[1:], plain[1:]
	}
	d, err := domain.ParseDecimal(plain)
	if err != nil || d.Sign() < 0 || strings.IndexByte(frac, sep) >= 0 {
		return "", false, fmt.Errorf("%q is not a decimal amount: %w", s, ErrAmount)
	}
	if d.Sign() == 0 {
		return "", false, fmt.Errorf("%q: %w", s, errZeroAmount)
	}
	if o.Scale < 0 {
		return d.String(), neg, nil
	}
	if len(frac) > o.Scale {
		return "", false, fmt.Errorf("%q has %d decimals, the account's asset %d: %w", s, len(frac), o.Scale, ErrAmount)
	}
	// At the asset's scale: what ledgerd stores, so "12.5" and "12.50" are
	// one amount, and one too long for it is refused here, not mid-import.
	u, err := d.Units(uint8(o.Scale))
	if err != nil {
		return "", false, fmt.Errorf("%q has too many digits for the asset's %d decimals (%d in all at most): %w", s, o.Scale, domain.DigitsMax, ErrAmount)
	}
	return u.Format(uint8(o.Scale)), neg, nil
}

// parseLineDirection reads a direction as banks and the proto write it.
//
// Errors: ErrDirection.
func parseLineDirection(s string) (domain.Side, error) {
	switch strings.ToLower(s) {
	case "credit", "cr", "c", "line_direction_credit":
		return domain.SideCredit, nil
	case "debit", "dr", "d", "line_direction_debit":
		return domain.SideDebit, nil
	case "":
		return 0, fmt.Errorf("empty (want credit or debit): %w", ErrDirection)
	}
	return 0, fmt.Errorf("%q is not credit or debit (nor cr, dr, c, d): %w", truncateText(s), ErrDirection)
}

// finish checks the fields every format shares and normalizes the date.
func (o Options) finish(l *domain.ImportStatementLine) error {
	if l.ExternalID == "" {
		return fieldError(FieldExternalID, "empty: %w", ErrField)
	}
	if !domain.ValidExternalID(l.ExternalID) {
		return fieldError(FieldExternalID, "%q must match [A-Za-z0-9:_.@/-]{1,%d}: %w", truncateText(l.ExternalID),
			domain.ExternalIDLenMax, ErrField)
	}
	t, err := time.Parse(o.DateLayout, l.ValueDate)
	if err != nil {
		return fieldError(FieldValueDate, "%q does not match --date-layout %s: %w", truncateText(l.ValueDate), o.DateLayout, ErrDate)
	}
	l.ValueDate = t.Format(domain.DateLayout)
	if _, err := domain.ParseValueDate(l.ValueDate); err != nil {
		return fieldError(FieldValueDate, "%s: %w", l.ValueDate, ErrDate)
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{FieldReference, l.Reference, domain.ReferenceLenMax}, {FieldDescription, l.Description, domain.DescriptionLenMax}} {
		if len(f.v) > f.max {
			return fieldError(f.name, "%d bytes, at most %d: %w", len(f.v), f.max, ErrFieldLong)
		}
		if !utf8.ValidString(f.v) || strings.IndexByte(f.v, 0) >= 0 {
			return fieldError(f.name, "not UTF-8 text (convert the file to UTF-8): %w", ErrField)
		}
	}
	return nil
}

// truncateText shortens what an error quotes.
func truncateText(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// Summary is the first pass's result.
type Summary struct {
	// Lines counts the statement lines; Repeats those that repeat an
	// earlier line of the file exactly (ledgerd answers them EXISTS).
	Lines, Repeats int
	// Chunks are the digests of the chunks the second pass sends: it sends
	// a chunk only if it reads what was checked.
	Chunks [][sha256.Size]byte
}

// DigestChunk is the digest of a chunk of lines, as Summary.Chunks holds
// them: the second pass sends a chunk only if its digest is the first's.
func DigestChunk(lines []*domain.ImportStatementLine) [sha256.Size]byte {
	d := newChunkDigest()
	for _, l := range lines {
		d.add(l)
	}
	return d.sum()
}

// chunkDigest accumulates the lines of a chunk as sent.
type chunkDigest struct {
	h     hash.Hash
	lines int
	buf   []byte
}

func newChunkDigest() *chunkDigest { return &chunkDigest{h: sha256.New()} }

func (c *chunkDigest) add(l *domain.ImportStatementLine) {
	c.buf = c.buf[:0]
	for _, f := range [...]string{l.ExternalID, l.Amount, l.Direction.String(), l.ValueDate, l.Reference, l.Description} {
		c.buf = binary.AppendUvarint(c.buf, uint64(len(f)))
		c.buf = append(c.buf, f...)
	}
	c.h.Write(c.buf)
	c.lines++
}

// sum returns the chunk's digest and starts the next chunk.
func (c *chunkDigest) sum() [sha256.Size]byte {
	var out [sha256.Size]byte
	c.h.Sum(out[:0])
	c.h.Reset()
	c.lines = 0
	return out
}

// lineDigest stands for a line's fields, to find an external id repeated
// with other fields without holding the file: one hash per field, so the
// error can name the field.
type lineDigest struct {
	fields [5]uint64
	line   int32
}

var digestFields = [5]string{FieldAmount, FieldDirection, FieldValueDate, FieldReference, FieldDescription}

// Check reads a whole statement file, as the first pass of an
// import: every line parsed, every limit, and no external id twice with
// other fields. progress, if not nil, is told the bytes read so far.
//
// Errors: the first malformed line as a *Error; the reader's own.
func Check(r io.Reader, opts Options, progress func(bytes int64)) (Summary, error) {
	sr, err := NewReader(r, opts)
	if err != nil {
		return Summary{}, err
	}
	var (
		res  Summary
		seed = maphash.MakeSeed()
		// Keyed by a 64-bit hash of the external id: two ids colliding
		// (about 1 in 10^7 files at the line limit) would be refused as a
		// repeat, never let through.
		seen  = map[uint64]lineDigest{}
		chunk = newChunkDigest()
	)
	for {
		at, l, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Summary{}, err
		}
		if progress != nil {
			progress(sr.Bytes())
		}
		if chunk.add(l); chunk.lines == ChunkLines {
			res.Chunks = append(res.Chunks, chunk.sum())
		}
		d := lineDigest{line: int32(at)}
		for i, v := range [5]string{l.Amount, l.Direction.String(), l.ValueDate, l.Reference, l.Description} {
			d.fields[i] = maphash.String(seed, v)
		}
		key := maphash.String(seed, l.ExternalID)
		prev, ok := seen[key]
		if !ok {
			seen[key] = d
			continue
		}
		if prev.fields == d.fields {
			res.Repeats++
			continue
		}
		for i := range d.fields {
			if prev.fields[i] != d.fields[i] {
				return Summary{}, &Error{Line: at, Field: digestFields[i],
					Err: fmt.Errorf("external id %q is also on line %d with another %s: %w", l.ExternalID, prev.line,
						digestFields[i], ErrDuplicate)}
			}
		}
	}
	if chunk.lines > 0 {
		res.Chunks = append(res.Chunks, chunk.sum())
	}
	res.Lines = sr.lines
	if res.Lines == 0 {
		return Summary{}, &Error{Err: ErrEmpty}
	}
	return res, nil
}

// ReadChunks reads a statement file again, as the second pass of
// an import, and gives send chunks of up to ChunkLines lines with
// the file line each starts on. The slices are reused: one chunk is held at
// a time.
//
// Errors: the first malformed line (the file changed since it was
// checked); send's.
func ReadChunks(r io.Reader, opts Options, send func(lines []*domain.ImportStatementLine, at []int) error) error {
	sr, err := NewReader(r, opts)
	if err != nil {
		return err
	}
	lines := make([]*domain.ImportStatementLine, 0, ChunkLines)
	at := make([]int, 0, ChunkLines)
	for {
		n, l, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		lines, at = append(lines, l), append(at, n)
		if len(lines) == ChunkLines {
			if err := send(lines, at); err != nil {
				return err
			}
			clear(lines)
			lines, at = lines[:0], at[:0]
		}
	}
	if len(lines) > 0 {
		return send(lines, at)
	}
	return nil
}
