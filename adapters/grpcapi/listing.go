package grpcapi

import (
	"context"
	"fmt"
	"math/big"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/queries"
)

// ListAssets returns a page of the ledger's assets in code order.
func (s *QueryServer) ListAssets(ctx context.Context, req *ledgerv1.ListAssetsRequest) (*ledgerv1.ListAssetsResponse, error) {
	if req.GetLimit() > queries.AssetsPageMax {
		return nil, invalidArgument("limit", fmt.Sprintf("at most %d", queries.AssetsPageMax))
	}
	got, err := s.q.ListAssets(ctx, req.GetLedger(), req.GetCursor(), int(req.GetLimit()), req.GetMinPosition())
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.ListAssetsResponse{Position: got.Position, NextCursor: got.NextCursor,
		Assets: make([]*ledgerv1.AssetView, len(got.Assets))}
	for i, a := range got.Assets {
		resp.Assets[i] = &ledgerv1.AssetView{Code: a.Code, Scale: uint32(a.Scale), Position: a.Position}
	}
	return resp, nil
}

// ListAccounts returns a page of the accounts matching the request's
// filters, in id order, with their balances when asked.
func (s *QueryServer) ListAccounts(ctx context.Context, req *ledgerv1.ListAccountsRequest) (*ledgerv1.ListAccountsResponse, error) {
	f, err := accountFilter(req)
	if err != nil {
		return nil, err
	}
	if req.GetLimit() > queries.AccountsPageMax {
		return nil, invalidArgument("limit", fmt.Sprintf("at most %d", queries.AccountsPageMax))
	}
	got, err := s.q.ListAccounts(ctx, req.GetLedger(), f, req.GetCursor(), int(req.GetLimit()), req.GetMinPosition())
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.ListAccountsResponse{Position: got.Position, NextCursor: got.NextCursor,
		Accounts: make([]*ledgerv1.AccountView, len(got.Accounts))}
	for i, a := range got.Accounts {
		v := &ledgerv1.AccountView{Id: a.ID, Asset: a.Asset, NormalBalance: normalBalance(a.Normal),
			MinBalance: a.MinBalance, MaxBalance: a.MaxBalance, Metadata: a.Metadata,
			Status: ledgerv1.AccountStatus_ACCOUNT_STATUS_OPEN, OpenedPosition: a.OpenedPosition,
			OpenedAt: timestamppb.New(a.OpenedAt), FrozenPosition: a.FrozenPosition}
		if a.Closed {
			v.Status = ledgerv1.AccountStatus_ACCOUNT_STATUS_CLOSED
		}
		if b := a.Balance; b != nil {
			v.Balance = &ledgerv1.Balance{Account: b.Account, Asset: b.Asset, NormalBalance: normalBalance(b.Normal),
				DebitsPosted: b.DebitsPosted, CreditsPosted: b.CreditsPosted, DebitsPending: b.DebitsPending,
				CreditsPending: b.CreditsPending, Balance: b.Balance, Available: b.Available, Position: b.Position}
		}
		resp.Accounts[i] = v
	}
	return resp, nil
}

