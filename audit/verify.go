package audit

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/ledgerd/ledger/anchor"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// callTimeout bounds one unary call to ledgerd (a query waits at most 10 s
// for min_position on top of its own work).
const callTimeout = 30 * time.Second

// callRecvMax bounds an answer, as ledgerd bounds what it sends: a page of
// 1,000 statement lines with their metadata may pass gRPC's default 4 MiB.
const callRecvMax = 64 << 20

// unary makes one call to ledgerd, bounded by callTimeout and callRecvMax;
// its error is a CallError naming what was asked.
func unary[Q, R any](ctx context.Context, what string, call func(context.Context, Q, ...grpc.CallOption) (R, error),
	req Q) (R, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := call(ctx, req, grpc.MaxCallRecvMsgSize(callRecvMax))
	if err != nil {
		var none R
		return none, CallError(what, err)
	}
	return resp, nil
}

// Projections is what Verify asks of ledgerd's QueryService: a
// ledgerv1.QueryServiceClient is one.
type Projections interface {
	GetBalances(ctx context.Context, in *ledgerv1.GetBalancesRequest, opts ...grpc.CallOption) (*ledgerv1.GetBalancesResponse, error)
	GetTrialBalance(ctx context.Context, in *ledgerv1.GetTrialBalanceRequest, opts ...grpc.CallOption) (*ledgerv1.GetTrialBalanceResponse, error)
	ListStatement(ctx context.Context, in *ledgerv1.ListStatementRequest, opts ...grpc.CallOption) (*ledgerv1.ListStatementResponse, error)
	ListTransfers(ctx context.Context, in *ledgerv1.ListTransfersRequest, opts ...grpc.CallOption) (*ledgerv1.ListTransfersResponse, error)
	ListAccounts(ctx context.Context, in *ledgerv1.ListAccountsRequest, opts ...grpc.CallOption) (*ledgerv1.ListAccountsResponse, error)
}

// StatementLines is what Verify asks of ledgerd's AuditService to read
// every statement line at once: a ledgerv1.AuditServiceClient is one. Its
// call must pass on Verify's call options: Verify reads the messages
// itself, through a codec of its own (lineswire.go).
type StatementLines interface {
	ReadStatementLines(ctx context.Context, in *ledgerv1.ReadStatementLinesRequest,
		opts ...grpc.CallOption) (grpc.ServerStreamingClient[ledgerv1.ReadStatementLinesResponse], error)
}

// Options bound and watch a verification.
type Options struct {
	// From and To are the positions to verify; 0: 1 and the head. From
	// after 1 checks the chain only, anchored on From's own stored
	// prev_hash (which an earlier verification up to From-1 vouches for):
	// balances need the whole log, so the replay and the comparison with the
	// projections are skipped, and the report says so.
	From, To uint64
	// Anchors, checked with Keyring, are signed positions and hashes of
	// the log (any ledger's: those of the verified ledger are checked). Each
	// must verify with a trusted key, and the log must hold, at its
	// position, an event with its hash: a log that ends before an anchor,
	// or differs at one, diverges there.
	Anchors []anchor.Anchor
	Keyring *anchor.Keyring
	// Progress, if set, is called as the work advances (from Verify's
	// goroutine and, during the statements phase, from its workers, one at a
	// time). The transfers check runs beside the balances, trial balance and
	// statements, and reports once they are done.
	Progress func(Progress)
	// Alerts, if set, is compared with a replay of the log's alerts
	// (through domain.Evaluator) at To, beside the projections.
	Alerts Alerts
	// Lines, if set, reads every statement line at once (ledgerd's
	// AuditService): the statements are compared in bulk, and read account
	// by account only where they differ. Without it, or from a ledgerd
	// that does not serve it (Unimplemented), they are read account by
	// account.
	Lines StatementLines

	// transferBucketSpan and transferBucketsPerRead replace the transfers
	// check's, when set: tests make them small (export_test.go).
	transferBucketSpan     uint64
	transferBucketsPerRead int
}

// Progress is how far a phase of Verify is.
type Progress struct {
	// Phase is "log", "balances", "accounts", "trial balance", "statements",
	// "statement lines" (the second read of the log that finds the line),
	// "transfers", "transfers again" (a further read of the log that finds
	// the transfer; "transfers again, 2 of 3" when it takes several) or
	// "alerts".
	Phase       string
	Done, Total uint64
}

// ErrRange means From after To.
var ErrRange = errors.New("from is after to")

// errNoKeyring: anchors without the keys to check them.
var errNoKeyring = errors.New("anchors given without trusted public keys")

