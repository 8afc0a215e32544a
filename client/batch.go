package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// batchBytesMax bounds a batch's encoded transfers: half of ledgerd's
// bound of a CreateTransfers message (grpcapi.RecvMaxLarge, 64 MiB), so
// that 8,192 large transfers are sent as several requests instead of one
// that ledgerd refuses for every caller in it. transferFramingBytes is a
// repeated field's tag and length prefix, at most.
const (
	batchBytesMax        = 32 << 20
	transferFramingBytes = 6
)

// ledgerd's bounds of one transfer (domain.PostingsPerTransfer,
// domain.MetadataKeysMax). ledgerd counts a request's postings and
// metadata keys before decoding it, against 8,192 transfers' worth: a
// transfer over its own bounds may hold more than that alone, and would
// fail every caller batched with it. It goes in a batch of its own, whose
// answer is its own.
const (
	transferPostingsMax     = 64
	transferMetadataKeysMax = 32
)

// Bounds of BatchOptions.
const (
	// BatchItemsMax is ledgerd's bound of items per command request.
	BatchItemsMax = 8192
	// BatchLingerMax bounds Linger: a batch that waits longer only adds
	// latency; the in-flight batches already make the next one grow.
	BatchLingerMax = time.Second
	// BatchInFlightMax bounds InFlightMax: each in-flight batch is one call
	// queued at the ledger's single writer, which takes them in turn.
	BatchInFlightMax = 64
	// BatchQueueMax bounds QueueMax (transfers, each up to ~10 KiB).
	BatchQueueMax = 1 << 20
	// BatchCallTimeoutMax bounds CallTimeout.
	BatchCallTimeoutMax = 10 * time.Minute
)

// ErrClosed is CreateTransfer's answer once Close was called.
var ErrClosed = errors.New("client closed")

// BatchOptions bound CreateTransfer's batching, per ledger.
//
// A ledger's transfers queue in arrival order. A batch of up to MaxBatch
// goes as soon as fewer than InFlightMax batches of that ledger are in
// flight: with none in flight, after Linger (0: at once); otherwise when one
// returns. Callers arriving while batches are in flight therefore make the
// next batch together, with no added wait: batching grows with the load by
// itself.
type BatchOptions struct {
	// MaxBatch bounds the transfers of one CreateTransfers request,
	// 1..BatchItemsMax.
	MaxBatch int
	// Linger is how long a ledger's first transfer waits for others when
	// none of its batches is in flight, 0..BatchLingerMax.
	Linger time.Duration
	// InFlightMax bounds a ledger's batches in flight, 1..BatchInFlightMax.
	InFlightMax int
	// QueueMax bounds a ledger's transfers waiting to be sent,
	// MaxBatch..BatchQueueMax. When it is full, CreateTransfer waits for
	// room (bounded by its context) or, with FailWhenFull, fails at once
	// with codes.ResourceExhausted.
	QueueMax     int
	FailWhenFull bool
	// CallTimeout bounds one batch's call, retries included
	// (0 < CallTimeout <= BatchCallTimeoutMax): a batch serves many callers,
	// so no caller's context bounds it.
	CallTimeout time.Duration
}

// DefaultBatchOptions: batches of up to 1,000, two in flight per ledger, no
// linger, 16,384 queued per ledger.
var DefaultBatchOptions = BatchOptions{
	MaxBatch:    1000,
	InFlightMax: 2,
	QueueMax:    16384,
	CallTimeout: time.Minute,
}

func (o BatchOptions) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("BatchOptions."+format+": %w", append(a, ErrInvalidOption)...)
	}
	switch {
	case o.MaxBatch < 1 || o.MaxBatch > BatchItemsMax:
		return bad("MaxBatch %d, want 1..%d", o.MaxBatch, BatchItemsMax)
	case o.Linger < 0 || o.Linger > BatchLingerMax:
		return bad("Linger %s, want 0..%s", o.Linger, BatchLingerMax)
	case o.InFlightMax < 1 || o.InFlightMax > BatchInFlightMax:
		return bad("InFlightMax %d, want 1..%d", o.InFlightMax, BatchInFlightMax)
	case o.QueueMax < o.MaxBatch || o.QueueMax > BatchQueueMax:
		return bad("QueueMax %d, want MaxBatch (%d)..%d", o.QueueMax, o.MaxBatch, BatchQueueMax)
	case o.CallTimeout <= 0 || o.CallTimeout > BatchCallTimeoutMax:
		return bad("CallTimeout %s, want 0..%s (exclusive of 0)", o.CallTimeout, BatchCallTimeoutMax)
	}
	return nil
}

