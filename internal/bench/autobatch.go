package bench

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/client"
)

// autoBatched is -auto-batch: every worker's CreateTransfers of one
// transfer goes through one Go client's CreateTransfer, which coalesces the
// workers' transfers into batches. The other methods are the client's.
type autoBatched struct{ *client.Client }

// dialAutoBatched returns the client of -auto-batch, with the client's
// default batching and without retries: the plain runs retry nothing
// either.
//
// Errors: client.Dial's; a connection not ready within connectTimeout.
func dialAutoBatched(ctx context.Context, cfg *Config) (*autoBatched, error) {
	opts := []client.Option{client.WithInsecure(), client.WithDialTimeout(connectTimeout),
		client.WithRetry(client.RetryPolicy{MaxAttempts: 1})}
	if cfg.APIKey != "" {
		opts = append(opts, client.WithAPIKey(cfg.APIKey))
	}
	c, err := client.Dial(ctx, cfg.Addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("auto-batching client: %w", err)
	}
	return &autoBatched{c}, nil
}

// CreateTransfers sends each transfer of req alone through CreateTransfer
// (the workers send one at a time with -auto-batch) and gathers the results.
func (a *autoBatched) CreateTransfers(ctx context.Context, req *ledgerv1.CreateTransfersRequest, _ ...grpc.CallOption) (*ledgerv1.CreateTransfersResponse, error) {
	resp := &ledgerv1.CreateTransfersResponse{Results: make([]*ledgerv1.ItemResult, len(req.GetTransfers()))}
	for i, t := range req.GetTransfers() {
		r, err := a.CreateTransfer(ctx, req.GetLedger(), t)
		if err != nil {
			return nil, err
		}
		r.Index = uint32(i)
		resp.Results[i] = r
	}
	return resp, nil
}
