package audit

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Limits of the statements check.
const (
	// statementPageMax is the lines of one ListStatement page: the most
	// ledgerd serves.
	statementPageMax = 1000
	// statementWorkers read statements at once: a ledger of a million
	// accounts is a million calls.
	statementWorkers = 8
	// statementRecheckMax bounds the accounts whose diverging statement is
	// read again line by line against a second read of the log, to find the
	// line: each holds one page in memory.
	statementRecheckMax = 64
)

// The statements check holds no statement in memory: the replay chains each
// account's expected lines into a digest (line by line, in order, keyed by a
// seed of this run), and each account's served statement, read page by page,
// is chained the same way. Only the accounts whose count or digest differ are
// then compared line by line, in a second read of the log: the first
// differing line of each, and the lowest position of them all, is reported.

// statementDigest chains one line onto the digest of those before it
// (prev), or, given its seq for prev, is its digest alone.
func statementDigest(seed maphash.Seed, prev uint64, l *line) uint64 {
	return maphash.Bytes(seed, appendLine(binary.LittleEndian.AppendUint64(make([]byte, 0, 160), prev), l))
}

// lineDigests is statementDigest(seed, prev, l) and statementDigest(seed,
// seq, l), from one encoding of l: the replay's book makes both for every
// line (Verify reads the statements at once or account by account).
func lineDigests(seed maphash.Seed, prev, seq uint64, l *line) (chained, alone uint64) {
	return digestsOf(seed, appendLine(make([]byte, 8, 160), l), prev, seq)
}

// digestsOf is lineDigests of a line whose digested bytes b holds after 8
// bytes of room.
func digestsOf(seed maphash.Seed, b []byte, prev, seq uint64) (chained, alone uint64) {
	binary.LittleEndian.PutUint64(b, prev)
	chained = maphash.Bytes(seed, b)
	binary.LittleEndian.PutUint64(b, seq)
	return chained, maphash.Bytes(seed, b)
}

// appendLine appends what a line's digest covers.
func appendLine(b []byte, l *line) []byte {
	b = binary.AppendUvarint(b, l.position)
	b = binary.AppendUvarint(b, uint64(l.postingIndex))
	b = binary.AppendVarint(b, l.effectiveAt)
	b = binary.AppendVarint(b, l.recordedAt)
	for _, s := range []string{l.side, strconv.FormatBool(l.pending), l.kind, l.transferID, l.counter, l.amount,
		l.runningBalance, l.runningAvailable, l.reference, l.metadata} {
		b = append(b, s...)
		b = append(b, 0) // no field holds a NUL
	}
	return b
}

// lineOf is a served statement line in the form the replay's take.
func lineOf(l *ledgerv1.StatementLine) line {
	side := directionSide(l.GetDirection())
	return line{position: l.GetPosition(), postingIndex: l.GetPostingIndex(), kind: l.GetKind(), transferID: l.GetTransferId(),
		counter: strings.Join(l.GetCounterAccounts(), ","), side: side, pending: l.GetPending(), amount: l.GetAmount(),
		runningBalance: l.GetRunningBalance(), runningAvailable: l.GetRunningAvailable(),
		effectiveAt: lineTime(l.GetEffectiveAt().AsTime()), recordedAt: lineTime(l.GetRecordedAt().AsTime()),
		reference: l.GetReference(), metadata: metadataText(l.GetMetadata())}
}

// directionSide is a served direction as the replay's lines name it ("debit",
// "credit"; protobuf's name or number for any other).
func directionSide(d ledgerv1.Direction) string {
	switch d {
	case ledgerv1.Direction_DIRECTION_DEBIT:
		return "debit"
	case ledgerv1.Direction_DIRECTION_CREDIT:
		return "credit"
	}
	return d.String()
}

// lineTime is a time as compared: Unix microseconds, the nanoseconds
// dropped as the projections drop them when they write it (pgbin, pgx).
func lineTime(t time.Time) int64 { return t.UnixMicro() }

// lineTimeText is a compared time as a divergence shows it.
func lineTimeText(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339Nano) }

// metadataText is metadata as compared: its JSON, keys sorted; "" for none.
func metadataText(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprint(m) // a map of strings always marshals
	}
	return string(b)
}

