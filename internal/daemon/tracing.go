package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/ledgerd/ledger/internal/version"
)

// tracerName names the spans ledgerd makes itself (decide, append).
const tracerName = "github.com/ledgerd/ledger"

// traceShutdownTimeout bounds the flush of the spans still buffered at close.
const traceShutdownTimeout = 5 * time.Second

// startTracing sets m.tracer: Main.TracerProvider when given (tests pass one
// with an in-memory exporter), else an OTLP/gRPC exporter to
// Config.OTLPEndpoint (ledgerd's own log when it is OTLPEndpointLog), else
// none (no spans, no cost on the hot path).
func (m *Main) startTracing(ctx context.Context) error {
	tp := m.TracerProvider
	if tp == nil && m.Config.OTLPEndpoint != "" {
		var exp sdktrace.SpanExporter = spanLogExporter{m.Logger}
		if m.Config.OTLPEndpoint != OTLPEndpointLog {
			var err error
			if exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(m.Config.OTLPEndpoint)); err != nil {
				return fmt.Errorf("OTLP exporter to %s: %w", m.Config.OTLPEndpoint, err)
			}
		}
		res := resource.NewSchemaless(semconv.ServiceName("ledgerd"), semconv.ServiceVersion(version.Get().Version))
		sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		m.ownTracing = sdk
		tp = sdk
		m.Logger.Info("tracing: spans to "+m.Config.OTLPEndpoint, "endpoint", m.Config.OTLPEndpoint)
	}
	if tp != nil {
		m.tracerProvider = tp
		m.tracer = tp.Tracer(tracerName, trace.WithInstrumentationVersion(version.Get().Version))
	}
	return nil
}

// traceContext carries W3C trace context (traceparent) in gRPC metadata.
var traceContext = propagation.TraceContext{}

// tracingServerOptions trace every gRPC call when tracing is on: the
// server span is the parent of what the handler does, and the request's
// span gets a link to the writer's batch that served it.
func (m *Main) tracingServerOptions() []grpc.ServerOption {
	if m.tracerProvider == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(m.tracerProvider), otelgrpc.WithPropagators(traceContext)))}
}

// tracingDialOptions make the REST gateway's calls client spans, so a REST
// request is traced from the gateway on.
func (m *Main) tracingDialOptions() []grpc.DialOption {
	if m.tracerProvider == nil {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(m.tracerProvider), otelgrpc.WithPropagators(traceContext)))}
}

// stopTracing flushes and stops the exporter ledgerd made (not one it was
// given).
func (m *Main) stopTracing() {
	if m.ownTracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), traceShutdownTimeout)
	defer cancel()
	if err := m.ownTracing.Shutdown(ctx); err != nil {
		m.Logger.Warn("tracing: spans lost at shutdown", "err", err)
	}
}

// traceLogHandler adds the trace and span ids of the record's context to
// every log record logged with one (slog's *Context methods), so that a log
// line is found from its trace and the other way round.
type traceLogHandler struct{ slog.Handler }

// TraceLogHandler wraps h so that records logged with a context holding a
// span carry trace_id and span_id.
func TraceLogHandler(h slog.Handler) slog.Handler { return traceLogHandler{h} }

func (h traceLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceLogHandler{h.Handler.WithAttrs(as)}
}
func (h traceLogHandler) WithGroup(name string) slog.Handler {
	return traceLogHandler{h.Handler.WithGroup(name)}
}
