package bench

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

const (
	// catchUpWaitMax bounds the wait for the projection to reach the last
	// acknowledged position.
	catchUpWaitMax = 60 * time.Second
	// queryTimeout bounds one GetBalances; the server waits at most 10 s
	// for min_position.
	queryTimeout = 15 * time.Second
	// queryRetryDelay spaces retries of a query refused as unavailable.
	queryRetryDelay = 100 * time.Millisecond
	// accountsPerQueryMax is the server's limit of accounts per GetBalances.
	accountsPerQueryMax = 1000
)

// errNotCaughtUp means the projection did not reach the position in catchUpWaitMax.
var errNotCaughtUp = errors.New("projection did not catch up")

// Check is one verification and its outcome.
type Check struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// waitCaughtUp asks for one balance at position until the projection has
// reached it, and returns how long after lastAck that was.
//
// Errors: errNotCaughtUp after catchUpWaitMax; a query's error other than
// its deadline or unavailability; ctx's error.
func waitCaughtUp(ctx context.Context, q ledgerv1.QueryServiceClient, cfg *Config, position uint64, lastAck time.Time) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, catchUpWaitMax)
	defer cancel()
	req := &ledgerv1.GetBalancesRequest{Ledger: cfg.Ledger, Accounts: []string{accountID(0)}, MinPosition: position}
	for {
		qctx, qcancel := context.WithTimeout(ctx, queryTimeout)
		resp, err := q.GetBalances(qctx, req)
		qcancel()
		if err == nil && resp.GetPosition() >= position {
			return cfg.Now().Sub(lastAck), nil
		}
		if err == nil {
			return 0, fmt.Errorf("answer at position %d, asked for %d", resp.GetPosition(), position)
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("position %d in %s: %w", position, catchUpWaitMax, errNotCaughtUp)
		}
		switch status.Code(err) {
		case codes.DeadlineExceeded:
		case codes.Unavailable:
			select {
			case <-time.After(queryRetryDelay):
			case <-ctx.Done():
			}
		default:
			return 0, fmt.Errorf("balances at position %d: %w", position, err)
		}
	}
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
