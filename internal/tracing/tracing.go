// Package tracing holds what ledgerd's traced components (the writer, the
// relay, the projectors) share about their spans.
package tracing

import (
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// End ends span, with err recorded as its error status when err is not nil.
// A span that does not record (no tracer) costs nothing but the call.
func End(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
