package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Report is the outcome of a run. Counts of codes cover the warmup and the
// measured phase (both are verified); rates and latencies only the measured one.
type Report struct {
	CommandLine  string  `json:"command_line"`
	Config       Config  `json:"config"`
	Conns        int     `json:"conns"`
	SetupSeconds float64 `json:"setup_seconds"`

	// Transfers and Calls were sent in the measured phase.
	Transfers int64 `json:"transfers"`
	Calls     int64 `json:"calls"`
	// DurationSeconds runs from the first transfer sent to the last answer;
	// TransfersPerSecond, the acknowledged rate, is Transfers over it.
	DurationSeconds    float64 `json:"duration_seconds"`
	TransfersPerSecond float64 `json:"transfers_per_second"`
	// SustainedSeconds runs from the first transfer sent until every
	// projection was seen at the last acknowledged position: every read
	// model current. SustainedPerSecond is Transfers over it (0 when the
	// projections did not catch up).
	SustainedSeconds   float64        `json:"sustained_seconds"`
	SustainedPerSecond float64        `json:"sustained_per_second"`
	CallsPerSecond     float64        `json:"calls_per_second"`
	LatencyMs          LatencySummary `json:"latency_ms"`

	// Codes counts item results by code.
	Codes map[string]int64 `json:"codes"`
	// CallErrors counts calls that failed as a whole, by gRPC code.
	CallErrors map[string]int64 `json:"call_errors"`
	// Unknown transfers were in failed calls: applied or not, nobody knows.
	Unknown  int64     `json:"unknown"`
	Failures []Failure `json:"failures,omitempty"`

	// Reads are the queries sent while the measured phase wrote, by kind;
	// Lag the projections' lag sampled meanwhile (nil when not sampled).
	Reads []ReadSummary `json:"reads,omitempty"`
	Lag   *LagReport    `json:"lag,omitempty"`

	PositionMax uint64 `json:"position_max"`
	// CatchUpMs is how long after the last ack the slowest projection was
	// seen at PositionMax; CatchUp has each projection's time.
	CatchUpMs float64             `json:"catch_up_ms"`
	CatchUp   []ProjectionCatchUp `json:"catch_up,omitempty"`
	// SentAmount sums the CREATED transfers; UnknownAmount the unknown ones.
	SentAmount    string `json:"sent_amount"`
	UnknownAmount string `json:"unknown_amount"`
	DebitsPosted  string `json:"debits_posted"`
	CreditsPosted string `json:"credits_posted"`

	// CPU is the CPU time of ledgerd, PostgreSQL, NATS and ledgerbench per
	// transfer; Naive the naive baseline's run (nil without one).
	CPU   *CPUReport   `json:"cpu,omitempty"`
	Naive *NaiveReport `json:"naive,omitempty"`
	// Webhook is -webhook-stall's outcome (nil without it).
	Webhook *WebhookReport `json:"webhook,omitempty"`

	Checks []Check `json:"checks"`
	Pass   bool    `json:"pass"`

	ackedMinor *big.Int
	meter      *cpuMeter
	// start is when the measured phase began; cpuStart the CPU time then.
	start       time.Time
	cpuStart    cpuSample
	cpuStartErr error
}

