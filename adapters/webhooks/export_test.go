package webhooks

import "context"

// Poll runs one round of claims, as Run does every Options.Poll.
func (d *Dispatcher) Poll(ctx context.Context) { d.poll(ctx) }

// Worker says whether id has a worker, and whether that one has ended;
// same compares it with the one another call saw.
func (d *Dispatcher) Worker(id string) (w any, ended bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.workers[id]
	if !ok {
		return nil, false
	}
	select {
	case <-r.done:
		return r, true
	default:
		return r, false
	}
}

// Trim runs one trim of the delivery log, batch rows a statement and at
// most batchesMax statements, without a pause between them.
func (d *Dispatcher) Trim(ctx context.Context, batch, batchesMax int) (int64, error) {
	return d.trim(ctx, batch, batchesMax, 0)
}
