package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

const (
	// workersPerConn workers share one client connection: one HTTP/2
	// connection for all would serialize them on its one TCP stream.
	workersPerConn = 8
	// connsMax bounds the connections to the server.
	connsMax = 64
	// messageBytesMax is the gRPC message limit both ways.
	messageBytesMax = 64 << 20
	// connectTimeout bounds waiting for every connection to be ready.
	connectTimeout = 10 * time.Second
	// setupCallTimeout bounds one DefineAsset or OpenAccounts call.
	setupCallTimeout = 60 * time.Second
	// accountsPerOpenMax is the server's limit of items per request.
	accountsPerOpenMax = BatchMax
)

// ErrSetup means the ledger could not be prepared: the asset or an account
// was refused.
var ErrSetup = errors.New("setup refused")

// Run prepares the ledger, sends cfg.Warmup and then cfg.Transfers transfers
// (while cfg.Readers query and the projections' lag is sampled), verifies
// them, and writes the report to out (as JSON with cfg.JSON).
// Failed items and failed checks do not make an error: they make
// Report.Pass false.
//
// Errors: ErrInvalidConfig; ErrSetup; connection and setup call errors;
// ctx's error if it ends while transfers are sent.
func Run(ctx context.Context, cfg Config, out io.Writer) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	conns, err := dial(ctx, cfg.Addr, cfg.APIKey, min(connsMax, (cfg.Concurrency+workersPerConn-1)/workersPerConn))
	if err != nil {
		return Report{}, err
	}
	defer func() {
		for _, cc := range conns {
			cc.Close()
		}
	}()
	meter, err := newCPUMeter(&cfg)
	if err != nil {
		return Report{}, err
	}
	r := Report{CommandLine: cfg.CommandLine, Config: cfg, Conns: len(conns), CPU: meter.report(), meter: meter}
	setupStart := cfg.Now()
	if err := prepare(ctx, conns[0], &cfg); err != nil {
		return Report{}, err
	}
	r.SetupSeconds = cfg.Now().Sub(setupStart).Seconds()

	workers := make([]*worker, cfg.Concurrency)
	var auto *autoBatched
	if cfg.AutoBatch {
		if auto, err = dialAutoBatched(ctx, &cfg); err != nil {
			return Report{}, err
		}
		defer auto.Close()
	}
	for i := range workers {
		var cmd ledgerv1.CommandServiceClient = ledgerv1.NewCommandServiceClient(conns[i%len(conns)])
		if auto != nil {
			cmd = auto
		}
		workers[i] = newWorker(i, &cfg, cmd)
	}
	if cfg.Warmup > 0 {
		fmt.Fprintf(cfg.Progress, "warmup: %d transfers\n", cfg.Warmup)
		runPhase(ctx, workers, "warmup", cfg.Warmup, false)
	}
	var hook *webhookRun
	if cfg.WebhookStall > 0 {
		if hook, err = startWebhook(ctx, conns[0], &cfg); err != nil {
			return Report{}, err
		}
		defer hook.close()
		for _, w := range workers {
			w.acked, w.covers = &hook.acked, hook.covers
		}
	}
	end, err := r.measure(ctx, &cfg, workers, hook)
	if err != nil {
		return Report{}, err
	}

	fmt.Fprintln(cfg.Progress, "verifying")
	r.verify(ctx, ledgerv1.NewQueryServiceClient(conns[0]), &cfg, lastAck(workers, end))
	if hook != nil {
		r.verifyWebhook(ctx, hook, workers)
	}
	if cfg.BaselinePostgresURL != "" {
		r.runBaseline(ctx, &cfg)
	}
	return r, r.write(&cfg, out)
}