// errStop ends a Read early; it never leaves this package.
var errStop = errors.New("stop reading")

// Verify checks the log of l and, unless proj is nil, the projections
// against it. It returns a Report whose Divergence is the first one found:
// in the log by position (a gap, an altered event, a broken link, a broken
// invariant), then in the projections at the verified head, kind by kind
// (balances, accounts, trial balance, statements, transfers, alerts), each
// the lowest position of its kind. A report without a divergence means the
// log is intact from From to To and, from position 1, that every balance,
// the trial balance, every statement line and every transfer served as of
// To are what the log says, and so are the accounts when AccountsCompared
// (the notes say what was not compared).
//
// Errors: ErrBeyondHead; ErrRange; a call or read that failed (the
// projections not reaching To in time among them); an event this build
// cannot read. A divergence is not an error.
func Verify(ctx context.Context, l Log, proj Projections, opts Options) (*Report, error) {
	began := time.Now()
	head, err := l.Head(ctx)
	if err != nil {
		return nil, err
	}
	from, to := max(opts.From, 1), opts.To
	switch {
	case head != 0 && to > head:
		return nil, fmt.Errorf("to %d, head %d: %w", to, head, ErrBeyondHead)
	case to == 0:
		to = head
	}
	if to != 0 && from > to {
		return nil, fmt.Errorf("from %d, to %d: %w", from, to, ErrRange)
	}
	rep := &Report{Ledger: l.Ledger(), From: from, Head: head}
	v := &verifier{log: l, proj: proj, opts: opts, rep: rep, chain: chain{ledger: l.Ledger(), next: from, anchored: from == 1}}
	if from == 1 {
		// The replay of the alerts checks the log's AlertRaised events
		// always, and the alerts served when they are read.
		v.book = newBook(true)
		v.alertReplay = &alertReplay{compare: proj != nil && opts.Alerts != nil}
		v.book.alerts = v.alertReplay
	}
	if len(opts.Anchors) > 0 && opts.Keyring == nil {
		return nil, errNoKeyring
	}
	v.anchors = newAnchorCheck(opts.Anchors, opts.Keyring)
	v.replayed = make(chan struct{})
	var tc *transfersCheck
	if v.book != nil && proj != nil && head != 0 {
		// To is a database's head, known before the log is read: what
		// ledgerd serves up to it is read beside the replay.
		tc = v.startTransfers(ctx, rep.Ledger, to)
		defer tc.stop()
		if opts.Lines != nil {
			v.lines = readLines(ctx, opts.Lines, rep.Ledger, to, v.book.seed)
			defer v.lines.stop()
		}
	}
	if err := v.readLog(ctx, from, to); err != nil {
		return nil, err
	}
	rep.Ledger = l.Ledger() // a file names its ledger once read
	close(v.replayed)
	if v.lines != nil {
		v.lines.bound(v.book.lineCount())
	}
	defer func() { rep.Elapsed = time.Since(began) }()
	// A file's end is not a head: anchors past it are not judged. A
	// database's head is, even 0 (its events deleted, or restored from
	// before the ledger): every anchor of the ledger is then past the end.
	_, headUnknown := l.(HeadUnknown)
	v.checkAnchors(v.anchors, !headUnknown && to == head)
	if rep.Divergence == nil {
		if err := v.checkDatabase(ctx); err != nil {
			return nil, err
		}
	}
	switch {
	case rep.Divergence != nil:
		return rep, nil
	case v.book == nil:
		rep.Notes = append(rep.Notes, fmt.Sprintf("replay and projections skipped: balances need the log from position 1, "+
			"and this check started at %d (its chain is anchored on that event's stored prev_hash)", from))
		return rep, nil
	case rep.Events == 0:
		rep.Notes = append(rep.Notes, "the log is empty")
		return rep, nil
	}
	rep.Replayed = true
	rep.Accounts, rep.Assets = len(v.book.accounts), len(v.book.assets)
	if v.alertReplay != nil && v.alertReplay.truncated {
		rep.Notes = append(rep.Notes, fmt.Sprintf("AlertRaised events checked while the replay held at most %d alerts, the rest not",
			alertsReplayMax))
	}
	if proj == nil {
		rep.Notes = append(rep.Notes, "projections not compared: the log alone was verified")
		return rep, nil
	}
	if tc == nil {
		tc = v.startTransfers(ctx, rep.Ledger, rep.To)
		defer tc.stop() // on an earlier divergence or error
	}
	transfers := func(context.Context) (*Divergence, error) { return v.waitTransfers(tc) }
	for _, check := range []func(context.Context) (*Divergence, error){v.balances, v.accounts, v.trialBalance, v.statements, transfers, v.alerts} {
		d, err := check(ctx)
		if err != nil {
			return nil, err
		}
		if d != nil {
			rep.Divergence = d
			return rep, nil
		}
	}
	switch {
	case v.alertReplay == nil || opts.Alerts == nil:
		rep.Notes = append(rep.Notes, "alerts not compared")
	case v.alertReplay.truncated:
		rep.Notes = append(rep.Notes, fmt.Sprintf("alerts compared up to the first %d, the rest not", alertsReplayMax))
	}
	return rep, nil
}