// accountFilter validates a ListAccounts request's filters (the ledger name
// is checked by the interceptors).
func accountFilter(req *ledgerv1.ListAccountsRequest) (queries.AccountFilter, error) {
	f := queries.AccountFilter{Asset: req.GetAsset(), Balances: req.GetIncludeBalances(), Frozen: req.GetFrozen()}
	if c := req.GetCategory(); c != "" {
		if !domain.ValidID(c) {
			return f, invalidArgument("category", fmt.Sprintf("must match [A-Za-z0-9:_.@-]{1,%d}", domain.IDLenMax))
		}
		f.Category = c
	}
	switch prefix, pattern := req.GetPrefix(), req.GetPattern(); {
	case prefix != "" && pattern != "":
		return f, invalidArgument("pattern", "not with prefix")
	case prefix != "":
		if !domain.ValidID(prefix) {
			return f, invalidArgument("prefix", fmt.Sprintf("must match [A-Za-z0-9:_.@-]{1,%d}", domain.IDLenMax))
		}
		f.Prefix = prefix
	case pattern != "":
		if err := domain.CheckAccountPattern(pattern); err != nil {
			return f, invalidArgument("pattern", err.Error())
		}
		f.Pattern = pattern
	}
	if f.Asset != "" && !domain.ValidAssetCode(f.Asset) {
		return f, invalidArgument("asset", "must match [A-Z][A-Z0-9_]{0,15}")
	}
	switch req.GetStatus() {
	case ledgerv1.AccountStatus_ACCOUNT_STATUS_UNSPECIFIED:
	case ledgerv1.AccountStatus_ACCOUNT_STATUS_OPEN:
		f.Status = queries.AccountStatusOpen
	case ledgerv1.AccountStatus_ACCOUNT_STATUS_CLOSED:
		f.Status = queries.AccountStatusClosed
	default:
		return f, invalidArgument("status", fmt.Sprintf("unknown status %d", req.GetStatus()))
	}
	md := req.GetMetadata()
	if len(md) > queries.AccountsMetadataPairsMax {
		return f, invalidArgument("metadata", fmt.Sprintf("%d pairs, at most %d", len(md), queries.AccountsMetadataPairsMax))
	}
	for k, v := range md {
		switch {
		case k == "" || len(k) > domain.MetadataKeyLenMax:
			return f, invalidArgument("metadata", fmt.Sprintf("a key of %d bytes, want 1..%d", len(k), domain.MetadataKeyLenMax))
		case len(v) > domain.MetadataBytesMax:
			return f, invalidArgument("metadata", fmt.Sprintf("the value of %q has %d bytes, at most %d", k, len(v), domain.MetadataBytesMax))
		case strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0):
			// PostgreSQL text cannot hold a NUL: no stored label has one.
			return f, invalidArgument("metadata", "must not contain NUL")
		}
	}
	if len(md) > 0 {
		f.Metadata = md
	}
	return f, nil
}

// amountBound validates a ListTransfers amount bound's form: a decimal of
// at most 38 digits, not negative. Its scale is the asset's, checked by the
// query (queries.ErrTransfersMinAmount and ErrTransfersMaxAmount).
func amountBound(field, s string) error {
	if s == "" {
		return nil
	}
	d, err := domain.ParseDecimal(s)
	if err != nil {
		return invalidArgument(field, fmt.Sprintf("%.64q is not a decimal amount", s))
	}
	if d.Sign() < 0 {
		return invalidArgument(field, "must not be negative")
	}
	return nil
}

// transferRangeFilters validates ListTransfers' asset, amount and [from, to)
// filters into f.
func transferRangeFilters(req *ledgerv1.ListTransfersRequest, f *queries.TransferFilter) error {
	asset, minA, maxA := req.GetAsset(), req.GetMinAmount(), req.GetMaxAmount()
	switch {
	case asset != "" && !domain.ValidAssetCode(asset):
		return invalidArgument("asset", "must match [A-Z][A-Z0-9_]{0,15}")
	case asset == "" && minA != "":
		return invalidArgument("min_amount", "requires asset")
	case asset == "" && maxA != "":
		return invalidArgument("max_amount", "requires asset")
	}
	if err := amountBound("min_amount", minA); err != nil {
		return err
	}
	if err := amountBound("max_amount", maxA); err != nil {
		return err
	}
	if minA != "" && maxA != "" {
		// Both parsed above: exact rationals compare them at any scale.
		lo, _ := new(big.Rat).SetString(minA)
		hi, _ := new(big.Rat).SetString(maxA)
		if lo.Cmp(hi) > 0 {
			return invalidArgument("min_amount", "above max_amount")
		}
	}
	f.Asset, f.MinAmount, f.MaxAmount = asset, minA, maxA
	for _, r := range [...]struct {
		fromField, toField string
		from, to           *timestamppb.Timestamp
		dstFrom, dstTo     *time.Time
	}{
		{"effective_from", "effective_to", req.GetEffectiveFrom(), req.GetEffectiveTo(), &f.EffectiveFrom, &f.EffectiveTo},
		{"recorded_from", "recorded_to", req.GetRecordedFrom(), req.GetRecordedTo(), &f.RecordedFrom, &f.RecordedTo},
	} {
		from, err := timeOf(r.fromField, r.from)
		if err != nil {
			return err
		}
		to, err := timeOf(r.toField, r.to)
		if err != nil {
			return err
		}
		if !from.IsZero() && !to.IsZero() && !from.Before(to) {
			return invalidArgument(r.fromField, "not before "+r.toField+": the range is [from, to)")
		}
		*r.dstFrom, *r.dstTo = from, to
	}
	return nil
}
