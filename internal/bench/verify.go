package bench

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

const (
	// catchUpPollEvery spaces the status polls of that wait: a catch-up time
	// is known to within it and one call.
	catchUpPollEvery = 10 * time.Millisecond
	// queryTimeout bounds one GetBalances or GetProjectionStatus of the
	// verification; the server waits at most 10 s for min_position.
	queryTimeout = 15 * time.Second
	// accountsPerQueryMax is the server's limit of accounts per GetBalances.
	accountsPerQueryMax = 1000
)

// errNotCaughtUp means a projection did not reach the position in cfg.CatchUpWait.
var errNotCaughtUp = errors.New("projection did not catch up")

// Check is one verification and its outcome.
type Check struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// ProjectionCatchUp is when one projection was seen at or past the last
// acknowledged position.
type ProjectionCatchUp struct {
	Projection string `json:"projection"`
	// Position is the projection's checkpoint in the answer that saw it.
	Position uint64 `json:"position"`
	// CatchUpMs is how long after the last ack that answer arrived.
	CatchUpMs float64 `json:"catch_up_ms"`
}

// waitCaughtUp polls the ledger's projection status until every projection
// has reached position, and returns for each how long after lastAck the
// first answer saying so arrived.
//
// Errors: errNotCaughtUp after cfg.CatchUpWait; a status call's error other
// than its deadline or unavailability.
func waitCaughtUp(ctx context.Context, q ledgerv1.QueryServiceClient, cfg *Config, position uint64, lastAck time.Time) ([]ProjectionCatchUp, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.CatchUpWait)
	defer cancel()
	c := newCatchUp(position)
	req := &ledgerv1.GetProjectionStatusRequest{Ledger: cfg.Ledger}
	for {
		qctx, qcancel := context.WithTimeout(ctx, queryTimeout)
		resp, err := q.GetProjectionStatus(qctx, req)
		qcancel()
		if err == nil && c.observe(resp.GetProjections(), cfg.Now().Sub(lastAck)) {
			return c.reachedByName(), nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("position %d in %s (%s): %w", position, cfg.CatchUpWait, c.behind, errNotCaughtUp)
		}
		switch status.Code(err) {
		case codes.OK, codes.DeadlineExceeded, codes.Unavailable:
		default:
			return nil, fmt.Errorf("projection status waiting for position %d: %w", position, err)
		}
		select {
		case <-time.After(catchUpPollEvery):
		case <-ctx.Done():
		}
	}
}

// catchUp follows the projections of one ledger up to a position.
type catchUp struct {
	position uint64
	reached  map[string]ProjectionCatchUp
	// behind says which projections the last answer had short of position.
	behind string
}

func newCatchUp(position uint64) *catchUp {
	return &catchUp{position: position, reached: map[string]ProjectionCatchUp{}, behind: "no answer yet"}
}

// observe records the projections of one status answer that reached the
// position, after the given time since the last ack (a projection keeps its
// first time). It reports whether the answer lists projections and every
// one has reached it.
func (c *catchUp) observe(projections []*ledgerv1.ProjectionStatus, after time.Duration) bool {
	var behind []string
	for _, p := range projections {
		if p.GetPosition() < c.position {
			behind = append(behind, fmt.Sprintf("%s at %d", p.GetName(), p.GetPosition()))
			continue
		}
		if _, ok := c.reached[p.GetName()]; !ok {
			c.reached[p.GetName()] = ProjectionCatchUp{Projection: p.GetName(), Position: p.GetPosition(), CatchUpMs: ms(after)}
		}
	}
	switch {
	case len(projections) == 0:
		c.behind = "no projections listed"
	case len(behind) > 0:
		c.behind = strings.Join(behind, ", ")
	default:
		c.behind = ""
	}
	return len(projections) > 0 && len(behind) == 0
}

// reachedByName returns the projections that reached the position, by name.
func (c *catchUp) reachedByName() []ProjectionCatchUp {
	out := make([]ProjectionCatchUp, 0, len(c.reached))
	for _, name := range sortedKeys(c.reached) {
		out = append(out, c.reached[name])
	}
	return out
}

// totals are the sums over all accounts of their posted amounts, in minor units.
type totals struct {
	debits, credits *big.Int
}

// readTotals reads every account's balance at position, chunk by chunk, and
// adds up debits and credits posted exactly.
//
// Errors: a query's error; an account missing or of another asset; ErrBadDecimal.
func readTotals(ctx context.Context, q ledgerv1.QueryServiceClient, cfg *Config, position uint64) (totals, error) {
	t := totals{debits: new(big.Int), credits: new(big.Int)}
	ids := make([]string, 0, accountsPerQueryMax)
	for from := 0; from < cfg.Accounts; from += accountsPerQueryMax {
		ids = ids[:0]
		for i := from; i < min(from+accountsPerQueryMax, cfg.Accounts); i++ {
			ids = append(ids, accountID(i))
		}
		qctx, cancel := context.WithTimeout(ctx, queryTimeout)
		resp, err := q.GetBalances(qctx, &ledgerv1.GetBalancesRequest{Ledger: cfg.Ledger, Accounts: ids, MinPosition: position})
		cancel()
		if err != nil {
			return totals{}, fmt.Errorf("balances of %s..%s: %w", ids[0], ids[len(ids)-1], err)
		}
		if err := addBalances(t, ids, resp.GetBalances()); err != nil {
			return totals{}, err
		}
	}
	return t, nil
}

// addBalances adds the balances of the accounts ids, which must all be there
// in request order, to t.
func addBalances(t totals, ids []string, got []*ledgerv1.Balance) error {
	if len(got) != len(ids) {
		return fmt.Errorf("%d balances for %d accounts from %s", len(got), len(ids), ids[0])
	}
	for i, b := range got {
		if b.GetAccount() != ids[i] || b.GetAsset() != assetCode {
			return fmt.Errorf("balance %d is of %s in %s, want %s in %s", i, b.GetAccount(), b.GetAsset(), ids[i], assetCode)
		}
		d, err := parseMinor(b.GetDebitsPosted(), assetScale)
		if err != nil {
			return fmt.Errorf("debits posted of %s: %w", ids[i], err)
		}
		c, err := parseMinor(b.GetCreditsPosted(), assetScale)
		if err != nil {
			return fmt.Errorf("credits posted of %s: %w", ids[i], err)
		}
		t.debits.Add(t.debits, d)
		t.credits.Add(t.credits, c)
	}
	return nil
}
