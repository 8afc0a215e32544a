package statementfile

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestCSVRecordSpanningManyLinesIsBounded: the line limiter bounds each
// physical line at LineBytesMax, but a quoted CSV field may span physical
// lines: a description of 100,000 short lines (9.5 MiB here; up to the 256
// MiB file bound in a real file) is one record that encoding/csv buffers
// whole before any field limit (description: 1,024 bytes) is checked. A
// hostile or broken export (one stray quote) cost memory in proportion to
// the file, refused only at its end. A record is refused once past
// RecordBytesMax.
func TestCSVRecordSpanningManyLinesIsBounded(t *testing.T) {
	t.Parallel()
	const lines = 100_000
	body := header + "a1,1.00,credit,2026-03-02,,\"" + strings.Repeat(strings.Repeat("y", 99)+"\n", lines) + "\"\n"
	r := &countingReader{r: strings.NewReader(body)}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Check(r, csvOpts(), nil)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a description of 10 MB was accepted")
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v, want a *Error", err)
	}
	const bound = 1 << 20 // far above any valid record (a line with every field at its limit is under 2 KiB)
	if r.n > bound {
		t.Errorf("read %d bytes (allocated %d) before refusing one record (%v): a record is not bounded; want the refusal within %d bytes",
			r.n, after.TotalAlloc-before.TotalAlloc, err, bound)
	}
}

// TestCSVRecordsAreCountedEachAlone: the record bound counts one record's
// bytes: a file of many valid records, far longer together than
// RecordBytesMax, passes.
func TestCSVRecordsAreCountedEachAlone(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(header)
	for i := range 5000 {
		fmt.Fprintf(&b, "x%d,1.00,credit,2026-03-02,ref-%d,a description of some length\n", i, i)
	}
	if b.Len() < 4*RecordBytesMax {
		t.Fatalf("a file of %d bytes proves nothing", b.Len())
	}
	sum, err := Check(strings.NewReader(b.String()), csvOpts(), nil)
	if err != nil {
		t.Fatalf("%d valid records: %v", 5000, err)
	}
	if sum.Lines != 5000 {
		t.Fatalf("%d lines checked, want 5000", sum.Lines)
	}
}
