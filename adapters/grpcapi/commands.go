package grpcapi

import (
	"context"
	"fmt"
	"log/slog"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
)

// Writers gives the writer of a ledger.
type Writers interface {
	Writer(ledger string) (*commands.Writer, error)
}

// CommandServer serves ledger.v1.CommandService.
type CommandServer struct {
	ledgerv1.UnimplementedCommandServiceServer
	writers Writers
	logger  *slog.Logger
}

// NewCommandServer returns a CommandServer over writers.
func NewCommandServer(writers Writers, logger *slog.Logger) *CommandServer {
	return &CommandServer{writers: writers, logger: logger}
}

func (s *CommandServer) submit(ctx context.Context, ledger string, cmds []domain.Command) ([]*ledgerv1.ItemResult, error) {
	w, err := s.writers.Writer(ledger)
	if err != nil {
		return nil, statusOf(err)
	}
	results, err := w.Submit(ctx, cmds)
	if err != nil {
		if s.logger != nil {
			s.logger.Warn("command failed", "ledger", ledger, "err", err)
		}
		return nil, statusOf(err)
	}
	out := make([]*ledgerv1.ItemResult, len(results))
	for i, r := range results {
		out[i] = itemResult(i, cmds[i].CommandID(), r)
	}
	return out, nil
}

// DefineAsset declares an asset.
func (s *CommandServer) DefineAsset(ctx context.Context, req *ledgerv1.DefineAssetRequest) (*ledgerv1.DefineAssetResponse, error) {
	results, err := s.submit(ctx, req.GetLedger(), []domain.Command{&domain.DefineAsset{Code: req.GetCode(), Scale: req.GetScale()}})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.DefineAssetResponse{Result: results[0]}, nil
}

// OpenAccounts opens accounts, one result per item.
func (s *CommandServer) OpenAccounts(ctx context.Context, req *ledgerv1.OpenAccountsRequest) (*ledgerv1.OpenAccountsResponse, error) {
	if err := checkItems("accounts", len(req.GetAccounts())); err != nil {
		return nil, err
	}
	cmds := make([]domain.Command, len(req.GetAccounts()))
	for i, a := range req.GetAccounts() {
		cmds[i] = &domain.OpenAccount{ID: a.GetId(), Asset: a.GetAsset(), Normal: side(a.GetNormalBalance()),
			MinBalance: a.GetMinBalance(), MaxBalance: a.GetMaxBalance(), Metadata: a.GetMetadata()}
	}
	results, err := s.submit(ctx, req.GetLedger(), cmds)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.OpenAccountsResponse{Results: results}, nil
}

// CreateTransfers records transfers, one result per item.
func (s *CommandServer) CreateTransfers(ctx context.Context, req *ledgerv1.CreateTransfersRequest) (*ledgerv1.CreateTransfersResponse, error) {
	if err := checkItems("transfers", len(req.GetTransfers())); err != nil {
		return nil, err
	}
	cmds := make([]domain.Command, len(req.GetTransfers()))
	for i, t := range req.GetTransfers() {
		c := &domain.CreateTransfer{ID: t.GetId(), Reference: t.GetReference(), Metadata: t.GetMetadata(),
			Postings: make([]domain.PostingInput, len(t.GetPostings()))}
		for j, p := range t.GetPostings() {
			c.Postings[j] = domain.PostingInput{Debit: p.GetDebitAccount(), Credit: p.GetCreditAccount(),
				Asset: p.GetAsset(), Amount: p.GetAmount()}
		}
		if ts := t.GetEffectiveAt(); ts != nil {
			if err := ts.CheckValid(); err != nil {
				return nil, invalidArgument(fmt.Sprintf("transfers[%d].effective_at", i), err.Error())
			}
			c.EffectiveAt = ts.AsTime()
		}
		cmds[i] = c
	}
	results, err := s.submit(ctx, req.GetLedger(), cmds)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.CreateTransfersResponse{Results: results}, nil
}

func checkItems(field string, n int) error {
	if n == 0 || n > commands.ItemsPerRequestMax {
		return invalidArgument(field, fmt.Sprintf("%d items, want 1..%d", n, commands.ItemsPerRequestMax))
	}
	return nil
}

func side(n ledgerv1.NormalBalance) domain.Side {
	switch n {
	case ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT:
		return domain.SideCredit
	case ledgerv1.NormalBalance_NORMAL_BALANCE_DEBIT:
		return domain.SideDebit
	}
	return 0
}

func normalBalance(s string) ledgerv1.NormalBalance {
	switch s {
	case "credit":
		return ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT
	case "debit":
		return ledgerv1.NormalBalance_NORMAL_BALANCE_DEBIT
	}
	return ledgerv1.NormalBalance_NORMAL_BALANCE_UNSPECIFIED
}