// verifier is one run of Verify.
type verifier struct {
	log   Log
	proj  Projections
	opts  Options
	rep   *Report
	chain chain
	book  *book // nil when the replay is skipped
	// checker holds the log to what an import accepts besides the domain's
	// invariants (ids taken once, reversals within their original,
	// canonical payloads, recorded time that never goes back); with book.
	checker *ImportChecker
	// recent keeps the last records read, for the checker's look-backs.
	recent *recentRecords
	// anchors, when given, notes the hashes at their positions.
	anchors *anchorCheck
	// alertReplay, when alerts are compared, is the replay's (book's too).
	alertReplay *alertReplay
	// tbook, when the projections are compared, follows the transfers.
	tbook *transferBook
	// last is the hash of the last event the first read checked.
	last eventstore.Hash
	// rereading makes the second reads of the log one at a time (reread).
	rereading sync.Mutex
	// replayed is closed once the log is read: what ledgerd serves, read
	// beside the replay, is compared after it.
	replayed chan struct{}
	// lines is the bulk read of the statement lines that ran beside the
	// replay (it needs only the run's seed and To, a database's head,
	// known before the log is read); nil when none did.
	lines *servedLines
}

// recentRecords keeps the last recentRecordsMax records by position: most
// of the checker's look-backs (a retried id, a reversal's original) are
// near, and the others are read from the log again. The log's positions
// follow each other from 1, so a record's slot is its position modulo the
// ring's size; the ring grows to recentRecordsMax with the log, so a small
// log takes little.
type recentRecords struct {
	ring []eventstore.Record
}

const recentRecordsMax = 1 << 16

func (r *recentRecords) put(rec *eventstore.Record) {
	if n := len(r.ring); rec.Position >= uint64(n) && n < recentRecordsMax {
		// Not yet wrapped: slot i holds position i, and keeps it grown.
		grown := make([]eventstore.Record, min(recentRecordsMax, max(2*n, 1024)))
		copy(grown, r.ring)
		r.ring = grown
	}
	r.ring[rec.Position%uint64(len(r.ring))] = *rec
}

// get returns the record at pos if it is kept.
func (r *recentRecords) get(pos uint64) (eventstore.Record, bool) {
	if len(r.ring) == 0 {
		return eventstore.Record{}, false
	}
	rec := r.ring[pos%uint64(len(r.ring))]
	return rec, rec.Position == pos && pos != 0
}

