package commands

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ledgerd/ledger/internal/tracing"
)

// traceLinksMax bounds the links from a batch's span to the spans of the
// requests it serves (a batch may serve thousands).
const traceLinksMax = 128

// Span attributes that tie a batch's spans to the requests, the relay's and
// the projectors' spans: a transfer's trace is found by its position.
const (
	attrLedger        = attribute.Key("ledger.name")
	attrPositionFirst = attribute.Key("ledger.position.first")
	attrPositionLast  = attribute.Key("ledger.position.last")
	attrEvents        = attribute.Key("ledger.events")
	attrCommands      = attribute.Key("ledger.commands")
)

// startDecide starts the span of deciding one batch, linked to the spans of
// the requests it serves; a no-op span without Options.Tracer.
func (w *Writer) startDecide(reqs []*request) trace.Span {
	if w.opts.Tracer == nil {
		return trace.SpanFromContext(context.Background())
	}
	links := make([]trace.Link, 0, min(len(reqs), traceLinksMax))
	n := 0
	for _, r := range reqs {
		n += len(r.cmds)
		if sc := trace.SpanContextFromContext(r.ctx); sc.IsValid() && len(links) < traceLinksMax {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	_, span := w.opts.Tracer.Start(context.Background(), "ledger.decide", trace.WithLinks(links...),
		trace.WithAttributes(attrLedger.String(w.opts.Ledger), attrCommands.Int(n)))
	return span
}

// endDecide ends a batch's decide span with the positions its events take,
// and tells each request's span where its batch went; the append span will
// be the decide span's child (j.span).
func (w *Writer) endDecide(span trace.Span, j *job, err error) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		tracing.End(span, err)
		return
	}
	span.SetAttributes(attrEvents.Int(len(j.recs)))
	if len(j.recs) > 0 {
		first, last := attrPositionFirst.Int64(int64(j.recs[0].Position)), attrPositionLast.Int64(int64(j.recs[len(j.recs)-1].Position))
		span.SetAttributes(first, last)
		link := trace.Link{SpanContext: span.SpanContext(), Attributes: []attribute.KeyValue{first, last}}
		for _, r := range j.reqs {
			if rs := trace.SpanFromContext(r.ctx); rs.IsRecording() {
				rs.AddLink(link)
			}
		}
	}
	j.span = span.SpanContext()
	span.End()
}

// startAppend starts the span of a batch's append, the child of its decide
// span; a no-op span without Options.Tracer.
func (w *Writer) startAppend(j *job) trace.Span {
	if w.opts.Tracer == nil || !j.span.IsValid() {
		return trace.SpanFromContext(context.Background())
	}
	ctx := trace.ContextWithSpanContext(context.Background(), j.span)
	_, span := w.opts.Tracer.Start(ctx, "ledger.append", trace.WithAttributes(attrLedger.String(w.opts.Ledger),
		attrEvents.Int(len(j.recs)), attrPositionFirst.Int64(int64(j.expected+1)),
		attrPositionLast.Int64(int64(j.expected)+int64(len(j.recs)))))
	return span
}