// write writes the report to out, as text or JSON, and as JSON to
// cfg.JSONOut when it is set.
//
// Errors: out's; the file's.
func (r *Report) write(cfg *Config, out io.Writer) error {
	if cfg.JSONOut != "" {
		f, err := os.Create(cfg.JSONOut)
		if err != nil {
			return fmt.Errorf("json report: %w", err)
		}
		err = r.WriteJSON(f)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("json report: %w", cerr)
		}
		if err != nil {
			return err
		}
	}
	if cfg.JSON {
		return r.WriteJSON(out)
	}
	return r.WriteText(out)
}

// runBaseline runs the naive ledger after the ledger's run and compares.
// A naive run that cannot start fails a check rather than the whole run:
// the ledger's figures still stand.
func (r *Report) runBaseline(ctx context.Context, cfg *Config) {
	n, err := runNaive(ctx, cfg, r.meter)
	if err != nil {
		r.check("naive baseline ran", false, err.Error())
		return
	}
	if n.TransfersPerSecond > 0 {
		n.RatioAcked = r.TransfersPerSecond / n.TransfersPerSecond
		n.RatioSustained = r.SustainedPerSecond / n.TransfersPerSecond
	}
	for _, c := range n.Checks {
		r.check(c.Name, c.Pass, c.Detail)
	}
	r.Naive = n
}

// prepare sets the ledger up and waits until every projection has applied
// the setup: reads of an account a projection has not opened yet would fail,
// and its backlog would count in the measured lag.
//
// Errors: setup's; waitCaughtUp's.
func prepare(ctx context.Context, cc *grpc.ClientConn, cfg *Config) error {
	position, err := setup(ctx, ledgerv1.NewCommandServiceClient(cc), cfg)
	if err != nil {
		return err
	}
	if _, err := waitCaughtUp(ctx, ledgerv1.NewQueryServiceClient(cc), cfg, position, cfg.Now()); err != nil {
		return fmt.Errorf("projections after setup: %w", err)
	}
	return nil
}

// measure runs the measured phase with the readers and the lag sampler
// alongside (and hook's stall, when set), puts its numbers into r and
// returns when it ended.
//
// Errors: dial's for the readers' connections; ctx's error if it ended.
func (r *Report) measure(ctx context.Context, cfg *Config, workers []*worker, hook *webhookRun) (end time.Time, err error) {
	reads, err := newReadLoad(ctx, cfg)
	if err != nil {
		return time.Time{}, err
	}
	defer reads.close()
	fmt.Fprintf(cfg.Progress, "measuring: %d transfers, %d workers, batch %d, %d readers\n",
		cfg.Transfers, cfg.Concurrency, cfg.Batch, cfg.Readers)
	stopReads := reads.start(ctx)
	r.cpuStart, r.cpuStartErr = r.meter.sample()
	if hook != nil {
		hook.begin()
	}
	start, end := runPhase(ctx, workers, "measure", cfg.Transfers, true)
	if hook != nil {
		hook.end()
	}
	acked, ackedErr := r.meter.sample()
	stopReads()
	if err := ctx.Err(); err != nil {
		return time.Time{}, fmt.Errorf("sending transfers: %w", err)
	}
	r.addLoad(workers, end.Sub(start))
	r.start = start
	switch {
	case r.cpuStartErr != nil:
		r.CPU.Error = r.cpuStartErr.Error()
	case ackedErr != nil:
		r.CPU.Error = ackedErr.Error()
	default:
		r.CPU.Acked = r.meter.window(r.cpuStart, acked, r.Transfers)
	}
	reads.addTo(r, end.Sub(start))
	return end, nil
}

// dial opens n client connections to addr and waits until they are ready.
//
// Errors: a dial error; a connection not ready within connectTimeout.
func dial(ctx context.Context, addr, apiKey string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	closeAll := func() {
		for _, cc := range conns {
			cc.Close()
		}
	}
	for range n {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(messageBytesMax), grpc.MaxCallSendMsgSize(messageBytesMax))}
		if apiKey != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(apikeys.Bearer(apiKey)))
		}
		cc, err := grpc.NewClient(addr, opts...)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		conns = append(conns, cc)
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	for i, cc := range conns {
		cc.Connect()
		for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
			if !cc.WaitForStateChange(ctx, s) {
				closeAll()
				return nil, fmt.Errorf("connection %d to %s is %s after %s: %w", i, addr, s, connectTimeout, ctx.Err())
			}
		}
	}
	return conns, nil
}

