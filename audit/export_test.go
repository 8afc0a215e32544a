package audit

import (
	"slices"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// WithTransferBuckets returns opts whose transfers check sums its digests in
// buckets of span positions and compares perRead of them a read of the log.
func WithTransferBuckets(opts Options, span uint64, perRead int) Options {
	opts.transferBucketSpan, opts.transferBucketsPerRead = span, perRead
	return opts
}

// LinesIn is how many statement lines m, a message Verify reads
// ReadStatementLines' into, holds.
func LinesIn(m any) int { return len(m.(*linesPage).lines) }

// KeepLines is a copy of m, a message Verify reads ReadStatementLines'
// into, that PutLines puts into another.
func KeepLines(m any) any {
	p := &linesPage{wire: slices.Clone(m.(*linesPage).wire)}
	if err := p.check(); err != nil {
		panic(err) // read once already
	}
	return p
}

// PutLines makes m, a message Verify reads ReadStatementLines' into, the
// kept one.
func PutLines(m, kept any) {
	p := m.(*linesPage)
	p.wire = append(p.wire[:0], kept.(*linesPage).wire...)
	if err := p.check(); err != nil {
		panic(err) // read once already
	}
}

// DigestedLines are what the digests of the lines of a
// ReadStatementLinesResponse's wire cover, as Verify reads them.
//
// Errors: for bytes that are not one.
func DigestedLines(wire []byte) ([][]byte, error) {
	p := &linesPage{wire: wire}
	if err := p.check(); err != nil {
		return nil, err
	}
	var out [][]byte
	for i := range p.lines {
		out = append(out, p.lines[i].appendDigested(nil))
	}
	return out, nil
}

// Digested is what the digest of a line covers, as Verify makes it of a
// line protobuf reads.
func Digested(l *ledgerv1.StatementLine) []byte {
	ln := lineOf(l)
	return appendLine(nil, &ln)
}

// ErrOutOfOrder: a listing out of its order.
var ErrOutOfOrder = errOutOfOrder
