package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// The statements in bulk: ledgerd streams every line up to To at once, in
// the order of its table (Options.Lines), and each line's digest alone,
// keyed by its seq (its rank among the account's lines at its position:
// ListStatement's order), is added to its account's sum, as the replay
// adds its expected lines' (bookAccount.sum). An account whose count or
// sum differs is a suspect, compared line by line as when statements are
// read account by account; the rest are equal (a digest is keyed by this
// run's seed: a forger cannot aim at a collision). Read account by
// account, each line costs PostgreSQL a heap page of its own; read at
// once, a page serves all its lines.

// errNoBulkLines: no bulk read of the statements (no Options.Lines, a
// ledgerd that does not serve it, or its streams all taken); they are read
// account by account.
var errNoBulkLines = errors.New("no bulk read of the statement lines")

// linesProgressEvery is how many lines pass between reports of the bulk
// read's progress.
const linesProgressEvery = 100_000

// sumStatements reads every statement line at once and returns, sorted,
// the accounts whose lines differ from the replay's, and the divergence of
// a line past To or of an account the log never opened. It reads at most
// statementPageMax lines more than the replay's (v.rep.StatementLines): by
// then some account's lines differ anyway.
//
// Errors: errNoBulkLines; a call that failed.
func (v *verifier) sumStatements(ctx context.Context) ([]string, *Divergence, error) {
	if v.opts.Lines == nil {
		return nil, nil, errNoBulkLines
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type sums struct{ n, sum uint64 }
	got := make([]sums, len(v.book.accounts))
	want := v.rep.StatementLines
	var (
		best *Divergence
		read uint64
	)
	stream, err := v.opts.Lines.ReadStatementLines(ctx, &ledgerv1.ReadStatementLinesRequest{Ledger: v.rep.Ledger,
		ToPosition: v.rep.To}, grpc.MaxCallRecvMsgSize(callRecvMax))
	for err == nil && read <= want+statementPageMax {
		var resp *ledgerv1.ReadStatementLinesResponse
		if resp, err = stream.Recv(); err != nil {
			break
		}
		for _, al := range resp.GetLines() {
			if read++; read%linesProgressEvery == 0 {
				v.progress("statements", min(read, want), want)
			}
			l := lineOf(al.GetLine())
			n, known := v.book.state.AccountNumber(al.GetAccount())
			var d *Divergence
			switch {
			case l.position > v.rep.To:
				d = &Divergence{Field: "position", Expected: fmt.Sprintf("lines up to %d", v.rep.To),
					Found: fmt.Sprintf("a line at %d", l.position)}
			case !known || n >= len(got):
				d = &Divergence{Field: "account", Expected: "no statement (the log opens no such account)",
					Found: "a statement line", Detail: fmt.Sprintf("a line at position %d", l.position)}
			default:
				got[n].n++
				got[n].sum += statementDigest(v.book.seed, uint64(al.GetSeq()), &l)
				continue
			}
			d.Kind, d.Position, d.Account = KindStatement, l.position, al.GetAccount()
			if lower(d, best) {
				best = d
			}
		}
	}
	switch {
	case err == nil: // past the bound: stop reading
	case status.Code(err) == codes.Unimplemented:
		return nil, nil, errNoBulkLines
	case status.Code(err) == codes.ResourceExhausted:
		v.rep.Notes = append(v.rep.Notes, "the statement lines could not be read at once ("+status.Convert(err).Message()+
			"): the statements were read account by account")
		return nil, nil, errNoBulkLines
	case !errors.Is(err, io.EOF):
		return nil, nil, CallError(fmt.Sprintf("statement lines up to %d", v.rep.To), err)
	}
	v.progress("statements", min(read, want), want)
	var suspects []string
	for i, a := range v.book.accounts {
		if got[i].n != a.lines || got[i].sum != a.sum {
			suspects = append(suspects, a.id)
		}
	}
	slices.Sort(suspects)
	return suspects, best, nil
}
