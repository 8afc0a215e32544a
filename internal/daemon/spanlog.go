package daemon

import (
	"context"
	"log/slog"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// OTLPEndpointLog is the -otlp-endpoint that writes each span to ledgerd's
// own log instead of sending it anywhere: a trace seen without a collector
// (the README's tour), not a production exporter.
const OTLPEndpointLog = "log"

// spanLogLinksMax bounds the links one span's log line lists (a writer's
// batch links to up to 128 calls).
const spanLogLinksMax = 8

// spanLogExporter logs each ended span as one record: its name, ids,
// duration, attributes and the spans it links to.
type spanLogExporter struct{ logger *slog.Logger }

func (e spanLogExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	for _, s := range spans {
		attrs := []slog.Attr{
			slog.String("name", s.Name()),
			slog.String("trace_id", s.SpanContext().TraceID().String()),
			slog.String("span_id", s.SpanContext().SpanID().String()),
			slog.Duration("duration", s.EndTime().Sub(s.StartTime())),
		}
		if p := s.Parent(); p.IsValid() {
			attrs = append(attrs, slog.String("parent_span_id", p.SpanID().String()))
		}
		if st := s.Status(); st.Description != "" {
			attrs = append(attrs, slog.String("error", st.Description))
		}
		for _, kv := range s.Attributes() {
			attrs = append(attrs, slog.String(string(kv.Key), kv.Value.String()))
		}
		links := s.Links()
		for i, l := range links[:min(len(links), spanLogLinksMax)] {
			if i == 0 {
				attrs = append(attrs, slog.Int("links", len(links)))
			}
			attrs = append(attrs, slog.String("link", l.SpanContext.TraceID().String()+"/"+l.SpanContext.SpanID().String()))
		}
		e.logger.LogAttrs(ctx, slog.LevelInfo, "span", attrs...)
	}
	return nil
}

func (spanLogExporter) Shutdown(context.Context) error { return nil }
