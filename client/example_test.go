package client_test

import (
	"context"
	"fmt"
	"log"
	"sync"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/client"
	"github.com/ledgerd/ledger/internal/testenv"
)

// exampleTarget starts (once) the ledgerd the examples talk to and returns
// its address and admin API key, and a ledger name of the example's own.
func exampleTarget() (target, apiKey, ledger string) {
	l := exampleLedgerd()
	return l.m.GRPCAddr(), l.key, testenv.Name(testenv.Examples())
}

func ExampleDial() {
	target, apiKey, ledger := exampleTarget()
	ctx := context.Background()
	// Plaintext for a ledgerd on this host; use client.WithTLS or
	// client.WithCAFile otherwise.
	c, err := client.Dial(ctx, target, client.WithAPIKey(apiKey), client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	asset, err := c.DefineAsset(ctx, &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("USD:", asset.GetResult().GetCode())
	accounts, err := c.OpenAccounts(ctx, &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: []*ledgerv1.Account{
		{Id: "alice", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT},
		{Id: "bob", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT},
	}})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range accounts.GetResults() {
		fmt.Println(r.GetId()+":", r.GetCode())
	}
	// Output:
	// USD: RESULT_CODE_CREATED
	// alice: RESULT_CODE_CREATED
	// bob: RESULT_CODE_CREATED
}

func ExampleClient_CreateTransfer() {
	target, apiKey, ledger := exampleTarget()
	ctx := context.Background()
	c, err := client.Dial(ctx, target, client.WithAPIKey(apiKey), client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	exampleAccounts(ctx, c, ledger, "alice", "bob")

	// 100 goroutines send one transfer each; the client coalesces them
	// into a few CreateTransfers requests and gives each its own result.
	results := make([]*ledgerv1.ItemResult, 100)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			t := &ledgerv1.Transfer{Id: fmt.Sprintf("payment-%d", i), Postings: []*ledgerv1.Posting{
				{DebitAccount: "alice", CreditAccount: "bob", Amount: "1.00", Asset: "USD"}}}
			r, err := c.CreateTransfer(ctx, ledger, t)
			if err != nil {
				// The call failed as a whole (after retries): t may or may
				// not be applied. Sending it again with the same id tells.
				log.Fatal(err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	byCode := map[ledgerv1.ResultCode]int{}
	var last uint64
	for _, r := range results {
		byCode[r.GetCode()]++
		last = max(last, r.GetPosition())
	}
	fmt.Println(byCode)

	// The same id again changes nothing: EXISTS, with the original position.
	again, err := c.CreateTransfer(ctx, ledger, &ledgerv1.Transfer{Id: "payment-7", Postings: []*ledgerv1.Posting{
		{DebitAccount: "alice", CreditAccount: "bob", Amount: "1.00", Asset: "USD"}}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("payment-7 again:", again.GetCode(), again.GetPosition() == results[7].GetPosition())

	balances, err := c.GetBalances(ctx, &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}, MinPosition: last})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("bob:", balances.GetBalances()[0].GetBalance())
	// Output:
	// map[RESULT_CODE_CREATED:100]
	// payment-7 again: RESULT_CODE_EXISTS true
	// bob: 100.00
}

// exampleAccounts defines USD in ledger and opens the accounts.
func exampleAccounts(ctx context.Context, c *client.Client, ledger string, ids ...string) {
	if _, err := c.DefineAsset(ctx, &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2}); err != nil {
		log.Fatal(err)
	}
	req := &ledgerv1.OpenAccountsRequest{Ledger: ledger}
	for _, id := range ids {
		req.Accounts = append(req.Accounts, &ledgerv1.Account{Id: id, Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT})
	}
	if _, err := c.OpenAccounts(ctx, req); err != nil {
		log.Fatal(err)
	}
}