// setup defines the asset and opens the accounts, in requests of
// accountsPerOpenMax, and returns the highest position of their events. An
// asset or account that exists with the same fields is fine: the ledger may
// have been prepared by an earlier run.
//
// Errors: ErrSetup; a call's error.
func setup(ctx context.Context, c ledgerv1.CommandServiceClient, cfg *Config) (uint64, error) {
	fmt.Fprintf(cfg.Progress, "setup: ledger %s, asset %s/%d, %d accounts\n", cfg.Ledger, assetCode, assetScale, cfg.Accounts)
	cctx, cancel := context.WithTimeout(ctx, setupCallTimeout)
	resp, err := c.DefineAsset(cctx, &ledgerv1.DefineAssetRequest{Ledger: cfg.Ledger, Code: assetCode, Scale: assetScale})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("define asset %s: %w", assetCode, err)
	}
	if err := setupResult(resp.GetResult()); err != nil {
		return 0, fmt.Errorf("define asset %s: %w", assetCode, err)
	}
	position := resp.GetResult().GetPosition()
	for from := 0; from < cfg.Accounts; from += accountsPerOpenMax {
		req := &ledgerv1.OpenAccountsRequest{Ledger: cfg.Ledger}
		for i := from; i < min(from+accountsPerOpenMax, cfg.Accounts); i++ {
			req.Accounts = append(req.Accounts, &ledgerv1.Account{Id: accountID(i), Asset: assetCode,
				NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT})
		}
		cctx, cancel := context.WithTimeout(ctx, setupCallTimeout)
		resp, err := c.OpenAccounts(cctx, req)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("open accounts from %d: %w", from, err)
		}
		if len(resp.GetResults()) != len(req.Accounts) {
			return 0, fmt.Errorf("open accounts from %d: %d results for %d accounts: %w", from, len(resp.GetResults()), len(req.Accounts), ErrSetup)
		}
		for _, r := range resp.GetResults() {
			if err := setupResult(r); err != nil {
				return 0, fmt.Errorf("open account %s: %w", r.GetId(), err)
			}
			position = max(position, r.GetPosition())
		}
	}
	return position, nil
}

func setupResult(r *ledgerv1.ItemResult) error {
	switch r.GetCode() {
	case ledgerv1.ResultCode_RESULT_CODE_CREATED, ledgerv1.ResultCode_RESULT_CODE_EXISTS:
		return nil
	}
	return fmt.Errorf("%s %s %s: %w", r.GetCode(), r.GetField(), r.GetDetail(), ErrSetup)
}

// lastAck is when the last measured call was answered; end if none was.
func lastAck(workers []*worker, end time.Time) time.Time {
	var last time.Time
	for _, w := range workers {
		if w.lastAck.After(last) {
			last = w.lastAck
		}
	}
	if last.IsZero() {
		return end
	}
	return last
}

// addLoad merges the workers' counts and latencies into r.
func (r *Report) addLoad(workers []*worker, elapsed time.Duration) {
	r.Codes, r.CallErrors = map[string]int64{}, map[string]int64{}
	var latencies []time.Duration
	acked, unknown := new(big.Int), new(big.Int)
	for _, w := range workers {
		r.Transfers += w.sent
		r.Calls += w.calls
		latencies = append(latencies, w.latencies...)
		for k, v := range w.codes {
			r.Codes[k] += v
		}
		for k, v := range w.callErrors {
			r.CallErrors[k] += v
		}
		r.Unknown += w.unknown
		acked.Add(acked, big.NewInt(w.ackedMinor))
		unknown.Add(unknown, big.NewInt(w.unknownMinor))
		r.PositionMax = max(r.PositionMax, w.positionMax)
		if room := failureSamplesMax - len(r.Failures); room > 0 {
			r.Failures = append(r.Failures, w.failures[:min(room, len(w.failures))]...)
		}
	}
	r.ackedMinor = acked
	r.SentAmount = formatMinor(acked, assetScale)
	r.UnknownAmount = formatMinor(unknown, assetScale)
	r.DurationSeconds = elapsed.Seconds()
	if elapsed > 0 {
		r.TransfersPerSecond = float64(r.Transfers) / elapsed.Seconds()
		r.CallsPerSecond = float64(r.Calls) / elapsed.Seconds()
	}
	r.LatencyMs = summarize(latencies)
}

