package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ledgerd/ledger/internal/ctl"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// TestTraceFromCallToAppend: a traced transfer's gRPC server span links to
// the writer's decide span of its batch, whose child is the append span,
// both naming the positions the batch took, the transfer's among them; the
// relay's publishing and every projector's applying of that position are
// spans with the same attributes.
func TestTraceFromCallToAppend(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := startWith(t, func(m *daemon.Main) { m.TracerProvider = tp })
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	pos := h.transferOK(t, ledger, transfer("traced", "alice", "bob", "1.00", "USD"))

	var call, decide, appendSpan, publish sdktrace.ReadOnlySpan
	projected := map[string]bool{}
	testenv.Eventually(t, 30*time.Second, func() error {
		call, decide, appendSpan, publish = nil, nil, nil, nil
		for _, s := range rec.Ended() {
			switch {
			case s.Name() == "ledger.v1.CommandService/CreateTransfers" && linksTo(s, pos) != nil:
				call = s
			case s.Name() == "ledger.decide" && covers(s, pos):
				decide = s
			case s.Name() == "ledger.append" && covers(s, pos):
				appendSpan = s
			case s.Name() == "ledger.relay.publish" && covers(s, pos):
				publish = s
			case s.Name() == "ledger.project" && covers(s, pos) && s.Status().Code != otelcodes.Error:
				projected[attr(s, "ledger.projection").AsString()] = true
			}
		}
		if call == nil || decide == nil || appendSpan == nil || publish == nil || len(projected) < len(projections.All()) {
			return fmt.Errorf("spans: call %v, decide %v, append %v, relay %v, projections %v; want all for position %d",
				call != nil, decide != nil, appendSpan != nil, publish != nil, projected, pos)
		}
		return nil
	})
	if l := linksTo(call, pos); l.SpanContext.SpanID() != decide.SpanContext().SpanID() {
		t.Errorf("the call links to span %s, want the decide span %s", l.SpanContext.SpanID(), decide.SpanContext().SpanID())
	}
	if appendSpan.Parent().SpanID() != decide.SpanContext().SpanID() || appendSpan.SpanContext().TraceID() != decide.SpanContext().TraceID() {
		t.Errorf("the append span's parent is %s, want the decide span %s", appendSpan.Parent().SpanID(), decide.SpanContext().SpanID())
	}
	linked := false
	for _, l := range decide.Links() {
		linked = linked || l.SpanContext.SpanID() == call.SpanContext().SpanID()
	}
	if !linked {
		t.Errorf("the decide span has no link to the call's span")
	}
	if got := attr(decide, "ledger.name"); got.AsString() != ledger {
		t.Errorf("decide span's ledger.name %q, want %q", got.AsString(), ledger)
	}
}

// TestLogRecordsCarryTraceIDs: a record logged with a traced context names
// its trace and span, in JSON as ledgerd -log-format json writes it.
func TestLogRecordsCarryTraceIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(daemon.TraceLogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "op")
	logger.InfoContext(ctx, "traced")
	span.End()
	logger.Info("untraced")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines logged, want 2:\n%s", len(lines), buf.String())
	}
	var traced, untraced map[string]any
	testenv.NoError(t, json.Unmarshal(lines[0], &traced))
	testenv.NoError(t, json.Unmarshal(lines[1], &untraced))
	if traced["trace_id"] != span.SpanContext().TraceID().String() || traced["span_id"] != span.SpanContext().SpanID().String() ||
		traced["component"] != "test" {
		t.Errorf("traced record %v, want trace_id %s, span_id %s and the logger's attributes", traced, span.SpanContext().TraceID(), span.SpanContext().SpanID())
	}
	if _, ok := untraced["trace_id"]; ok {
		t.Errorf("untraced record %v has a trace_id", untraced)
	}
}

// TestTracedCtlCallInTheLog: ledgerctl --trace prints the trace id it sent,
// and a ledgerd with -otlp-endpoint log writes the call's server span under
// that trace id, linked to the writer's batch, whose decide and append
// spans are in the log too: the README tour's traced request.
func TestTracedCtlCallInTheLog(t *testing.T) {
	t.Parallel()
	var logBuf testenv.LockedBuffer
	h := startWith(t, func(m *daemon.Main) {
		m.Config.OTLPEndpoint = daemon.OTLPEndpointLog
		m.Logger = slog.New(slog.NewJSONHandler(&logBuf, nil))
	})
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	var out, errOut bytes.Buffer
	env := map[string]string{"LEDGER_ADDR": h.m.GRPCAddr(), "LEDGER_API_KEY": h.key, "LEDGER_LEDGER": ledger}
	if code := ctl.Run(context.Background(), []string{"--trace", "transfer", "--id", "traced-ctl", "--from", "alice", "--to", "bob",
		"--amount", "1.00", "--asset", "USD"}, func(k string) string { return env[k] }, &out, &errOut); code != 0 {
		t.Fatalf("ledgerctl --trace transfer: exit %d: %s", code, errOut.String())
	}
	var traceID string
	if _, err := fmt.Sscanf(errOut.String(), "trace %s", &traceID); err != nil || len(traceID) != 32 {
		t.Fatalf("ledgerctl --trace printed %q, want \"trace <32 hex digits>\"", errOut.String())
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		spans := map[string]map[string]any{} // by name, of this trace or its batch
		var batch string
		for _, line := range bytes.Split(logBuf.Bytes(), []byte("\n")) {
			var rec map[string]any
			if json.Unmarshal(line, &rec) != nil || rec["msg"] != "span" {
				continue
			}
			if rec["trace_id"] == traceID {
				spans[rec["name"].(string)] = rec
				if l, ok := rec["link"].(string); ok {
					batch, _, _ = strings.Cut(l, "/")
				}
			}
		}
		call := spans["ledger.v1.CommandService/CreateTransfers"]
		if call == nil || batch == "" {
			return fmt.Errorf("no CreateTransfers span linked to a batch under trace %s in the log", traceID)
		}
		for _, line := range bytes.Split(logBuf.Bytes(), []byte("\n")) {
			var rec map[string]any
			if json.Unmarshal(line, &rec) == nil && rec["msg"] == "span" && rec["trace_id"] == batch {
				spans[rec["name"].(string)] = rec
			}
		}
		if spans["ledger.decide"] == nil || spans["ledger.append"] == nil || spans["ledger.append"]["ledger.name"] != ledger {
			return fmt.Errorf("the batch's decide and append spans of %s are not in the log (trace %s)", ledger, batch)
		}
		return nil
	})
}

// linksTo returns s's link to a batch whose positions cover pos, or nil.
func linksTo(s sdktrace.ReadOnlySpan, pos uint64) *sdktrace.Link {
	for _, l := range s.Links() {
		if inRange(l.Attributes, pos) {
			return &l
		}
	}
	return nil
}

func covers(s sdktrace.ReadOnlySpan, pos uint64) bool { return inRange(s.Attributes(), pos) }

func inRange(kvs []attribute.KeyValue, pos uint64) bool {
	var first, last int64 = -1, -1
	for _, kv := range kvs {
		switch kv.Key {
		case "ledger.position.first":
			first = kv.Value.AsInt64()
		case "ledger.position.last":
			last = kv.Value.AsInt64()
		}
	}
	return first >= 0 && first <= int64(pos) && int64(pos) <= last
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}
