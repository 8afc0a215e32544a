package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
)

// Report is the outcome of a run. Counts of codes cover the warmup and the
// measured phase (both are verified); rates and latencies only the measured one.
type Report struct {
	CommandLine  string  `json:"command_line"`
	Config       Config  `json:"config"`
	Conns        int     `json:"conns"`
	SetupSeconds float64 `json:"setup_seconds"`

	// Transfers and Calls were sent in the measured phase.
	Transfers          int64          `json:"transfers"`
	Calls              int64          `json:"calls"`
	DurationSeconds    float64        `json:"duration_seconds"`
	TransfersPerSecond float64        `json:"transfers_per_second"`
	CallsPerSecond     float64        `json:"calls_per_second"`
	LatencyMs          LatencySummary `json:"latency_ms"`

	// Codes counts item results by code.
	Codes map[string]int64 `json:"codes"`
	// CallErrors counts calls that failed as a whole, by gRPC code.
	CallErrors map[string]int64 `json:"call_errors"`
	// Unknown transfers were in failed calls: applied or not, nobody knows.
	Unknown  int64     `json:"unknown"`
	Failures []Failure `json:"failures,omitempty"`

	PositionMax uint64 `json:"position_max"`
	// CatchUpMs is how long after the last ack the projection reached PositionMax.
	CatchUpMs float64 `json:"catch_up_ms"`
	// SentAmount sums the CREATED transfers; UnknownAmount the unknown ones.
	SentAmount    string `json:"sent_amount"`
	UnknownAmount string `json:"unknown_amount"`
	DebitsPosted  string `json:"debits_posted"`
	CreditsPosted string `json:"credits_posted"`

	Checks []Check `json:"checks"`
	Pass   bool    `json:"pass"`

	ackedMinor *big.Int
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
	fmt.Fprintf(&b, "config:      addr=%s ledger=%s transfers=%d warmup=%d accounts=%d concurrency=%d batch=%d hot=%t seed=%d conns=%d\n",
		c.Addr, c.Ledger, c.Transfers, c.Warmup, c.Accounts, c.Concurrency, c.Batch, c.Hot, c.Seed, r.Conns)
	fmt.Fprintf(&b, "setup:       %.2f s\n", r.SetupSeconds)
	fmt.Fprintf(&b, "measured:    %d transfers in %d calls over %.3f s\n", r.Transfers, r.Calls, r.DurationSeconds)
	fmt.Fprintf(&b, "throughput:  %.0f transfers/s, %.0f calls/s\n", r.TransfersPerSecond, r.CallsPerSecond)
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
	fmt.Fprintf(&b, "position:    %d (max acknowledged)\n", r.PositionMax)
	fmt.Fprintf(&b, "catch-up:    %.1f ms after the last ack\n", r.CatchUpMs)
	fmt.Fprintf(&b, "sent:        %s %s acknowledged\n", r.SentAmount, assetCode)
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

// counts writes a map of counts in key order.
func counts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
