package bench

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

const (
	// callTimeout bounds one CreateTransfers call: a full batch on a loaded
	// server may queue behind others.
	callTimeout = 60 * time.Second
	// callErrorsMax failed calls abort a phase: past that the server is down
	// or refusing, and the numbers would mean nothing.
	callErrorsMax = 100
	// failureSamplesMax bounds the failed items and calls kept for the report.
	failureSamplesMax = 10
	// progressEvery is how often a phase reports its progress.
	progressEvery = 5 * time.Second
	// latenciesPreallocMax bounds the latencies allocated ahead per worker:
	// with -duration the phase may end long before -transfers.
	latenciesPreallocMax = 1 << 16
)

// Failure is one item that was not CREATED, or one call that failed.
type Failure struct {
	ID     string `json:"id,omitempty"`
	Code   string `json:"code"`
	Field  string `json:"field,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// worker sends transfers on one client. Its fields are owned by its
// goroutine while a phase runs and read by Run once the phase has ended.
type worker struct {
	id     int
	rng    *rand.Rand
	client ledgerv1.CommandServiceClient
	cfg    *Config
	// seq numbers this worker's transfers across phases: ids stay unique.
	seq uint64

	latencies []time.Duration
	calls     int64
	sent      int64 // transfers sent in the current phase
	// codes counts item results by code over all phases.
	codes map[string]int64
	// callErrors counts failed calls by gRPC status code over all phases.
	callErrors map[string]int64
	// ackedMinor sums the amounts of CREATED transfers; unknownMinor those of
	// transfers whose call failed, so whether they were applied is unknown.
	ackedMinor, unknownMinor int64
	unknown                  int64
	positionMax              uint64
	lastAck                  time.Time
	failures                 []Failure

	// amounts is reused across calls: the amount of each transfer in flight.
	amounts []int64

	// acked, when set, counts every worker's CREATED transfers as they are
	// acknowledged (shared: -webhook-stall samples it while the load runs).
	acked *atomic.Int64
	// covers, when set, says whether the webhook subscription covers a
	// transfer between two accounts; covered collects those acknowledged.
	covers  func(debit, credit string) bool
	covered []coveredTransfer
}

// coveredTransfer is a CREATED transfer the webhook subscription covers:
// its position and when it was acknowledged.
type coveredTransfer struct {
	Position uint64
	AckedAt  time.Time
}

func newWorker(id int, cfg *Config, client ledgerv1.CommandServiceClient) *worker {
	return &worker{
		id:         id,
		rng:        rand.New(rand.NewPCG(cfg.Seed, uint64(id))),
		client:     client,
		cfg:        cfg,
		codes:      map[string]int64{},
		callErrors: map[string]int64{},
		amounts:    make([]int64, 0, cfg.Batch),
	}
}

// phase is one pass of all workers over a number of transfers.
type phase struct {
	name string
	// remaining is claimed by workers, a batch at a time.
	remaining  atomic.Int64
	done       atomic.Int64
	callErrors atomic.Int64
	measure    bool
	// deadline, when set, ends the phase (-duration).
	deadline time.Time
	// pacer, when set, spaces the calls to -rate.
	pacer *pacer
	// abort cancels the phase after callErrorsMax failed calls.
	abort context.CancelFunc
}

// runPhase sends total transfers from all workers and returns the time the
// first call started and the last ended.
func runPhase(ctx context.Context, workers []*worker, name string, total int, measure bool) (start, end time.Time) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &phase{name: name, measure: measure, abort: cancel}
	p.remaining.Store(int64(total))
	now := workers[0].cfg.Now
	start = now()
	if cfg := workers[0].cfg; measure && cfg.Duration > 0 {
		p.deadline = start.Add(cfg.Duration)
	}
	if cfg := workers[0].cfg; cfg.Rate > 0 {
		p.pacer = &pacer{every: time.Second / time.Duration(cfg.Rate), next: start}
	}
	stopProgress := p.reportProgress(ctx, workers[0].cfg, total)
	defer stopProgress()
	var wg sync.WaitGroup
	for _, w := range workers {
		w.sent, w.calls = 0, 0
		if measure {
			w.latencies = make([]time.Duration, 0, min(total/w.cfg.Batch/len(workers)+1, latenciesPreallocMax))
		}
		wg.Go(func() { w.run(ctx, p) })
	}
	wg.Wait()
	return start, now()
}

// reportProgress prints the phase's progress every progressEvery until the
// returned function is called.
func (p *phase) reportProgress(ctx context.Context, cfg *Config, total int) (stop func()) {
	if cfg.Progress == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if p.deadline.IsZero() {
					fmt.Fprintf(cfg.Progress, "%s: %d/%d transfers\n", p.name, p.done.Load(), total)
				} else {
					fmt.Fprintf(cfg.Progress, "%s: %d transfers, %s left\n", p.name, p.done.Load(),
						max(time.Until(p.deadline), 0).Round(time.Second))
				}
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

// run claims batches until the phase has none left, is past its deadline
// or is cancelled.
func (w *worker) run(ctx context.Context, p *phase) {
	batch := int64(w.cfg.Batch)
	for ctx.Err() == nil {
		if !p.deadline.IsZero() && !w.cfg.Now().Before(p.deadline) {
			return
		}
		left := p.remaining.Add(-batch) + batch
		if left <= 0 {
			return
		}
		n := int(min(batch, left))
		if p.pacer != nil {
			// The turn may come after the phase's end or with ctx.
			if !p.pacer.wait(ctx, n) || ctx.Err() != nil ||
				!p.deadline.IsZero() && !w.cfg.Now().Before(p.deadline) {
				return
			}
		}
		w.call(ctx, p, n)
	}
}

// pacer hands out send times -rate apart, per transfer, to every worker.
// A worker late for its turn sends at once: the schedule does not stretch
// when the server is slow, so the workers catch up in a burst after a
// stall. Latency counts from the send, not from the turn: with a fixed
// number of workers, a rate above what the server takes shows as a lower
// rate achieved.
type pacer struct {
	mu    sync.Mutex
	every time.Duration
	next  time.Time
}

// wait sleeps until the turn of n transfers; false when ctx ended first.
func (p *pacer) wait(ctx context.Context, n int) bool {
	p.mu.Lock()
	at := p.next
	p.next = p.next.Add(time.Duration(n) * p.every)
	p.mu.Unlock()
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// call sends one CreateTransfers of n transfers and accounts for its results.
func (w *worker) call(ctx context.Context, p *phase, n int) {
	req := w.request(n)
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	t0 := w.cfg.Now()
	resp, err := w.client.CreateTransfers(cctx, req)
	t1 := w.cfg.Now()
	w.calls++
	w.sent += int64(n)
	p.done.Add(int64(n))
	if err == nil && len(resp.GetResults()) != n {
		err = fmt.Errorf("%d results for %d transfers", len(resp.GetResults()), n)
	}
	if err != nil {
		w.callFailed(ctx, p, err)
		return
	}
	if p.measure {
		w.latencies = append(w.latencies, t1.Sub(t0))
	}
	w.lastAck = t1
	var created int64
	for i, r := range resp.GetResults() {
		w.codes[r.GetCode().String()]++
		w.positionMax = max(w.positionMax, r.GetPosition())
		if r.GetCode() == ledgerv1.ResultCode_RESULT_CODE_CREATED {
			w.ackedMinor += w.amounts[i]
			created++
			if w.covers != nil {
				if post := req.Transfers[i].Postings[0]; w.covers(post.DebitAccount, post.CreditAccount) {
					w.covered = append(w.covered, coveredTransfer{Position: r.GetPosition(), AckedAt: t1})
				}
			}
			continue
		}
		if len(w.failures) < failureSamplesMax {
			w.failures = append(w.failures, Failure{ID: r.GetId(), Code: r.GetCode().String(), Field: r.GetField(), Detail: r.GetDetail()})
		}
	}
	if w.acked != nil {
		w.acked.Add(created)
	}
}

// callFailed records a call that got no results: its transfers may or may
// not have been applied.
func (w *worker) callFailed(ctx context.Context, p *phase, err error) {
	code := "CALL_" + status.Code(err).String()
	w.callErrors[code]++
	w.unknown += int64(len(w.amounts))
	for _, a := range w.amounts {
		w.unknownMinor += a
	}
	if len(w.failures) < failureSamplesMax && ctx.Err() == nil {
		w.failures = append(w.failures, Failure{Code: code, Detail: err.Error()})
	}
	if p.callErrors.Add(1) >= callErrorsMax {
		p.abort()
	}
}

// request builds n transfers of one posting each between two distinct
// random accounts (one of them acc-0 with -hot), of 0.01..100.00.
func (w *worker) request(n int) *ledgerv1.CreateTransfersRequest {
	req := &ledgerv1.CreateTransfersRequest{Ledger: w.cfg.Ledger, Transfers: make([]*ledgerv1.Transfer, n)}
	w.amounts = w.amounts[:0]
	prefix := "t-" + strconv.Itoa(w.id) + "-"
	for i := range n {
		debit, credit := w.pickAccounts()
		amount := w.pickAmount()
		w.amounts = append(w.amounts, amount)
		w.seq++
		req.Transfers[i] = &ledgerv1.Transfer{
			Id: prefix + strconv.FormatUint(w.seq, 10),
			Postings: []*ledgerv1.Posting{{
				DebitAccount:  accountID(debit),
				CreditAccount: accountID(credit),
				Amount:        formatMinor(big.NewInt(amount), assetScale),
				Asset:         assetCode,
			}},
		}
	}
	return req
}

// pickAmount returns a random amount in minor units, amountMinorMin..amountMinorMax.
func (w *worker) pickAmount() int64 {
	return amountMinorMin + w.rng.Int64N(amountMinorMax-amountMinorMin+1)
}

// pickAccounts returns two distinct account numbers.
func (w *worker) pickAccounts() (debit, credit int) {
	accounts := w.cfg.Accounts
	if w.cfg.Hot {
		other := 1 + w.rng.IntN(accounts-1)
		if w.rng.IntN(2) == 0 {
			return 0, other
		}
		return other, 0
	}
	debit = w.rng.IntN(accounts)
	credit = w.rng.IntN(accounts - 1)
	if credit >= debit {
		credit++
	}
	return debit, credit
}

func accountID(i int) string { return "acc-" + strconv.Itoa(i) }