// verify runs the checks and sets r.Pass.
func (r *Report) verify(ctx context.Context, q ledgerv1.QueryServiceClient, cfg *Config, lastAck time.Time) {
	var notCreated int64
	for code, n := range r.Codes {
		if code != ledgerv1.ResultCode_RESULT_CODE_CREATED.String() {
			notCreated += n
		}
	}
	r.check("every transfer CREATED", notCreated == 0 && r.Unknown == 0,
		fmt.Sprintf("%d not created, %d in failed calls", notCreated, r.Unknown))
	if len(r.Reads) > 0 || r.Lag != nil {
		ok, detail := readsAnswered(r.Reads, r.Lag)
		r.check("reads answered", ok, detail)
	}

	caughtUp, err := waitCaughtUp(ctx, q, cfg, r.PositionMax, lastAck)
	if err != nil {
		r.check("projections caught up", false, err.Error())
		return
	}
	r.current(caughtUp, lastAck)
	r.check("projections caught up", true, fmt.Sprintf("position %d: %s after the last ack", r.PositionMax, catchUpText(caughtUp)))

	t, err := readTotals(ctx, q, cfg, r.PositionMax)
	if err != nil {
		r.check("balances read", false, err.Error())
		return
	}
	r.DebitsPosted, r.CreditsPosted = formatMinor(t.debits, assetScale), formatMinor(t.credits, assetScale)
	r.check("debits == credits", t.debits.Cmp(t.credits) == 0,
		fmt.Sprintf("Σ debits_posted %s, Σ credits_posted %s over %d accounts", r.DebitsPosted, r.CreditsPosted, cfg.Accounts))
	r.check("credits == acknowledged", t.credits.Cmp(r.ackedMinor) == 0,
		fmt.Sprintf("Σ credits_posted %s, Σ acknowledged amounts %s (%s more in failed calls)", r.CreditsPosted, r.SentAmount, r.UnknownAmount))
}

// current records when every projection caught up: the catch-up times, the
// sustained rate, and the CPU time up to now (just after the answer that
// showed the last projection caught up).
func (r *Report) current(caughtUp []ProjectionCatchUp, lastAck time.Time) {
	now, err := r.meter.sample()
	r.CatchUp = caughtUp
	for _, c := range caughtUp {
		r.CatchUpMs = max(r.CatchUpMs, c.CatchUpMs)
	}
	sustained := lastAck.Sub(r.start) + time.Duration(r.CatchUpMs*float64(time.Millisecond))
	r.SustainedSeconds = sustained.Seconds()
	if sustained > 0 {
		r.SustainedPerSecond = float64(r.Transfers) / sustained.Seconds()
	}
	switch {
	case r.cpuStartErr != nil:
	case err != nil:
		r.CPU.Error = err.Error()
	default:
		r.CPU.Current = r.meter.window(r.cpuStart, now, r.Transfers)
	}
}

// check records a check; the report passes only if every check does.
func (r *Report) check(name string, pass bool, detail string) {
	if len(r.Checks) == 0 {
		r.Pass = true
	}
	r.Checks = append(r.Checks, Check{Name: name, Pass: pass, Detail: detail})
	r.Pass = r.Pass && pass
}