// diffLine compares an expected line with a served one.
func diffLine(want, got *line) *field {
	return firstDiff([]field{
		{"position", strconv.FormatUint(want.position, 10), strconv.FormatUint(got.position, 10)},
		{"posting_index", strconv.FormatUint(uint64(want.postingIndex), 10), strconv.FormatUint(uint64(got.postingIndex), 10)},
		{"direction", want.side, got.side},
		{"pending", strconv.FormatBool(want.pending), strconv.FormatBool(got.pending)},
		{"kind", want.kind, got.kind},
		{"transfer_id", want.transferID, got.transferID},
		{"counter_accounts", want.counter, got.counter},
		{"amount", want.amount, got.amount},
		{"running_balance", want.runningBalance, got.runningBalance},
		{"running_available", want.runningAvailable, got.runningAvailable},
		{"effective_at", lineTimeText(want.effectiveAt), lineTimeText(got.effectiveAt)},
		{"recorded_at", lineTimeText(want.recordedAt), lineTimeText(got.recordedAt)},
		{"reference", want.reference, got.reference},
		{"metadata", want.metadata, got.metadata},
	})
}

// statements compares every account's statement up to To, pending lines
// included, with the replay's lines.
func (v *verifier) statements(ctx context.Context) (*Divergence, error) {
	v.rep.StatementLines = v.book.lineCount()
	suspects, best, err := v.sumStatements(ctx)
	if errors.Is(err, errNoBulkLines) {
		suspects, best, err = v.digestStatements(ctx, v.book.accountIDs())
	}
	if err != nil || len(suspects) == 0 {
		return best, err
	}
	if len(suspects) > statementRecheckMax {
		v.rep.Notes = append(v.rep.Notes, fmt.Sprintf("the statements of %d accounts differ; the first %d (by id) were "+
			"compared line by line", len(suspects), statementRecheckMax))
		suspects = suspects[:statementRecheckMax]
	}
	d, err := v.recheckStatements(ctx, suspects)
	if err != nil {
		return nil, err
	}
	if d != nil && d.Kind != KindStatement {
		return d, nil // the log itself changed since it was verified: that first
	}
	if lower(d, best) {
		best = d
	}
	return best, nil
}