// prior returns the record at pos: kept, or read from the log again.
func (v *verifier) prior(ctx context.Context) ImportPrior {
	return func(pos uint64) (eventstore.Record, error) {
		if r, ok := v.recent.get(pos); ok {
			return r, nil
		}
		var found eventstore.Record
		err := v.log.Read(ctx, pos, pos, func(recs []eventstore.Record) error {
			if len(recs) > 0 {
				found = recs[0]
			}
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			return eventstore.Record{}, err
		}
		if found.Position != pos {
			return eventstore.Record{}, fmt.Errorf("position %d: not in the log", pos)
		}
		return found, nil
	}
}

func (v *verifier) progress(phase string, done, total uint64) {
	if v.opts.Progress != nil {
		v.opts.Progress(Progress{Phase: phase, Done: done, Total: total})
	}
}

// check holds r, whose hash the chain has verified and whose payload
// decodes to e, to what an import would accept, and applies e to the
// state: a divergence, or the error of a look-back that failed.
func (v *verifier) check(r *eventstore.Record, e domain.Event) (*Divergence, error) {
	err := v.checker.checkDecoded(r, e)
	var ie *ImportError
	if errors.As(err, &ie) {
		return &Divergence{Kind: KindInvariant, Position: ie.Position, Expected: "an event an import of the log would accept",
			Found: ie.Error(), Detail: r.Type}, nil
	}
	if err != nil {
		return nil, err
	}
	v.recent.put(r)
	return nil, nil
}

// readLog reads from..to (to 0: to the end), checking the chain and folding
// each event, and stops at the first divergence. On return rep.To is the
// last position read.
func (v *verifier) readLog(ctx context.Context, from, to uint64) error {
	total := uint64(0)
	if to != 0 {
		total = to - from + 1
	}
	rep := v.rep
	if v.book != nil {
		v.recent = &recentRecords{}
		v.checker = NewImportChecker(v.prior(ctx))
		// The book folds on the checker's state, which applies each event
		// (an index of ids beside): one Evolve an event, not two.
		// The checker never rolls its state back: the book's accounts
		// by number (domain.State.AccountNumber) stay the state's.
		v.book.state = v.checker.state
		if v.proj != nil {
			v.tbook = newTransferBook(v.book.seed, cmp.Or(v.opts.transferBucketSpan, transferBucketSpan), v.checker.priorEvent)
		}
	}
	defer func() {
		if rep.Events > 0 {
			rep.LastHash = hex.EncodeToString(v.last[:])
		}
	}()
	err := v.log.Read(ctx, from, to, func(recs []eventstore.Record) error {
		for i := range recs {
			r := &recs[i]
			if !v.chain.anchored && v.chain.next == r.Position {
				rep.Anchor = hex.EncodeToString(r.PrevHash[:])
			}
			if d := v.chain.check(r); d != nil {
				rep.Divergence = d
				return errStop
			}
			v.anchors.read(r)
			if v.book != nil {
				// Decoded once, for the checker and the book.
				e, d, err := decodeRecord(r)
				if err != nil {
					return err
				}
				if d != nil {
					rep.Divergence = d
					return errStop
				}
				if d, err := v.check(r, e); d != nil || err != nil {
					rep.Divergence = d
					return cmp.Or(err, errStop)
				}
				if err := v.book.applied(r, e); err != nil {
					return err
				}
				if d := v.alertReplay.diverged; d != nil {
					rep.Divergence = d
					return errStop
				}
				if v.tbook != nil {
					if err := v.tbook.apply(r, e); err != nil {
						return err
					}
				}
			}
			rep.Events++
			rep.To, v.last = r.Position, r.Hash
		}
		v.progress("log", rep.Events, total)
		return ctx.Err()
	})
	var malformed *MalformedError
	switch {
	case errors.Is(err, errStop):
		return nil
	case errors.As(err, &malformed):
		rep.Divergence = malformed.divergence(v.chain.next)
		return nil
	case err != nil:
		return err
	}
	if to == 0 {
		return nil // a file: its end is its head
	}
	if v.chain.next <= to && rep.Head == 0 {
		return fmt.Errorf("to %d, the log ends at %d: %w", to, v.chain.next-1, ErrBeyondHead)
	}
	if v.chain.next <= to {
		// Rows missing at the end: the head says they were written.
		rep.Divergence = &Divergence{Kind: KindGap, Position: v.chain.next,
			Expected: fmt.Sprintf("position %d (the log's head is %d)", v.chain.next, to), Found: "the end of the log"}
	}
	return nil
}

// reread reads the log again from 1 to To, checking its chain again and
// that it reaches To with the hash the first read ended on (the log read
// now must be the one verified: a log re-sealed meanwhile differs there),
// and hands each event, decoded, to f; then, up to until when it is
// further, the events after To, in order but with their hashes unchecked:
// they only explain what a projection served after To, and a verification
// that reaches them checks them. It returns the first divergence, of the
// log or of f, which means the log changed while it was verified (or, past
// To, that it lost what a projection served). The second reads of
// the statements and the transfers checks, which run at once, read one at
// a time: a Log need not be safe for concurrent use.
//
// Errors: a read that failed; an event after To that does not decode (a
// newer writer's, say: nothing can be said of what it changed); f's.
func (v *verifier) reread(ctx context.Context, until uint64, progress func(done, total uint64),
	f func(r *eventstore.Record, e domain.Event) (*Divergence, error)) (*Divergence, error) {
	v.rereading.Lock()
	defer v.rereading.Unlock()
	to := v.rep.To
	end := max(to, until)
	c := chain{ledger: v.rep.Ledger, next: 1, anchored: true}
	past := to // the last position read after To
	var changed *Divergence
	err := v.log.Read(ctx, 1, end, func(recs []eventstore.Record) error {
		for i := range recs {
			r := &recs[i]
			if r.Position > to {
				// Unchecked, but in order: a position missing is a gap,
				// the lowest first (one up to To before any after it).
				next := past + 1
				if c.next <= to {
					next = c.next
				}
				if r.Position != next {
					changed = gap(next, fmt.Sprintf("position %d", r.Position))
					return errStop
				}
				past = r.Position
				e, err := domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload)
				if err != nil {
					return fmt.Errorf("event %d, after the verified head, cannot be read to explain what a projection "+
						"served after it: %w", r.Position, err)
				}
				if _, err := f(r, e); err != nil {
					return err
				}
				continue
			}
			if changed = c.check(r); changed != nil {
				return errStop
			}
			if r.Position == to && r.Hash != v.last {
				changed = &Divergence{Kind: KindHash, Position: to, Field: "hash", Expected: hex.EncodeToString(v.last[:]),
					Found: hex.EncodeToString(r.Hash[:]), Detail: "not the hash the first read ended on: the log was re-sealed"}
				return errStop
			}
			e, d, err := decodeRecord(r)
			if err != nil {
				return err
			}
			if d == nil {
				d, err = f(r, e)
			}
			if changed = d; changed != nil || err != nil {
				return cmp.Or(err, errStop)
			}
		}
		if n := len(recs); n > 0 {
			progress(recs[n-1].Position, end)
		}
		return ctx.Err()
	})
	var malformed *MalformedError
	switch {
	case errors.As(err, &malformed):
		changed = malformed.divergence(c.next)
	case err != nil && !errors.Is(err, errStop):
		return nil, err
	}
	switch {
	case changed != nil:
	case c.next <= to:
		changed = gap(c.next, "the end of the log")
	case past < end:
		// A projection served the log up to end: the log had it then.
		changed = gap(past+1, "the end of the log")
		changed.Detail = fmt.Sprintf("a projection served the log up to %d", end)
	}
	if changed != nil {
		changed.Detail = strings.TrimPrefix(changed.Detail+"; ", "; ") + "the log changed while it was verified"
	}
	return changed, nil
}

