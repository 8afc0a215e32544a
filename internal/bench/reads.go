package bench

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

const (
	// readBalancesAccounts is how many random accounts one GetBalances asks for.
	readBalancesAccounts = 10
	// readStatementLimit is the page size of one ListStatement: its first page.
	readStatementLimit = 100
	// readCallTimeout bounds one read; without min_position the server does
	// not wait, so only a stalled server gets near it.
	readCallTimeout = 10 * time.Second
	// readerErrorsMax failed calls stop a reader: past that the server
	// refuses, and a tight loop of refusals would only load it.
	readerErrorsMax = 100
	// readerLatenciesMax bounds the latencies one reader keeps (8 bytes
	// each); calls past it are counted but not in the percentiles.
	readerLatenciesMax = 2_000_000
	// readerSeedStream numbers the readers' random streams past the
	// workers' (0..ConcurrencyMax-1), so reads do not replay the writes' picks.
	readerSeedStream = 1 << 32
)

// readKind is the query a reader sends.
type readKind int

const (
	readBalances readKind = iota
	readStatement
	readHealth
	readKinds // the number of kinds
)

// String is the query's gRPC method name, as reported.
func (k readKind) String() string {
	switch k {
	case readStatement:
		return "ListStatement"
	case readHealth:
		return "Health.Check"
	}
	return "GetBalances"
}

// readerKinds assigns a kind to each of cfg.Readers readers: with
// ReadKindBoth, even readers ask for balances and odd ones for statements;
// with ReadKindAll, the i-th reader asks kind i mod 3.
func readerKinds(cfg *Config) []readKind {
	kinds := make([]readKind, cfg.Readers)
	for i := range kinds {
		switch cfg.ReadKind {
		case ReadKindStatement:
			kinds[i] = readStatement
		case ReadKindHealth:
			kinds[i] = readHealth
		case ReadKindBoth:
			kinds[i] = readKind(i % 2)
		case ReadKindAll:
			kinds[i] = readKind(i % 3)
		}
	}
	return kinds
}

// reader sends one kind of query in a tight loop. Its fields are owned by
// its goroutine while reads run and read once they have stopped.
type reader struct {
	kind   readKind
	rng    *rand.Rand
	client ledgerv1.QueryServiceClient
	health healthpb.HealthClient
	cfg    *Config
	// pacer, when set (-read-rate), spaces the readers' calls together.
	pacer *pacer

	// calls were answered; latencies holds the first readerLatenciesMax.
	calls     int64
	latencies []time.Duration
	// errorCodes counts failed calls by gRPC code; errorSample is the first.
	errorCodes  map[string]int64
	errors      int64
	errorSample string
}

func newReader(id int, kind readKind, cfg *Config, conn grpc.ClientConnInterface) *reader {
	return &reader{
		kind:       kind,
		rng:        rand.New(rand.NewPCG(cfg.Seed, readerSeedStream+uint64(id))),
		client:     ledgerv1.NewQueryServiceClient(conn),
		health:     healthpb.NewHealthClient(conn),
		cfg:        cfg,
		errorCodes: map[string]int64{},
	}
}

// run reads until ctx ends or the reader has failed readerErrorsMax times.
// A call cut short by ctx's end is not counted.
func (r *reader) run(ctx context.Context) {
	for ctx.Err() == nil && r.errors < readerErrorsMax {
		if r.pacer != nil && !r.pacer.wait(ctx, 1) {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, readCallTimeout)
		t0 := r.cfg.Now()
		err := r.call(cctx)
		t1 := r.cfg.Now()
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			code := status.Code(err).String()
			r.errorCodes[code]++
			r.errors++
			if r.errorSample == "" {
				r.errorSample = err.Error()
			}
			continue
		}
		r.calls++
		if len(r.latencies) < readerLatenciesMax {
			r.latencies = append(r.latencies, t1.Sub(t0))
		}
	}
}

// call sends one query of the reader's kind, on the projections (no
// min_position, default consistency).
func (r *reader) call(ctx context.Context) error {
	var err error
	switch r.kind {
	case readStatement:
		_, err = r.client.ListStatement(ctx, r.statementRequest())
	case readHealth:
		// The whole server's status: what the daemon holds, no database.
		_, err = r.health.Check(ctx, &healthpb.HealthCheckRequest{})
	default:
		_, err = r.client.GetBalances(ctx, r.balancesRequest())
	}
	return err
}

// balancesRequest asks for readBalancesAccounts random accounts, drawn with
// replacement (so any number of accounts will do).
func (r *reader) balancesRequest() *ledgerv1.GetBalancesRequest {
	ids := make([]string, readBalancesAccounts)
	for i := range ids {
		ids[i] = accountID(r.rng.IntN(r.cfg.Accounts))
	}
	return &ledgerv1.GetBalancesRequest{Ledger: r.cfg.Ledger, Accounts: ids}
}

