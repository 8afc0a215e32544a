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
