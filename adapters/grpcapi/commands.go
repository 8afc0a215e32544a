package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
)

// Writers gives the writer of a ledger: Writer of an existing one, Create
// also of a new one.
type Writers interface {
	Writer(ledger string) (*commands.Writer, error)
	Create(ledger string) (*commands.Writer, error)
}

// CommandServer serves ledger.v1.CommandService.
type CommandServer struct {
	ledgerv1.UnimplementedCommandServiceServer
	writers Writers
	logger  *slog.Logger
	// periodClosed is OnPeriodClosed's hook, or nil.
	periodClosed func(ledger string, position uint64)
}

// NewCommandServer returns a CommandServer over writers.
func NewCommandServer(writers Writers, logger *slog.Logger) *CommandServer {
	return &CommandServer{writers: writers, logger: logger}
}

func (s *CommandServer) submit(ctx context.Context, ledger string, cmds []domain.Command, opts commands.SubmitOptions) ([]*ledgerv1.ItemResult, error) {
	w, err := s.writers.Writer(ledger)
	if err != nil {
		return nil, statusOf(err)
	}
	return s.submitTo(ctx, w, ledger, cmds, opts)
}

// logFailure logs a submission that failed as a whole.
func (s *CommandServer) logFailure(ledger string, err error) {
	if s.logger != nil {
		s.logger.Warn("command failed", "ledger", ledger, "err", err)
	}
}

func (s *CommandServer) submitTo(ctx context.Context, w *commands.Writer, ledger string, cmds []domain.Command, opts commands.SubmitOptions) ([]*ledgerv1.ItemResult, error) {
	results, err := w.SubmitWith(ctx, cmds, opts)
	if err != nil {
		s.logFailure(ledger, err)
		return nil, statusOf(err)
	}
	return itemResults(cmds, results)
}

// DefineAsset declares an asset.
func (s *CommandServer) DefineAsset(ctx context.Context, req *ledgerv1.DefineAssetRequest) (*ledgerv1.DefineAssetResponse, error) {
	cmd := &domain.DefineAsset{Code: req.GetCode(), Scale: req.GetScale()}
	if err := cmd.Validate(); err != nil {
		// Refused before any ledger is created for it.
		res, err := itemResult(0, cmd.CommandID(), commands.Result{Err: err})
		if err != nil {
			return nil, err
		}
		return &ledgerv1.DefineAssetResponse{Result: res}, nil
	}
	w, err := s.defineAssetWriter(ctx, req.GetLedger())
	if err != nil {
		return nil, err
	}
	results, err := s.submitTo(ctx, w, req.GetLedger(), []domain.Command{cmd}, commands.SubmitOptions{})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.DefineAssetResponse{Result: results[0]}, nil
}

// defineAssetWriter is the writer DefineAsset goes to. It creates the ledger
// only for a caller with the admin role, or with auth off (no key on the
// call): creating a ledger is an admin act, since each one costs the process
// a writer and is kept forever.
//
// Errors: NotFound naming ledger for an unknown ledger and a key without the
// admin role; as statusOf otherwise.
func (s *CommandServer) defineAssetWriter(ctx context.Context, ledger string) (*commands.Writer, error) {
	key, authed := KeyFrom(ctx)
	if !authed || key.Has(apikeys.RoleAdmin) {
		w, err := s.writers.Create(ledger)
		if err != nil {
			return nil, statusOf(err)
		}
		return w, nil
	}
	w, err := s.writers.Writer(ledger)
	if errors.Is(err, domain.ErrUnknownLedger) {
		return nil, notFound("ledger", fmt.Sprintf("unknown ledger %q: an admin creates it (AdminService.CreateLedger, ledgerctl ledger create %s)", ledger, ledger))
	}
	if err != nil {
		return nil, statusOf(err)
	}
	return w, nil
}

// OpenAccounts opens accounts, one result per item.
func (s *CommandServer) OpenAccounts(ctx context.Context, req *ledgerv1.OpenAccountsRequest) (*ledgerv1.OpenAccountsResponse, error) {
	if err := checkItems("accounts", len(req.GetAccounts())); err != nil {
		return nil, err
	}
	cmds := make([]domain.Command, len(req.GetAccounts()))
	for i, a := range req.GetAccounts() {
		cmds[i] = &domain.OpenAccount{ID: a.GetId(), Asset: a.GetAsset(), Normal: side(a.GetNormalBalance()),
			MinBalance: a.MinBalance, MaxBalance: a.MaxBalance, Metadata: a.GetMetadata()}
	}
	results, err := s.submit(ctx, req.GetLedger(), cmds, commands.SubmitOptions{Atomic: req.GetAtomic()})
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
			Pending: t.GetPending(), TimeoutSeconds: t.GetTimeoutSeconds(),
			Postings: make([]domain.PostingInput, len(t.GetPostings()))}
		for j, p := range t.GetPostings() {
			c.Postings[j] = domain.PostingInput{Debit: p.GetDebitAccount(), Credit: p.GetCreditAccount(),
				Asset: p.GetAsset(), Amount: p.GetAmount()}
		}
		var err error
		if c.EffectiveAt, err = effectiveAtOf("transfers", i, t.GetEffectiveAt()); err != nil {
			return nil, err
		}
		cmds[i] = c
	}
	results, err := s.submit(ctx, req.GetLedger(), cmds, commands.SubmitOptions{Atomic: req.GetAtomic(), ReturnBalances: req.GetReturnBalances()})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.CreateTransfersResponse{Results: results}, nil
}