// digestStatements reads every account's statement and returns, sorted, the
// accounts whose lines differ from the replay's, and the divergence of an
// account the projection does not have.
func (v *verifier) digestStatements(ctx context.Context, ids []string) ([]string, *Divergence, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		suspects []string
		best     *Divergence
		firstErr error
		done     uint64
		wg       sync.WaitGroup
	)
	work := make(chan string)
	for range statementWorkers {
		wg.Go(func() {
			for id := range work {
				a := v.book.account(id)
				n, digest, err := v.digestStatement(ctx, a)
				mu.Lock()
				switch {
				case status.Code(err) == codes.NotFound:
					d := &Divergence{Kind: KindStatement, Position: a.opened, Account: id, Asset: a.asset, Field: "account",
						Expected: "a statement", Found: "no such account", Detail: err.Error()}
					if lower(d, best) || (best != nil && d.Position == best.Position && id < best.Account) {
						best = d
					}
				case err != nil:
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				case n != a.lines || digest != a.digest:
					suspects = append(suspects, id)
				}
				done++
				v.progress("statements", done, uint64(len(ids)))
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		select {
		case work <- id:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return nil, nil, firstErr
	}
	slices.Sort(suspects)
	return suspects, best, ctx.Err()
}

// digestStatement reads a's statement up to To and chains its lines. It
// stops one page past the lines expected: by then they differ anyway.
func (v *verifier) digestStatement(ctx context.Context, a *bookAccount) (n, digest uint64, err error) {
	it := v.statementPages(a.id)
	for n <= a.lines+statementPageMax {
		l, err := it.next(ctx)
		if err != nil || l == nil {
			return n, digest, err
		}
		got := lineOf(l)
		digest = statementDigest(v.book.seed, digest, &got)
		n++
	}
	return n, digest, nil
}

// statementPages reads an account's statement up to To one page at a time.
type statementPages struct {
	v       *verifier
	account string
	page    []*ledgerv1.StatementLine
	cursor  string
	started bool
}

func (v *verifier) statementPages(account string) *statementPages {
	return &statementPages{v: v, account: account}
}

// next returns the next line, nil after the last.
func (p *statementPages) next(ctx context.Context) (*ledgerv1.StatementLine, error) {
	for len(p.page) == 0 {
		if p.started && p.cursor == "" {
			return nil, nil
		}
		if err := p.fetch(ctx); err != nil {
			return nil, err
		}
	}
	l := p.page[0]
	p.page = p.page[1:]
	return l, nil
}

func (p *statementPages) fetch(ctx context.Context) error {
	at := p.v.rep.To
	resp, err := unary(ctx, fmt.Sprintf("statement of %s up to %d", p.account, at), p.v.proj.ListStatement,
		&ledgerv1.ListStatementRequest{Ledger: p.v.rep.Ledger, Account: p.account, ToPosition: at, MinPosition: at,
			IncludePending: true, Limit: statementPageMax, Cursor: p.cursor})
	if err != nil {
		return err
	}
	p.page, p.cursor, p.started = resp.GetLines(), resp.GetNextCursor(), true
	if len(p.page) == 0 {
		p.cursor = "" // an empty page ends the statement, whatever its cursor says
	}
	return nil
}

// recheckStatements reads the log again, and each suspect's statement beside
// it, and returns the divergence of the lowest position among them.
func (v *verifier) recheckStatements(ctx context.Context, suspects []string) (*Divergence, error) {
	pages := make(map[string]*statementPages, len(suspects))
	found := make(map[string]*Divergence, len(suspects))
	for _, id := range suspects {
		pages[id] = v.statementPages(id)
	}
	b := newBook(true)
	b.lines = func(a *bookAccount, want *line) error {
		p, ok := pages[a.id]
		if !ok || found[a.id] != nil {
			return nil
		}
		l, err := p.next(ctx)
		if err != nil {
			return err
		}
		d := &Divergence{Kind: KindStatement, Position: want.position, Account: a.id, Asset: a.asset}
		if l == nil {
			d.Field, d.Expected, d.Found = "count", describeLine(want), "no more lines"
			d.Detail = fmt.Sprintf("%d lines served, %d expected", a.lines-1, v.book.account(a.id).lines)
			found[a.id] = d
			return nil
		}
		got := lineOf(l)
		if f := diffLine(want, &got); f != nil {
			d.Position = min(want.position, got.position)
			d.Field, d.Expected, d.Found = f.name, f.expected, f.found
			d.Detail = fmt.Sprintf("line %d: expected %s, found %s", a.lines, describeLine(want), describeLine(&got))
			found[a.id] = d
		}
		return nil
	}
	progress := func(done, total uint64) { v.progress("statement lines", done, total) }
	changed, err := v.reread(ctx, v.rep.To, progress, func(r *eventstore.Record, e domain.Event) (*Divergence, error) {
		if d := b.evolve(r, e); d != nil {
			return d, nil
		}
		return nil, b.applied(r, e)
	})
	if changed != nil || err != nil {
		return changed, err
	}
	var best *Divergence
	for _, id := range suspects {
		d := found[id]
		if d == nil {
			d, err = v.extraLine(ctx, b.account(id), pages[id])
			if err != nil {
				return nil, err
			}
		}
		if lower(d, best) {
			best = d
		}
	}
	return best, nil
}

// extraLine is the divergence of a statement that has more lines than the
// replay, or (a statement changed between the two reads) of one that now
// agrees.
func (v *verifier) extraLine(ctx context.Context, a *bookAccount, p *statementPages) (*Divergence, error) {
	l, err := p.next(ctx)
	if err != nil {
		return nil, err
	}
	if l == nil {
		return &Divergence{Kind: KindStatement, Position: max(a.opened, a.moved), Account: a.id, Asset: a.asset,
			Field: "lines", Expected: "the lines of the first read", Found: "other lines",
			Detail: "the statement changed while it was verified: verify again"}, nil
	}
	got := lineOf(l)
	return &Divergence{Kind: KindStatement, Position: got.position, Account: a.id, Asset: a.asset, Field: "count",
		Expected: fmt.Sprintf("%d lines", a.lines), Found: "more: " + describeLine(&got)}, nil
}

// describeLine is a line in a few words, for a divergence's detail.
func describeLine(l *line) string {
	kind := "posted"
	if l.pending {
		kind = "pending"
	}
	return fmt.Sprintf("%s %s %s %s at %d (posting %d), running balance %s, available %s", l.transferID, kind, l.side,
		l.amount, l.position, l.postingIndex, l.runningBalance, l.runningAvailable)
}