// gap is the divergence of position at, missing where found stands (a
// later position, or the end of the log).
func gap(at uint64, found string) *Divergence {
	return &Divergence{Kind: KindGap, Position: at, Expected: fmt.Sprintf("position %d", at), Found: found}
}

// chain checks positions, hashes and links, record by record.
type chain struct {
	ledger string
	// next is the position expected next; prev the hash the next record's
	// prev_hash must be, once anchored (from 1: the zero hash).
	next     uint64
	prev     eventstore.Hash
	anchored bool
}

// check returns the divergence r shows, or nil and moves on.
func (c *chain) check(r *eventstore.Record) *Divergence {
	if r.Position != c.next {
		d := gap(c.next, fmt.Sprintf("position %d", r.Position))
		if r.Position < c.next {
			d.Detail = "repeated or out of order"
		} else {
			d.Detail = fmt.Sprintf("%d missing", r.Position-c.next)
		}
		return d
	}
	if c.ledger == "" {
		c.ledger = r.Ledger // a file's: named by its first event
	}
	if r.Ledger != c.ledger {
		return &Divergence{Kind: KindHash, Position: r.Position, Field: "ledger", Expected: c.ledger, Found: r.Ledger,
			Detail: "an event of another ledger"}
	}
	if !r.VerifyHash() {
		sealed := *r
		sealed.Seal(r.PrevHash)
		return &Divergence{Kind: KindHash, Position: r.Position, Expected: hex.EncodeToString(sealed.Hash[:]),
			Found: hex.EncodeToString(r.Hash[:]), Detail: "the stored hash is not that of the event's content: " + r.Type + " altered"}
	}
	if c.anchored && r.PrevHash != c.prev {
		return &Divergence{Kind: KindLink, Position: r.Position, Field: "prev_hash", Expected: hex.EncodeToString(c.prev[:]),
			Found: hex.EncodeToString(r.PrevHash[:]), Detail: "not the hash of the event before"}
	}
	c.prev, c.anchored = r.Hash, true
	c.next++
	return nil
}

// divergence is what a record that does not decode shows when next was
// expected: a gap when it says it is further on, else a hash divergence (an
// event whose hashes cannot even be read cannot be vouched for).
func (e *MalformedError) divergence(next uint64) *Divergence {
	if e.Position > next {
		d := gap(next, fmt.Sprintf("position %d", e.Position))
		d.Detail = fmt.Sprintf("%d missing", e.Position-next)
		return d
	}
	return &Divergence{Kind: KindHash, Position: next, Expected: "an event that parses, with hex hashes",
		Found: e.Err.Error()}
}