// effectiveAtOf is timeOf for the effective_at of item i of list. Only an
// item that sets one has its field named (a Sprintf): every item of a
// batch passes here.
func effectiveAtOf(list string, i int, ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	return timeOf(fmt.Sprintf("%s[%d].effective_at", list, i), ts)
}

// timeOf converts an optional timestamp; nil is the zero time.
func timeOf(field string, ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, invalidArgument(field, err.Error())
	}
	return ts.AsTime(), nil
}

// PostPendingTransfers posts pending transfers.
func (s *CommandServer) PostPendingTransfers(ctx context.Context, req *ledgerv1.PostPendingTransfersRequest) (*ledgerv1.PostPendingTransfersResponse, error) {
	if err := checkItems("posts", len(req.GetPosts())); err != nil {
		return nil, err
	}
	cmds := make([]domain.Command, len(req.GetPosts()))
	for i, p := range req.GetPosts() {
		cmds[i] = &domain.PostPending{ID: p.GetId(), PendingID: p.GetPendingId(), Amounts: p.GetAmounts(),
			Reference: p.GetReference(), Metadata: p.GetMetadata()}
	}
	results, err := s.submit(ctx, req.GetLedger(), cmds, commands.SubmitOptions{Atomic: req.GetAtomic(), ReturnBalances: req.GetReturnBalances()})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.PostPendingTransfersResponse{Results: results}, nil
}

// VoidPendingTransfers voids pending transfers.
func (s *CommandServer) VoidPendingTransfers(ctx context.Context, req *ledgerv1.VoidPendingTransfersRequest) (*ledgerv1.VoidPendingTransfersResponse, error) {
	if err := checkItems("voids", len(req.GetVoids())); err != nil {
		return nil, err
	}
	cmds := make([]domain.Command, len(req.GetVoids()))
	for i, v := range req.GetVoids() {
		cmds[i] = &domain.VoidPending{ID: v.GetId(), PendingID: v.GetPendingId(), Reference: v.GetReference()}
	}
	results, err := s.submit(ctx, req.GetLedger(), cmds, commands.SubmitOptions{Atomic: req.GetAtomic(), ReturnBalances: req.GetReturnBalances()})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.VoidPendingTransfersResponse{Results: results}, nil
}

// ReverseTransfers reverses posted transfers.
func (s *CommandServer) ReverseTransfers(ctx context.Context, req *ledgerv1.ReverseTransfersRequest) (*ledgerv1.ReverseTransfersResponse, error) {
	if err := checkItems("reversals", len(req.GetReversals())); err != nil {
		return nil, err
	}
	cmds := make([]domain.Command, len(req.GetReversals()))
	for i, r := range req.GetReversals() {
		at, err := effectiveAtOf("reversals", i, r.GetEffectiveAt())
		if err != nil {
			return nil, err
		}
		cmds[i] = &domain.ReverseTransfer{ID: r.GetId(), TransferID: r.GetTransferId(), Amounts: r.GetAmounts(),
			Reference: r.GetReference(), Metadata: r.GetMetadata(), EffectiveAt: at}
	}
	results, err := s.submit(ctx, req.GetLedger(), cmds, commands.SubmitOptions{Atomic: req.GetAtomic(), ReturnBalances: req.GetReturnBalances()})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.ReverseTransfersResponse{Results: results}, nil
}

// SetAccountBounds changes accounts' bounds.
func (s *CommandServer) SetAccountBounds(ctx context.Context, req *ledgerv1.SetAccountBoundsRequest) (*ledgerv1.SetAccountBoundsResponse, error) {
	if err := checkItems("bounds", len(req.GetBounds())); err != nil {
		return nil, err
	}
	cmds := make([]domain.Command, len(req.GetBounds()))
	for i, b := range req.GetBounds() {
		// The pointers, not the getters: absent (no bound) and "" (refused)
		// must stay apart.
		cmds[i] = &domain.SetAccountBounds{AccountID: b.GetAccountId(), MinBalance: b.MinBalance, MaxBalance: b.MaxBalance}
	}
	results, err := s.submit(ctx, req.GetLedger(), cmds, commands.SubmitOptions{Atomic: req.GetAtomic()})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.SetAccountBoundsResponse{Results: results}, nil
}

// SetAccountMetadata replaces accounts' metadata.
func (s *CommandServer) SetAccountMetadata(ctx context.Context, req *ledgerv1.SetAccountMetadataRequest) (*ledgerv1.SetAccountMetadataResponse, error) {
	if err := checkItems("accounts", len(req.GetAccounts())); err != nil {
		return nil, err
	}
	cmds := make([]domain.Command, len(req.GetAccounts()))
	for i, a := range req.GetAccounts() {
		cmds[i] = &domain.SetAccountMetadata{AccountID: a.GetAccountId(), Metadata: a.GetMetadata()}
	}
	results, err := s.submit(ctx, req.GetLedger(), cmds, commands.SubmitOptions{Atomic: req.GetAtomic()})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.SetAccountMetadataResponse{Results: results}, nil
}

// CloseAccounts closes accounts.
func (s *CommandServer) CloseAccounts(ctx context.Context, req *ledgerv1.CloseAccountsRequest) (*ledgerv1.CloseAccountsResponse, error) {
	if err := checkItems("account_ids", len(req.GetAccountIds())); err != nil {
		return nil, err
	}
	cmds := make([]domain.Command, len(req.GetAccountIds()))
	for i, id := range req.GetAccountIds() {
		cmds[i] = &domain.CloseAccount{AccountID: id}
	}
	results, err := s.submit(ctx, req.GetLedger(), cmds, commands.SubmitOptions{Atomic: req.GetAtomic()})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.CloseAccountsResponse{Results: results}, nil
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
