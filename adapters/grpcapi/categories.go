package grpcapi

import (
	"context"
	"fmt"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/queries"
)

// DefineCategories defines or redefines categories, one result per item, in
// order: an item may name as parent a category defined earlier in the same
// request.
func (s *CommandServer) DefineCategories(ctx context.Context, req *ledgerv1.DefineCategoriesRequest) (*ledgerv1.DefineCategoriesResponse, error) {
	if n := len(req.GetCategories()); n == 0 || n > domain.CategoriesPerRequestMax {
		return nil, invalidArgument("categories", fmt.Sprintf("%d categories, want 1..%d", n, domain.CategoriesPerRequestMax))
	}
	cmds := make([]domain.Command, len(req.GetCategories()))
	for i, c := range req.GetCategories() {
		cmds[i] = &domain.DefineCategory{Name: c.GetName(), Parent: c.GetParent(), Patterns: c.GetPatterns(),
			Description: c.GetDescription()}
	}
	results, err := s.submit(ctx, req.GetLedger(), cmds, commands.SubmitOptions{})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.DefineCategoriesResponse{Results: results}, nil
}

// ListCategories lists the ledger's categories in name order, by pages.
func (s *QueryServer) ListCategories(ctx context.Context, req *ledgerv1.ListCategoriesRequest) (*ledgerv1.ListCategoriesResponse, error) {
	got, err := s.q.ListCategories(ctx, req.GetLedger(), req.GetCursor(), int(req.GetLimit()), req.GetMinPosition())
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.ListCategoriesResponse{NextCursor: got.NextCursor, Position: got.Position,
		Categories: make([]*ledgerv1.CategoryView, len(got.Categories))}
	for i, c := range got.Categories {
		resp.Categories[i] = &ledgerv1.CategoryView{Position: c.Position, Category: &ledgerv1.Category{
			Name: c.Name, Parent: c.Parent, Patterns: c.Patterns, Description: c.Description}}
	}
	return resp, nil
}

// GetCategoryBalances rolls the balances up by category.
func (s *QueryServer) GetCategoryBalances(ctx context.Context, req *ledgerv1.GetCategoryBalancesRequest) (*ledgerv1.GetCategoryBalancesResponse, error) {
	if c := req.GetCategory(); c != "" && !domain.ValidID(c) {
		return nil, invalidArgument("category", fmt.Sprintf("%.40q must match [A-Za-z0-9:_.@-]{1,%d}", c, domain.IDLenMax))
	}
	if req.GetAsOfPosition() != 0 && req.GetAsOfTime() != nil {
		return nil, invalidArgument("as_of_time", "not with as_of_position")
	}
	at, err := timeOf("as_of_time", req.GetAsOfTime())
	if err != nil {
		return nil, err
	}
	effective, err := effectiveBasis(req.GetTimeBasis())
	if err != nil {
		return nil, err
	}
	asOf := queries.CategoryAsOf{Position: req.GetAsOfPosition(), Time: at, Effective: effective}
	got, err := s.q.GetCategoryBalances(ctx, req.GetLedger(), req.GetCategory(), asOf, req.GetMinPosition())
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &ledgerv1.GetCategoryBalancesResponse{Position: got.Position,
		Balances: make([]*ledgerv1.CategoryBalance, len(got.Balances))}
	for i, b := range got.Balances {
		resp.Balances[i] = &ledgerv1.CategoryBalance{Category: b.Category, Asset: b.Asset, DebitsPosted: b.DebitsPosted,
			CreditsPosted: b.CreditsPosted, DebitsPending: b.DebitsPending, CreditsPending: b.CreditsPending,
			Accounts: b.Accounts}
	}
	return resp, nil
}
