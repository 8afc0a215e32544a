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
// wire, all of a field's elements in the request together, against its
// field's bound times the bounds of the lists it is in, at any depth, and
// named as a client names it; at the bound nothing is refused.
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
		// One transfer over its own bounds is its item's fault (the
		// domain answers it in its result); only more than a request of
		// the most items could hold is refused whole.
		{"one transfer's postings over", transfers(3, domain.PostingsPerTransfer+1, 0), "", 0},
		{"one transfer's metadata over", transfers(2, 1, domain.MetadataKeysMax+1), "", 0},
		{"postings over in all", transfers(2, domain.PostingsPerTransfer*commands.ItemsPerRequestMax+1, 0), "transfers[].postings",
			domain.PostingsPerTransfer*commands.ItemsPerRequestMax + 1},
		{"metadata over in all", transfers(1, 0, domain.MetadataKeysMax*commands.ItemsPerRequestMax+1), "transfers[].metadata",
			domain.MetadataKeysMax*commands.ItemsPerRequestMax + 1},
		{"balances at the bound", &ledgerv1.GetBalancesRequest{Accounts: ids(queries.AccountsPerRequestMax)}, "", 0},
		{"balances over", &ledgerv1.GetBalancesRequest{Accounts: ids(queries.AccountsPerRequestMax + 1)}, "accounts",
			queries.AccountsPerRequestMax + 1},
		{"a packed list over in all", &ledgerv1.DefineRulesRequest{Rules: []*ledgerv1.Rule{
			{Actions: make([]ledgerv1.RuleAction, RepeatedMaxDefault*domain.RulesPerRequestMax+1)}}},
			"rules[].actions", RepeatedMaxDefault*domain.RulesPerRequestMax + 1},
		{"a list not listed: the default", &ledgerv1.CreateApiKeyRequest{Roles: ids(RepeatedMaxDefault + 1)}, "roles",
			RepeatedMaxDefault + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := proto.Marshal(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			over := overfullField(tc.req.ProtoReflect().Descriptor(), raw)
			switch {
			case tc.field == "" && over != nil:
				t.Errorf("refused at the bound: %s: %v", over.Field, over)
			case tc.field != "" && (over == nil || over.Field != tc.field || over.N != tc.n):
				t.Errorf("got %+v, want %s with %d items", over, tc.field, tc.n)
			}
		})
	}
}

// TestOverfullFieldAllocatesNothing: the count runs on every request, so a
// request within its bounds costs it no allocation.
func TestOverfullFieldAllocatesNothing(t *testing.T) {
	req := &ledgerv1.CreateTransfersRequest{Ledger: "x"}
	for i := range 1000 {
		req.Transfers = append(req.Transfers, &ledgerv1.Transfer{Id: fmt.Sprint(i), Metadata: map[string]string{"a": "b", "c": "d"},
			Postings: []*ledgerv1.Posting{{DebitAccount: "a", CreditAccount: "b", Asset: "USD", Amount: "1.00"}, {DebitAccount: "b", CreditAccount: "c", Asset: "USD", Amount: "1.00"}}})
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	md := req.ProtoReflect().Descriptor()
	if n := testing.AllocsPerRun(10, func() { _ = overfullField(md, raw) }); n != 0 {
		t.Errorf("%.0f allocations counting a request of 1,000 transfers, want none", n)
	}
}

// BenchmarkOverfullField: the count a CreateTransfers of 1,000 transfers
// costs, beside decoding it (what the server did before the count).
func BenchmarkOverfullField(b *testing.B) {
	req := &ledgerv1.CreateTransfersRequest{Ledger: "x"}
	for i := range 1000 {
		req.Transfers = append(req.Transfers, &ledgerv1.Transfer{Id: fmt.Sprint(i), Metadata: map[string]string{"a": "b"},
			Postings: []*ledgerv1.Posting{{DebitAccount: "a", CreditAccount: "b", Asset: "USD", Amount: "1.00"}}})
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	md := req.ProtoReflect().Descriptor()
	b.Run("count", func(b *testing.B) {
		for b.Loop() {
			_ = overfullField(md, raw)
		}
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			var m ledgerv1.CreateTransfersRequest
			_ = proto.Unmarshal(raw, &m)
		}
	})
}
