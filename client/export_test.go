package client

// RecvMax is recvMax, for the test that ties it to ledgerd's send bound.
const RecvMax = recvMax

// Queued is how many transfers of ledger wait in the client's queue, for
// tests that must act while one waits.
func (c *Client) Queued(ledger string) int {
	c.batches.mu.Lock()
	defer c.batches.mu.Unlock()
	if l, ok := c.batches.lanes[ledger]; ok {
		return len(l.queue)
	}
	return 0
}

// Retries is the retry classification of unary methods.
var Retries = retries
