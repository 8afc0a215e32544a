package daemon_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestOnlyDefineAssetCreatesALedger: any other command to a ledger with no
// events is refused, naming the ledger, and creates nothing.
func TestOnlyDefineAssetCreatesALedger(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	_, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
		Transfers: []*ledgerv1.Transfer{transfer("t1", "a", "b", "1.00", "USD")}})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "ledger" {
		t.Fatalf("transfer to an unknown ledger: %v, want InvalidArgument on ledger", err)
	}
	bad, err := h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "usd", Scale: 2})
	testenv.NoError(t, err)
	if bad.GetResult().GetCode() != ledgerv1.ResultCode_RESULT_CODE_INVALID_FIELD {
		t.Fatalf("malformed asset: %s", bad.GetResult().GetCode())
	}
	if head := h.head(t, ledger); head != 0 {
		t.Fatalf("refused commands left %d events", head)
	}
	_, err = h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger,
		Accounts: []*ledgerv1.Account{{Id: "a", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT}}})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument {
		t.Fatalf("open in an unknown ledger after a refused DefineAsset: %v, want InvalidArgument", err)
	}
	h.setup(t, ledger) // DefineAsset creates it; everything else follows
	if head := h.head(t, ledger); head == 0 {
		t.Fatal("setup appended nothing")
	}
}