// CreateTransfer records one transfer in ledger, sent in a batch with the
// other goroutines' transfers of that ledger (BatchOptions), never
// atomically with them: its result is its own, as if it had been sent alone
// (Index 0). t must not change until CreateTransfer returns; the batch sends
// a copy, so the caller may reuse t afterwards, even when its context ended
// while the batch was being sent. A transfer over ledgerd's bounds of one
// (64 postings, 32 metadata keys) is sent in a batch of its own: ledgerd's
// answer to it is its caller's alone.
//
// When ctx ends first, CreateTransfer returns at once. If t was still
// queued it is not sent; if its batch was already sent, t may have been
// applied: send it again with the same id to learn its result (EXISTS
// when it was).
//
// Errors: ErrClosed; codes.InvalidArgument for a nil t, or one that could
// not be sent (a malformed effective_at, a text that is not UTF-8); ctx's
// error as a gRPC status (Canceled, DeadlineExceeded), and then t was not
// sent if ctx had ended before the call; codes.ResourceExhausted when the
// ledger's queue is full and FailWhenFull is set; the batch's call error
// (after retries), which every transfer of the batch gets.
func (c *Client) CreateTransfer(ctx context.Context, ledger string, t *ledgerv1.Transfer) (*ledgerv1.ItemResult, error) {
	if t == nil {
		return nil, status.Error(codes.InvalidArgument, "transfer: nil")
	}
	// A call whose context has ended is not sent, as gRPC sends none.
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	// What would fail a whole request, not one item (ledgerd refuses a
	// malformed timestamp; gRPC cannot encode a string that is not UTF-8),
	// is caught here: it fails this caller alone, not its batch.
	if ts := t.GetEffectiveAt(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, status.Error(codes.InvalidArgument, "effective_at: "+err.Error())
		}
	}
	if field := notUTF8(t.ProtoReflect()); field != "" {
		return nil, status.Errorf(codes.InvalidArgument, "%s: not valid UTF-8", field)
	}
	// A copy: t is the caller's again once CreateTransfer returns (its
	// context may end while the batch is sent), and a retry of the batch
	// must send what was sent, not what the caller put there since.
	w := &waiter{transfer: proto.CloneOf(t), done: make(chan struct{})}
	if err := c.batches.enqueue(ctx, ledger, w); err != nil {
		return nil, err
	}
	select {
	case <-w.done:
		return w.result, w.err
	case <-ctx.Done():
		if c.batches.abandon(ledger, w) {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		// Already sent: its answer may be here by now.
		select {
		case <-w.done:
			return w.result, w.err
		default:
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

// waiter is one CreateTransfer call waiting for its result. sent and
// abandoned are guarded by batcher.mu; result and err are written before
// done is closed.
type waiter struct {
	transfer  *ledgerv1.Transfer
	sent      bool
	abandoned bool
	done      chan struct{}
	result    *ledgerv1.ItemResult
	err       error
}

// batcher coalesces CreateTransfer calls into batches, one lane per ledger.
//
// One mutex guards every lane: the work under it is appending to a slice or
// taking a batch off it, small next to a call.
type batcher struct {
	cmd ledgerv1.CommandServiceClient
	opt BatchOptions
	// sends counts the batches in flight and the Linger timers running,
	// for close.
	sends sync.WaitGroup

	mu     sync.Mutex
	lanes  map[string]*lane
	closed bool
}

// lane is one ledger's queue. It is removed from batcher.lanes when it has
// nothing queued, in flight or lingering, so idle ledgers cost nothing.
type lane struct {
	ledger   string
	queue    []*waiter // arrival order; abandoned ones are skipped when taken
	inFlight int
	// lingering is set while a Linger timer runs; lingered once it fired,
	// until the next batch is taken.
	lingering, lingered bool
	timer               *time.Timer // the Linger timer, while lingering
	// room is closed (and replaced) whenever the queue shrinks: it wakes
	// the callers waiting for room.
	room chan struct{}
}

func newBatcher(cmd ledgerv1.CommandServiceClient, opt BatchOptions) *batcher {
	return &batcher{cmd: cmd, opt: opt, lanes: map[string]*lane{}}
}

// enqueue queues w in ledger's lane, waiting for room while it is full, and
// starts a batch if one may go.
func (b *batcher) enqueue(ctx context.Context, ledger string, w *waiter) error {
	b.mu.Lock()
	for {
		if b.closed {
			b.mu.Unlock()
			return ErrClosed
		}
		if err := ctx.Err(); err != nil {
			// Ended while it waited for room: not queued, so never sent.
			b.mu.Unlock()
			return status.FromContextError(err).Err()
		}
		l := b.lane(ledger)
		if len(l.queue) < b.opt.QueueMax {
			l.queue = append(l.queue, w)
			b.dispatch(l)
			b.mu.Unlock()
			return nil
		}
		if b.opt.FailWhenFull {
			b.mu.Unlock()
			return status.Errorf(codes.ResourceExhausted, "ledger %s: %d transfers queued in the client (BatchOptions.QueueMax)", ledger, b.opt.QueueMax)
		}
		room := l.room
		b.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		b.mu.Lock()
	}
}

// lane returns ledger's lane, made on first use. b.mu is held.
func (b *batcher) lane(ledger string) *lane {
	l, ok := b.lanes[ledger]
	if !ok {
		l = &lane{ledger: ledger, room: make(chan struct{})}
		b.lanes[ledger] = l
	}
	return l
}

// abandon takes w out of its batch-to-be if it was not sent yet and says
// whether it was.
func (b *batcher) abandon(ledger string, w *waiter) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.sent {
		return false
	}
	w.abandoned = true
	if l, ok := b.lanes[ledger]; ok {
		b.dispatch(l) // drops it now if no batch is due, rather than at the next
	}
	return true
}

// dispatch starts the batches l may send now. b.mu is held.
func (b *batcher) dispatch(l *lane) {
	for l.inFlight < b.opt.InFlightMax && len(l.queue) > 0 {
		if b.linger(l) {
			return
		}
		batch := b.take(l)
		if len(batch) == 0 {
			continue // all abandoned
		}
		l.inFlight++
		b.sends.Add(1)
		go b.send(l, batch)
	}
	if len(l.queue) == 0 && l.inFlight == 0 && !l.lingering {
		delete(b.lanes, l.ledger)
	}
}

// linger says whether l's next batch should wait for more transfers, and
// starts its timer if so: only when nothing of l is in flight (otherwise
// the batch in flight is the wait), the batch is not full, and the client
// is not closing. b.mu is held.
func (b *batcher) linger(l *lane) bool {
	if b.opt.Linger == 0 || l.lingered || b.closed || l.inFlight > 0 || len(l.queue) >= b.opt.MaxBatch {
		return false
	}
	if !l.lingering {
		l.lingering = true
		b.sends.Add(1) // close waits for the timer as for a send
		l.timer = time.AfterFunc(b.opt.Linger, func() {
			defer b.sends.Done()
			b.mu.Lock()
			defer b.mu.Unlock()
			l.lingering, l.lingered = false, true
			b.dispatch(l)
		})
	}
	return true
}

// take removes up to MaxBatch transfers from the front of l's queue, the
// abandoned skipped, and marks them sent. b.mu is held.
func (b *batcher) take(l *lane) []*waiter {
	batch := make([]*waiter, 0, min(len(l.queue), b.opt.MaxBatch))
	i, bytes := 0, 0
	for ; i < len(l.queue) && len(batch) < b.opt.MaxBatch; i++ {
		w := l.queue[i]
		if w.abandoned {
			continue
		}
		// A batch stays under batchBytesMax (one transfer over it goes
		// alone, and ledgerd answers it), and a transfer over ledgerd's
		// bounds of one goes alone too.
		size := proto.Size(w.transfer) + transferFramingBytes
		over := overBounds(w.transfer)
		if len(batch) > 0 && (bytes+size > batchBytesMax || over) {
			break
		}
		bytes += size
		w.sent = true
		batch = append(batch, w)
		if over {
			i++
			break
		}
	}
	n := copy(l.queue, l.queue[i:])
	clear(l.queue[n:])
	l.queue = l.queue[:n]
	l.lingered = false
	close(l.room)
	l.room = make(chan struct{})
	return batch
}

// overBounds says whether t holds more postings or metadata keys than
// ledgerd takes in one transfer.
func overBounds(t *ledgerv1.Transfer) bool {
	return len(t.GetPostings()) > transferPostingsMax || len(t.GetMetadata()) > transferMetadataKeysMax
}

// send sends one batch, hands each waiter its result, and lets l send its
// next batch.
func (b *batcher) send(l *lane, batch []*waiter) {
	defer b.sends.Done()
	req := &ledgerv1.CreateTransfersRequest{Ledger: l.ledger, Transfers: make([]*ledgerv1.Transfer, len(batch))}
	for i, w := range batch {
		req.Transfers[i] = w.transfer
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opt.CallTimeout)
	resp, err := b.cmd.CreateTransfers(ctx, req)
	cancel()
	var results []*ledgerv1.ItemResult
	if err == nil {
		results, err = byIndex(resp.GetResults(), len(batch))
	}
	for i, w := range batch {
		if err != nil {
			w.err = err
		} else {
			w.result = results[i]
			w.result.Index = 0 // the caller's one item
		}
		close(w.done)
	}
	b.mu.Lock()
	l.inFlight--
	b.dispatch(l)
	b.mu.Unlock()
}

// byIndex orders a response's results by their item index.
//
// Errors: codes.Internal when they are not one per item.
func byIndex(results []*ledgerv1.ItemResult, n int) ([]*ledgerv1.ItemResult, error) {
	if len(results) != n {
		return nil, status.Errorf(codes.Internal, "ledgerd answered %d results for a batch of %d transfers", len(results), n)
	}
	out := make([]*ledgerv1.ItemResult, n)
	for _, r := range results {
		i := r.GetIndex()
		if int(i) >= n || out[i] != nil {
			return nil, status.Errorf(codes.Internal, "ledgerd answered result index %d twice or out of a batch of %d", i, n)
		}
		out[i] = r
	}
	return out, nil
}

// close refuses new transfers, sends what is queued (lingering no more) and
// waits for every batch's answer.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	for _, l := range b.lanes {
		if l.lingering && l.timer.Stop() {
			l.lingering = false
			b.sends.Done()
		}
		b.dispatch(l)
	}
	b.mu.Unlock()
	// A timer that could not be stopped is firing: it is counted in
	// sends, and so is every batch a timer or a send starts, before its
	// own Done.
	b.sends.Wait()
}

// notUTF8 names the first string field of m, nested ones included, that is
// not valid UTF-8, which proto3 strings must be: "" when all are. One such
// field would make gRPC refuse to encode the whole batch.
func notUTF8(m protoreflect.Message) string {
	var bad string
	check := func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.ValidString(v.String()) {
				bad = string(fd.Name())
			}
		case protoreflect.MessageKind, protoreflect.GroupKind:
			if inner := notUTF8(v.Message()); inner != "" {
				bad = string(fd.Name()) + "." + inner
			}
		}
		return bad == ""
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			list := v.List()
			for i := 0; i < list.Len() && check(fd, list.Get(i)); i++ {
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				switch {
				case !check(fd.MapKey(), k.Value()):
					bad = string(fd.Name()) + ", a key"
				case !check(fd.MapValue(), mv):
					bad = fmt.Sprintf("%s[%q]", fd.Name(), k.String()) // the key is UTF-8
				}
				return bad == ""
			})
		default:
			check(fd, v)
		}
		return bad == ""
	})
	return bad
}