// statementRequest asks for the first page of a random account's statement.
func (r *reader) statementRequest() *ledgerv1.ListStatementRequest {
	return &ledgerv1.ListStatementRequest{Ledger: r.cfg.Ledger, Account: accountID(r.rng.IntN(r.cfg.Accounts)),
		Limit: readStatementLimit}
}

// ReadSummary describes the queries of one kind sent while the measured
// phase wrote. Calls and the latencies count answered calls only; Errors
// the failed ones.
type ReadSummary struct {
	Kind    string `json:"kind"`
	Readers int    `json:"readers"`
	Calls   int64  `json:"calls"`
	// QueriesPerSecond is Calls over the measured phase's duration.
	QueriesPerSecond float64        `json:"queries_per_second"`
	LatencyMs        LatencySummary `json:"latency_ms"`
	Errors           int64          `json:"errors"`
	// ErrorCodes counts failed calls by gRPC code; ErrorSample is one's message.
	ErrorCodes  map[string]int64 `json:"error_codes,omitempty"`
	ErrorSample string           `json:"error_sample,omitempty"`
}

// summarizeReads merges the readers' counts and latencies by kind, in kind
// order, leaving out kinds no reader sent.
func summarizeReads(readers []*reader, elapsed time.Duration) []ReadSummary {
	var out []ReadSummary
	for kind := range readKinds {
		s := ReadSummary{Kind: kind.String()}
		var latencies []time.Duration
		for _, r := range readers {
			if r.kind != kind {
				continue
			}
			s.Readers++
			s.Calls += r.calls
			s.Errors += r.errors
			latencies = append(latencies, r.latencies...)
			for code, n := range r.errorCodes {
				if s.ErrorCodes == nil {
					s.ErrorCodes = map[string]int64{}
				}
				s.ErrorCodes[code] += n
			}
			if s.ErrorSample == "" {
				s.ErrorSample = r.errorSample
			}
		}
		if s.Readers == 0 {
			continue
		}
		if elapsed > 0 {
			s.QueriesPerSecond = float64(s.Calls) / elapsed.Seconds()
		}
		s.LatencyMs = summarize(latencies)
		out = append(out, s)
	}
	return out
}

// readLoad is everything that reads while the measured phase writes: the
// readers and the lag sampler, on connections of their own so that they do
// not queue behind the writers' streams.
type readLoad struct {
	conns   []*grpc.ClientConn
	readers []*reader
	// readRate is cfg.ReadRate: 0, or the readers' calls a second together.
	readRate int
	sampler  *lagSampler // nil when lag is not sampled
}

// newReadLoad dials the connections of cfg's readers and lag sampler; nil
// when there are neither.
//
// Errors: dial's.
func newReadLoad(ctx context.Context, cfg *Config) (*readLoad, error) {
	n := (cfg.Readers + workersPerConn - 1) / workersPerConn
	if cfg.LagEvery > 0 {
		n++
	}
	if n == 0 {
		return nil, nil
	}
	conns, err := dial(ctx, cfg.Addr, cfg.APIKey, n)
	if err != nil {
		return nil, err
	}
	l := &readLoad{conns: conns, readRate: cfg.ReadRate}
	for i, kind := range readerKinds(cfg) {
		l.readers = append(l.readers, newReader(i, kind, cfg, conns[i/workersPerConn]))
	}
	if cfg.LagEvery > 0 {
		l.sampler = newLagSampler(cfg, ledgerv1.NewQueryServiceClient(conns[len(conns)-1]))
	}
	return l, nil
}

// start runs the readers and the sampler until the returned function is
// called; it returns once they have all stopped. Nil l starts nothing.
func (l *readLoad) start(ctx context.Context) (stop func()) {
	if l == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	if l.readRate > 0 {
		p := &pacer{every: time.Second / time.Duration(l.readRate), next: time.Now()}
		for _, r := range l.readers {
			r.pacer = p
		}
	}
	var wg sync.WaitGroup
	for _, r := range l.readers {
		wg.Go(func() { r.run(ctx) })
	}
	if l.sampler != nil {
		wg.Go(func() { l.sampler.run(ctx) })
	}
	return func() { cancel(); wg.Wait() }
}

// addTo puts the reads and the lag, over the measured phase's elapsed
// time, into r. Nil l adds nothing.
func (l *readLoad) addTo(r *Report, elapsed time.Duration) {
	if l == nil {
		return
	}
	r.Reads = summarizeReads(l.readers, elapsed)
	if l.sampler != nil {
		lag := l.sampler.report()
		r.Lag = &lag
	}
}

func (l *readLoad) close() {
	if l == nil {
		return
	}
	for _, cc := range l.conns {
		cc.Close()
	}
}
