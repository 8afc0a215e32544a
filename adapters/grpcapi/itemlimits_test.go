package grpcapi

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/queries"
)

// TestOverfullField: every list and map of a request is counted on the
// wire against its field's bound, at any depth, and named as a client
// names it; at the bound nothing is refused.
func TestOverfullField(t *testing.T) {
	transfers := func(n, postings, metadata int) *ledgerv1.CreateTransfersRequest {
		req := &ledgerv1.CreateTransfersRequest{Ledger: "x"}
		for i := range n {
			tr := &ledgerv1.Transfer{Id: fmt.Sprint(i)}
			if i == n-1 {
				for range postings {
					tr.Postings = append(tr.Postings, &ledgerv1.Posting{})
				}
				tr.Metadata = map[string]string{}
				for k := range metadata {
					tr.Metadata[fmt.Sprint(k)] = "v"
				}
			}
			req.Transfers = append(req.Transfers, tr)
		}
		return req
	}
	ids := func(n int) []string { return make([]string, n) }
	for _, tc := range []struct {
		name  string
		req   proto.Message
		field string
		n     int
	}{
		{"transfers at the bound", transfers(commands.ItemsPerRequestMax, domain.PostingsPerTransfer, domain.MetadataKeysMax), "", 0},
		{"transfers over", transfers(commands.ItemsPerRequestMax+1, 0, 0), "transfers", commands.ItemsPerRequestMax + 1},
		{"postings over", transfers(3, domain.PostingsPerTransfer+1, 0), "transfers[2].postings", domain.PostingsPerTransfer + 1},
		{"metadata over", transfers(2, 1, domain.MetadataKeysMax+1), "transfers[1].metadata", domain.MetadataKeysMax + 1},
		{"balances at the bound", &ledgerv1.GetBalancesRequest{Accounts: ids(queries.AccountsPerRequestMax)}, "", 0},
		{"balances over", &ledgerv1.GetBalancesRequest{Accounts: ids(queries.AccountsPerRequestMax + 1)}, "accounts",
			queries.AccountsPerRequestMax + 1},
		{"a packed list", &ledgerv1.DefineRulesRequest{Rules: []*ledgerv1.Rule{{Actions: make([]ledgerv1.RuleAction, RepeatedMaxDefault+1)}}},
			"rules[0].actions", RepeatedMaxDefault + 1},
		{"a list not listed: the default", &ledgerv1.CreateApiKeyRequest{Roles: ids(RepeatedMaxDefault + 1)}, "roles",
			RepeatedMaxDefault + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := proto.Marshal(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			over := overfullField(tc.req.ProtoReflect().Descriptor(), raw, "")
			switch {
			case tc.field == "" && over != nil:
				t.Errorf("refused at the bound: %s: %v", over.Field, over)
			case tc.field != "" && (over == nil || over.Field != tc.field || over.N != tc.n):
				t.Errorf("got %+v, want %s with %d items", over, tc.field, tc.n)
			}
		})
	}
}