// WriteJSON writes r as one indented JSON object.
//
// Errors: out's.
func (r Report) WriteJSON(out io.Writer) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteText writes r for people.
//
// Errors: out's.
func (r Report) WriteText(out io.Writer) error {
	var b strings.Builder
	c := r.Config
	l := r.LatencyMs
	fmt.Fprintf(&b, "command:     %s\n", r.CommandLine)
	fmt.Fprintf(&b, "config:      addr=%s ledger=%s transfers=%d warmup=%d accounts=%d concurrency=%d batch=%d auto-batch=%t hot=%t seed=%d conns=%d"+
		" readers=%d read-kind=%s lag-every=%s\n",
		c.Addr, c.Ledger, c.Transfers, c.Warmup, c.Accounts, c.Concurrency, c.Batch, c.AutoBatch, c.Hot, c.Seed, r.Conns,
		c.Readers, c.ReadKind, c.LagEvery)
	if c.Rate > 0 {
		fmt.Fprintf(&b, "rate:        %d transfers/s asked (paced)\n", c.Rate)
	}
	fmt.Fprintf(&b, "setup:       %.2f s\n", r.SetupSeconds)
	if c.Duration > 0 {
		fmt.Fprintf(&b, "duration:    %s at most\n", c.Duration)
	}
	fmt.Fprintf(&b, "measured:    %d transfers in %d calls over %.3f s\n", r.Transfers, r.Calls, r.DurationSeconds)
	fmt.Fprintf(&b, "throughput:  %.0f transfers/s acknowledged, %.0f calls/s\n", r.TransfersPerSecond, r.CallsPerSecond)
	if r.SustainedPerSecond > 0 {
		fmt.Fprintf(&b, "sustained:   %.0f transfers/s with every read model current (%.3f s from the first transfer sent "+
			"until every projection had applied the last ack)\n", r.SustainedPerSecond, r.SustainedSeconds)
	}
	fmt.Fprintf(&b, "latency ms:  p50 %.3f  p99 %.3f  p999 %.3f  max %.3f  mean %.3f  (%d calls)\n",
		l.P50, l.P99, l.P999, l.Max, l.Mean, l.Count)
	fmt.Fprintf(&b, "results:     %s\n", counts(r.Codes))
	if len(r.CallErrors) > 0 {
		fmt.Fprintf(&b, "call errors: %s (%d transfers unknown)\n", counts(r.CallErrors), r.Unknown)
	}
	for _, f := range r.Failures {
		what := strings.TrimSpace(f.ID + " " + f.Code)
		if f.Field != "" {
			what += " field=" + f.Field
		}
		fmt.Fprintf(&b, "  failure:   %s: %s\n", what, f.Detail)
	}
	writeReads(&b, r.Reads)
	writeLag(&b, r.Lag)
	fmt.Fprintf(&b, "position:    %d (max acknowledged)\n", r.PositionMax)
	fmt.Fprintf(&b, "catch-up:    %.1f ms after the last ack (slowest projection)\n", r.CatchUpMs)
	if len(r.CatchUp) > 0 {
		fmt.Fprintf(&b, "  each:      %s\n", catchUpText(r.CatchUp))
	}
	fmt.Fprintf(&b, "sent:        %s %s acknowledged\n", r.SentAmount, assetCode)
	writeCPU(&b, r.CPU)
	writeNaive(&b, r.Naive)
	writeWebhook(&b, r.Webhook)
	for _, ch := range r.Checks {
		verdict := "FAIL"
		if ch.Pass {
			verdict = "PASS"
		}
		fmt.Fprintf(&b, "%s %s: %s\n", verdict, ch.Name, ch.Detail)
	}
	if r.Pass {
		b.WriteString("RESULT PASS\n")
	} else {
		b.WriteString("RESULT FAIL\n")
	}
	if _, err := io.WriteString(out, b.String()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// writeCPU writes the CPU time per transfer of each window.
func writeCPU(b *strings.Builder, cpu *CPUReport) {
	if cpu == nil {
		return
	}
	fmt.Fprintf(b, "cpu:         µs per transfer, from /proc (%d clock ticks/s, %s)\n", cpu.ClockTicksPerSecond, cpu.ClockTicksSource)
	if w := cpu.Acked; w != nil {
		if _, ok := w.Process(procNATS); !ok {
			b.WriteString("  note:      no -nats-pid: an embedded NATS server runs inside ledgerd and counts in its figure\n")
		}
	}
	writeCPUWindow(b, "to last ack", cpu.Acked)
	writeCPUWindow(b, "read models current", cpu.Current)
	if cpu.Error != "" {
		fmt.Fprintf(b, "  error:     %s\n", cpu.Error)
	}
}

// writeCPUWindow writes one window's line: each process, then the total.
func writeCPUWindow(b *strings.Builder, name string, w *CPUWindow) {
	if w == nil {
		return
	}
	fmt.Fprintf(b, "  %s:", name)
	for _, p := range w.Processes {
		fmt.Fprintf(b, " %s %.1f (%.2f cores)", p.Name, p.UsPerTransfer, p.Cores)
	}
	fmt.Fprintf(b, "; total %.1f µs over %.3f s\n", w.TotalUsPerTransfer, w.Seconds)
}

// writeNaive writes the naive baseline's figures and the ratios.
func writeNaive(b *strings.Builder, n *NaiveReport) {
	if n == nil {
		return
	}
	l := n.LatencyMs
	fmt.Fprintf(b, "naive:       %.0f transfers/s (%d committed in %.3f s, %d workers on %d connections, database %s), "+
		"latency ms p50 %.3f  p99 %.3f\n", n.TransfersPerSecond, n.Committed, n.DurationSeconds, n.Concurrency, n.Conns, n.Database, l.P50, l.P99)
	if pg, ok := n.CPU.Process(procPostgres); ok {
		fmt.Fprintf(b, "  cpu:       postgres %.1f µs per transfer; total %.1f\n", pg.UsPerTransfer, n.CPU.TotalUsPerTransfer)
	}
	fmt.Fprintf(b, "  ratio:     ledger/naive %.2fx acknowledged, %.2fx with every read model current\n", n.RatioAcked, n.RatioSustained)
}

// writeWebhook writes what the stalled receiver got and the write rates
// around the stall.
func writeWebhook(b *strings.Builder, w *WebhookReport) {
	if w == nil {
		return
	}
	pattern := w.AccountPattern
	if pattern == "" {
		pattern = "(every event)"
	}
	fmt.Fprintf(b, "webhook:     subscription %s from position %d, accounts %s; receiver refused %.0f s from the start of the load: "+
		"%d requests (%d answered 503, %d held until the sender gave up, %d bad signatures, %d answered after the sender gave up)\n",
		w.Subscription, w.FromPosition, pattern, w.StallSeconds, w.Attempts, w.Refused, w.Hung, w.BadSignatures, w.Late)
	d := w.Deliveries
	fmt.Fprintf(b, "  delivered: %d of %d covered transfers, %d 2xx answers; backlog at the stall's end %d: first delivery %s after it, "+
		"all %s after it; last delivery %s after the last ack (waited %.1f s)\n",
		d.Delivered, d.Expected, d.Accepted, w.Backlog, secondsOrNever(w.FirstDeliverySeconds), secondsOrNever(w.DrainSeconds),
		secondsOrNever(w.LastDeliverySeconds), w.WaitedSeconds)
	for _, s := range d.Samples {
		fmt.Fprintf(b, "  wrong:     %s\n", s)
	}
	for _, win := range w.Windows {
		fmt.Fprintf(b, "  writes:    %.0f transfers/s %s (%.0f transfers over %.1f s from %.1f s)\n",
			win.PerSecond, win.Name, win.Transfers, win.Seconds, win.FromS)
	}
	if w.RatioStallToAfter > 0 {
		fmt.Fprintf(b, "  ratio:     %.2f (writes during the stall / after it)\n", w.RatioStallToAfter)
	}
}

func secondsOrNever(s float64) string {
	if s < 0 {
		return "never"
	}
	return fmt.Sprintf("%.1f s", s)
}

// writeReads writes a line per kind of read.
func writeReads(b *strings.Builder, reads []ReadSummary) {
	for _, s := range reads {
		l := s.LatencyMs
		fmt.Fprintf(b, "reads:       %s: %d readers, %d calls, %.0f qps, ms p50 %.3f  p99 %.3f  p999 %.3f  max %.3f, %d errors",
			s.Kind, s.Readers, s.Calls, s.QueriesPerSecond, l.P50, l.P99, l.P999, l.Max, s.Errors)
		if s.Errors > 0 {
			fmt.Fprintf(b, " (%s; %s)", counts(s.ErrorCodes), s.ErrorSample)
		}
		b.WriteString("\n")
	}
}

// writeLag writes the sampled lag, a line per projection, and what it means.
func writeLag(b *strings.Builder, lag *LagReport) {
	if lag == nil {
		return
	}
	fmt.Fprintf(b, "lag:         GetProjectionStatus every %.0f ms while writing: %d samples, %d errors", lag.EveryMs, lag.Samples, lag.Errors)
	if lag.Errors > 0 {
		fmt.Fprintf(b, " (%s)", lag.ErrorSample)
	}
	if lag.Dropped > 0 {
		fmt.Fprintf(b, ", %d projection samples over the bounds left out", lag.Dropped)
	}
	b.WriteString("\n")
	for _, p := range lag.Projections {
		fmt.Fprintf(b, "  %-10s lag ms p50 %.1f  p99 %.1f  max %.1f; lag positions p50 %d  p99 %d  max %d (%d samples)\n",
			p.Projection+":", p.LagMsP50, p.LagMsP99, p.LagMsMax, p.LagPositionsP50, p.LagPositionsP99, p.LagPositionsMax, p.Samples)
	}
	fmt.Fprintf(b, "  meaning:   %s\n", lagMeaningShort)
}

// lagMeaningShort is LagMeaning in a line.
const lagMeaningShort = "lag ms = recorded time of the head event - that of the checkpoint event (writer's clock): " +
	"log time still to apply, not wall-clock staleness; lag positions = head - checkpoint"

// catchUpText lists the projections' catch-up times.
func catchUpText(caughtUp []ProjectionCatchUp) string {
	parts := make([]string, len(caughtUp))
	for i, c := range caughtUp {
		parts[i] = fmt.Sprintf("%s %.1f ms", c.Projection, c.CatchUpMs)
	}
	return strings.Join(parts, ", ")
}

// readsAnswered says whether no read and no lag sample failed, and how many
// were answered.
func readsAnswered(reads []ReadSummary, lag *LagReport) (bool, string) {
	ok := true
	var parts []string
	for _, s := range reads {
		ok = ok && s.Errors == 0
		parts = append(parts, fmt.Sprintf("%s %d calls, %d errors", s.Kind, s.Calls, s.Errors))
	}
	if lag != nil {
		ok = ok && lag.Errors == 0
		parts = append(parts, fmt.Sprintf("GetProjectionStatus %d samples, %d errors", lag.Samples, lag.Errors))
	}
	return ok, strings.Join(parts, "; ")
}

// counts writes a map of counts in key order.
func counts(m map[string]int64) string {
	keys := sortedKeys(m)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
