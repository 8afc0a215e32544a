package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/protoread"
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
//
// The read needs nothing of the replay but the run's seed and To: when To
// is known before the log is read (a database's head), it runs beside the
// replay (verifier.lines), and the sums wait for it. Its lines are summed per
// account id then, since the replay has not numbered the accounts yet.

// errNoBulkLines: no bulk read of the statements (no Options.Lines, a
// ledgerd that does not serve it, or its streams all taken); they are read
// account by account.
var errNoBulkLines = errors.New("no bulk read of the statement lines")

// linesProgressEvery is how often the statements phase reports how many
// lines the bulk read has summed.
const linesProgressEvery = 100 * time.Millisecond

// servedLines is one bulk read of the statement lines up to to, summed per
// account as they arrive.
type servedLines struct {
	done   chan struct{}
	cancel context.CancelFunc
	// limit bounds the lines read: none until the replay has counted its
	// own, then statementPageMax more than those (by then some account's
	// lines differ anyway). read is how many were read.
	limit, read atomic.Uint64

	// Set by the read, read once done is closed.
	index map[string]int // into sums, by account id
	sums  []servedSum
	// past is the lowest line past To (not summed).
	past *Divergence
	err  error
}

// servedSum is one account's lines as read: their count, the sum of their
// digests alone, and the lowest position of them.
type servedSum struct {
	id       string
	n, sum   uint64
	position uint64
}

// readLines starts reading every statement line of ledger up to to from
// src, each digest keyed by seed.
func readLines(ctx context.Context, src StatementLines, ledger string, to uint64, seed maphash.Seed) *servedLines {
	ctx, cancel := context.WithCancel(ctx)
	s := &servedLines{done: make(chan struct{}), cancel: cancel, index: map[string]int{}}
	s.limit.Store(math.MaxUint64)
	go func() {
		defer close(s.done)
		s.err = s.run(ctx, src, ledger, to, seed)
	}()
	return s
}

// run reads and sums the lines until the stream ends or passes the limit.
// An account is opened by an event of its own, so a read of more accounts
// than to positions holds one the log never opened: the read stops there
// (its map bounded by the log's size), and the sums show it.
func (s *servedLines) run(ctx context.Context, src StatementLines, ledger string, to uint64, seed maphash.Seed) error {
	stream, err := src.ReadStatementLines(ctx, &ledgerv1.ReadStatementLinesRequest{Ledger: ledger, ToPosition: to},
		grpc.MaxCallRecvMsgSize(callRecvMax), grpc.ForceCodecV2(protoread.Codec{}))
	var (
		page     linesPage
		digested []byte
	)
	add := func(l *wireLine) error {
		if l.position > to {
			if s.past == nil || l.position < s.past.Position {
				s.past = &Divergence{Kind: KindStatement, Position: l.position, Account: string(l.account), Field: "position",
					Expected: fmt.Sprintf("lines up to %d", to), Found: fmt.Sprintf("a line at %d", l.position)}
			}
			return nil
		}
		i, ok := s.index[string(l.account)]
		if !ok {
			if uint64(len(s.sums)) >= to {
				return errStop
			}
			i = len(s.sums)
			s.index[string(l.account)] = i
			s.sums = append(s.sums, servedSum{id: string(l.account), position: l.position})
		}
		// The line's digest alone, keyed by its seq (statementDigest).
		digested = l.appendDigested(binary.LittleEndian.AppendUint64(digested[:0], uint64(l.seq)))
		sum := &s.sums[i]
		sum.n++
		sum.sum += maphash.Bytes(seed, digested)
		sum.position = min(sum.position, l.position)
		return nil
	}
	for err == nil && s.read.Load() <= s.limit.Load() {
		if err = stream.RecvMsg(&page); err != nil {
			break
		}
		for i := range page.lines {
			if err = add(&page.lines[i]); err != nil {
				break
			}
		}
		s.read.Add(uint64(len(page.lines)))
	}
	if errors.Is(err, io.EOF) || errors.Is(err, errStop) {
		return nil
	}
	return err
}

// bound limits the read to statementPageMax lines more than want, the
// replay's: set once the replay is over.
func (s *servedLines) bound(want uint64) { s.limit.Store(want + statementPageMax) }

// wait waits for the read, reporting its progress meanwhile.
func (s *servedLines) wait(v *verifier) {
	want := v.rep.StatementLines
	tick := time.NewTicker(linesProgressEvery)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-s.done:
			waiting = false
		case <-tick.C:
		}
		v.progress("statements", min(s.read.Load(), want), want)
	}
}

// stop ends the read, if it runs still, and waits for it.
func (s *servedLines) stop() {
	s.cancel()
	<-s.done
}

// sumStatements reads every statement line at once, or takes the read that
// ran beside the replay, and returns, sorted, the accounts whose lines
// differ from the replay's, and the divergence of a line past To or of an
// account the log never opened. A read beside the replay that failed
// (projections that had not reached To in time, say) is made again.
//
// Errors: errNoBulkLines; a call that failed.
func (v *verifier) sumStatements(ctx context.Context) ([]string, *Divergence, error) {
	if v.opts.Lines == nil {
		return nil, nil, errNoBulkLines
	}
	s := v.lines
	if s != nil {
		s.wait(v)
		if s.err != nil {
			s = nil
		}
	}
	if s == nil {
		s = readLines(ctx, v.opts.Lines, v.rep.Ledger, v.rep.To, v.book.seed)
		defer s.stop()
		s.bound(v.rep.StatementLines)
		s.wait(v)
	}
	switch err := s.err; {
	case err == nil:
	case status.Code(err) == codes.Unimplemented:
		return nil, nil, errNoBulkLines
	case status.Code(err) == codes.ResourceExhausted:
		v.rep.Notes = append(v.rep.Notes, "the statement lines could not be read at once ("+status.Convert(err).Message()+
			"): the statements were read account by account")
		return nil, nil, errNoBulkLines
	default:
		return nil, nil, CallError(fmt.Sprintf("statement lines up to %d", v.rep.To), err)
	}
	best := s.past
	var suspects []string
	for _, a := range v.book.accounts {
		var got servedSum
		if i, ok := s.index[a.id]; ok {
			got = s.sums[i]
		}
		if got.n != a.lines || got.sum != a.sum {
			suspects = append(suspects, a.id)
		}
	}
	for i := range s.sums {
		got := &s.sums[i]
		if n, known := v.book.state.AccountNumber(got.id); known && n < len(v.book.accounts) {
			continue
		}
		d := &Divergence{Kind: KindStatement, Position: got.position, Account: got.id, Field: "account",
			Expected: "no statement (the log opens no such account)", Found: "a statement line",
			Detail: fmt.Sprintf("a line at position %d", got.position)}
		if lower(d, best) || (best != nil && d.Position == best.Position && d.Account < best.Account) {
			best = d
		}
	}
	slices.Sort(suspects)
	return suspects, best, nil
}
