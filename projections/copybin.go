package projections

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/pgbin"
)

// copyRows builds the stream of a COPY … FROM STDIN (FORMAT binary) by
// hand: each field as its type's binary form, written straight from the
// projector's values. pgx's CopyFrom looks up an encode plan for every
// value it sends (a map look-up and an interface call each), which cost
// the projectors more than building the rows did (docs/perf.md, session 12).
// The column types are the migrations'; a field that does not fit its
// column fails the COPY, so every projection test checks them.
type copyRows struct {
	b    []byte
	rows int
}

// copyRowsKeepMax bounds the buffer a pooled copyRows keeps. A full batch
// (BatchMaxDefault transfers of one posting) takes 16,384 statement lines,
// reserved at movementLineBytes each: 4.7 MB. Below that bound (4 MiB
// before session 29) every full batch allocated and zeroed its buffer
// anew, 4 % of ledgerd's CPU in batches of 1,000 (docs/perf.md).
const copyRowsKeepMax = 8 << 20

var copyRowsPool = sync.Pool{New: func() any { return &copyRows{} }}

// newCopyRows returns an empty COPY with room for rows rows of about
// rowBytes each. The room is taken at once: grown by append, a batch of
// 20,000 statement lines (5 MB) was copied a dozen times over, about a
// tenth of ledgerd's CPU at 1M accounts (docs/perf.md, "Session 15").
func newCopyRows(rows, rowBytes int) *copyRows {
	w := copyRowsPool.Get().(*copyRows)
	w.b, w.rows = append(w.b[:0], pgbin.CopyHeader...), 0
	w.b = slices.Grow(w.b, rows*rowBytes+len(pgbin.CopyTrailer))
	return w
}

// release returns w to the pool after a send that succeeded: after a
// failed one, pgx may still be reading w.b (CopyFrom returns on a server
// error without waiting for its sender), so the collector takes it.
func (w *copyRows) release(sent error) {
	if sent == nil && cap(w.b) <= copyRowsKeepMax {
		copyRowsPool.Put(w)
	}
}

// row starts a row of n fields.
func (w *copyRows) row(n int) {
	w.b = pgbin.RowStart(w.b, n)
	w.rows++
}

func (w *copyRows) null() { w.b = pgbin.Null(w.b) }

func (w *copyRows) text(s string) { w.b = pgbin.Text(w.b, s) }

// textOrNull writes "" as NULL.
func (w *copyRows) textOrNull(s string) {
	if s == "" {
		w.null()
		return
	}
	w.text(s)
}

func (w *copyRows) int2(v int16) { w.b = pgbin.Int2(w.b, v) }

func (w *copyRows) int4(v int32) { w.b = pgbin.Int4(w.b, v) }

func (w *copyRows) int8(v int64) { w.b = pgbin.Int8(w.b, v) }

func (w *copyRows) bool(v bool) { w.b = pgbin.Bool(w.b, v) }

func (w *copyRows) timestamptz(t time.Time) { w.b = pgbin.Timestamptz(w.b, t) }

// open starts a field whose bytes the caller appends to w.b; close, given
// what open returned, writes their length before them.
func (w *copyRows) open() int {
	var at int
	w.b, at = pgbin.Open(w.b)
	return at
}

func (w *copyRows) close(at int) { w.b = pgbin.Close(w.b, at) }

// numeric writes u minor units at scale as a NUMERIC.
func (w *copyRows) numeric(u domain.Units, scale uint8) {
	at := w.open()
	w.b = appendNumeric(w.b, u, scale)
	w.close(at)
}

// openJSONB starts a jsonb field, whose binary form is a version byte, 1,
// then the JSON text; close ends it.
func (w *copyRows) openJSONB() int {
	at := w.open()
	w.b = append(w.b, 1)
	return at
}

// jsonbMap writes m as a jsonb object ({} when empty).
func (w *copyRows) jsonbMap(m map[string]string) {
	at := w.openJSONB()
	if len(m) > 0 {
		w.b = domain.AppendJSONStringMap(w.b, m)
	} else {
		w.b = append(w.b, "{}"...)
	}
	w.close(at)
}

// textArray writes ss as a one-dimensional text[] ({} when empty).
func (w *copyRows) textArray(ss ...string) {
	at := w.open()
	w.b = pgbin.ArrayHeader(w.b, pgbin.OIDText, len(ss))
	for _, s := range ss {
		w.text(s)
	}
	w.close(at)
}

// send copies the rows into table's columns and checks that all went in.
//
// Errors: the database's, wrapped.
func (w *copyRows) send(ctx context.Context, conn *pgx.Conn, table string, columns []string) error {
	w.b = append(w.b, pgbin.CopyTrailer...)
	cols := make([]string, len(columns))
	for i, c := range columns {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	sql := "COPY " + pgx.Identifier{table}.Sanitize() + " (" + strings.Join(cols, ", ") + ") FROM STDIN (FORMAT binary)"
	tag, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(w.b), sql)
	if err != nil {
		return fmt.Errorf("copy %d rows into %s: %w", w.rows, table, err)
	}
	if n := tag.RowsAffected(); n != int64(w.rows) {
		return fmt.Errorf("copied %d of %d rows into %s", n, w.rows, table)
	}
	return nil
}
