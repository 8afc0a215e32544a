package daemon_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// Result codes, short: the tests below name many of them.
const (
	codeCreated          = ledgerv1.ResultCode_RESULT_CODE_CREATED
	codeExists           = ledgerv1.ResultCode_RESULT_CODE_EXISTS
	codeAccountNotFound  = ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_NOT_FOUND
	codeAccountClosed    = ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_CLOSED
	codeAssetMismatch    = ledgerv1.ResultCode_RESULT_CODE_ASSET_MISMATCH
	codeInvalidAmount    = ledgerv1.ResultCode_RESULT_CODE_INVALID_AMOUNT
	codeBelowMin         = ledgerv1.ResultCode_RESULT_CODE_BELOW_MIN_BALANCE
	codeAboveMax         = ledgerv1.ResultCode_RESULT_CODE_ABOVE_MAX_BALANCE
	codeInvalidField     = ledgerv1.ResultCode_RESULT_CODE_INVALID_FIELD
	codePendingNotFound  = ledgerv1.ResultCode_RESULT_CODE_PENDING_NOT_FOUND
	codeAlreadyResolved  = ledgerv1.ResultCode_RESULT_CODE_PENDING_ALREADY_RESOLVED
	codePendingExpired   = ledgerv1.ResultCode_RESULT_CODE_PENDING_EXPIRED
	codeExceedsPending   = ledgerv1.ResultCode_RESULT_CODE_AMOUNT_EXCEEDS_PENDING
	codeTransferNotFound = ledgerv1.ResultCode_RESULT_CODE_TRANSFER_NOT_FOUND
	codeNotReversible    = ledgerv1.ResultCode_RESULT_CODE_NOT_REVERSIBLE
	codeAlreadyReversed  = ledgerv1.ResultCode_RESULT_CODE_ALREADY_REVERSED
	codeExceedsRemaining = ledgerv1.ResultCode_RESULT_CODE_AMOUNT_EXCEEDS_REMAINING
	codeHasPending       = ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_HAS_PENDING
	codeLinkedFailed     = ledgerv1.ResultCode_RESULT_CODE_LINKED_ITEM_FAILED
)

// want is an expected item outcome; an empty field is not checked.
type want struct {
	code  ledgerv1.ResultCode
	field string
}

// checkResults compares each item's code (and field, when wanted) in order.
func checkResults(t *testing.T, what string, got []*ledgerv1.ItemResult, wants ...want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("%s: %d results, want %d", what, len(got), len(wants))
	}
	for i, w := range wants {
		r := got[i]
		if r.GetCode() != w.code || (w.field != "" && r.GetField() != w.field) || r.GetIndex() != uint32(i) {
			t.Errorf("%s: item %d (%s): %s field %q index %d (%s), want %s field %q",
				what, i, r.GetId(), r.GetCode(), r.GetField(), r.GetIndex(), r.GetDetail(), w.code, w.field)
		}
	}
}

func created(n int) []want {
	out := make([]want, n)
	for i := range out {
		out[i] = want{code: codeCreated}
	}
	return out
}

func pendingTransfer(id, from, to, amount, asset string, timeoutSeconds uint32) *ledgerv1.Transfer {
	tr := transfer(id, from, to, amount, asset)
	tr.Pending, tr.TimeoutSeconds = true, timeoutSeconds
	return tr
}

func posting(from, to, amount, asset string) *ledgerv1.Posting {
	return &ledgerv1.Posting{DebitAccount: from, CreditAccount: to, Amount: amount, Asset: asset}
}

// transfers sends one non-atomic CreateTransfers request.
func (h *harness) transfers(t *testing.T, ledger string, ts ...*ledgerv1.Transfer) []*ledgerv1.ItemResult {
	t.Helper()
	resp, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: ts})
	testenv.NoError(t, err)
	return resp.GetResults()
}

// transferOK sends one transfer that must be created and returns its position.
func (h *harness) transferOK(t *testing.T, ledger string, tr *ledgerv1.Transfer) uint64 {
	t.Helper()
	rs := h.transfers(t, ledger, tr)
	mustCreated(t, rs...)
	return rs[0].GetPosition()
}

func (h *harness) post(t *testing.T, ledger string, posts ...*ledgerv1.PostPending) []*ledgerv1.ItemResult {
	t.Helper()
	resp, err := h.cmd.PostPendingTransfers(ctx(t), &ledgerv1.PostPendingTransfersRequest{Ledger: ledger, Posts: posts})
	testenv.NoError(t, err)
	return resp.GetResults()
}

func (h *harness) void(t *testing.T, ledger string, voids ...*ledgerv1.VoidPending) []*ledgerv1.ItemResult {
	t.Helper()
	resp, err := h.cmd.VoidPendingTransfers(ctx(t), &ledgerv1.VoidPendingTransfersRequest{Ledger: ledger, Voids: voids})
	testenv.NoError(t, err)
	return resp.GetResults()
}

func (h *harness) reverse(t *testing.T, ledger string, rs ...*ledgerv1.Reversal) []*ledgerv1.ItemResult {
	t.Helper()
	resp, err := h.cmd.ReverseTransfers(ctx(t), &ledgerv1.ReverseTransfersRequest{Ledger: ledger, Reversals: rs})
	testenv.NoError(t, err)
	return resp.GetResults()
}

func (h *harness) open(t *testing.T, ledger string, accounts ...*ledgerv1.Account) []*ledgerv1.ItemResult {
	t.Helper()
	resp, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: accounts})
	testenv.NoError(t, err)
	return resp.GetResults()
}

func (h *harness) setBounds(t *testing.T, ledger string, bounds ...*ledgerv1.AccountBounds) []*ledgerv1.ItemResult {
	t.Helper()
	resp, err := h.cmd.SetAccountBounds(ctx(t), &ledgerv1.SetAccountBoundsRequest{Ledger: ledger, Bounds: bounds})
	testenv.NoError(t, err)
	return resp.GetResults()
}

func (h *harness) closeAccounts(t *testing.T, ledger string, ids ...string) []*ledgerv1.ItemResult {
	t.Helper()
	resp, err := h.cmd.CloseAccounts(ctx(t), &ledgerv1.CloseAccountsRequest{Ledger: ledger, AccountIds: ids})
	testenv.NoError(t, err)
	return resp.GetResults()
}

func usdAccount(id string, minBalance, maxBalance *string) *ledgerv1.Account {
	return &ledgerv1.Account{Id: id, Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT,
		MinBalance: minBalance, MaxBalance: maxBalance}
}

func ptr(s string) *string { return &s }

// balances reads accounts once the projection reached pos, by account id.
func (h *harness) balances(t *testing.T, ledger string, pos uint64, accounts ...string) map[string]*ledgerv1.Balance {
	t.Helper()
	resp, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: accounts, MinPosition: pos})
	testenv.NoError(t, err)
	if resp.GetPosition() < pos {
		t.Fatalf("GetBalances reflects position %d, asked for at least %d", resp.GetPosition(), pos)
	}
	out := make(map[string]*ledgerv1.Balance, len(accounts))
	for _, b := range resp.GetBalances() {
		out[b.GetAccount()] = b
	}
	return out
}

// summary is a balance as "balance available | debits/credits posted | debits/credits pending".
func summary(b *ledgerv1.Balance) string {
	if b == nil {
		return "absent"
	}
	return fmt.Sprintf("%s %s | %s/%s | %s/%s", b.GetBalance(), b.GetAvailable(),
		b.GetDebitsPosted(), b.GetCreditsPosted(), b.GetDebitsPending(), b.GetCreditsPending())
}

// checkBalances compares accounts' summaries at (at least) pos with want.
func (h *harness) checkBalances(t *testing.T, what, ledger string, pos uint64, want map[string]string) {
	t.Helper()
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	got := h.balances(t, ledger, pos, ids...)
	for _, id := range ids {
		if s := summary(got[id]); s != want[id] {
			t.Errorf("%s: %s is %q, want %q", what, id, s, want[id])
		}
	}
}

// zero is an untouched account's summary, in a scale-2 asset.
const zero = "0.00 0.00 | 0.00/0.00 | 0.00/0.00"

// countEvents counts the ledger's events of a type with a command id.
func (h *harness) countEvents(t *testing.T, ledger, typ, commandID string) int {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	var n int
	testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT count(*) FROM events WHERE ledger = $1 AND type = $2 AND command_id = $3`,
		ledger, typ, commandID).Scan(&n))
	return n
}

// cents parses a scale-2 decimal string ("-12.30") into hundredths.
func cents(t *testing.T, s string) int64 {
	t.Helper()
	neg := strings.HasPrefix(s, "-")
	whole, frac, _ := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	if len(frac) != 2 {
		t.Fatalf("amount %q: want 2 fractional digits", s)
	}
	n, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil {
		t.Fatalf("amount %q: %v", s, err)
	}
	if neg {
		return -n
	}
	return n
}

// newKey is a fresh admin key: every test's ledgerd is given one
// (-admin-key) and its clients send it, so that auth runs in every test.
func newKey(t testing.TB) string {
	t.Helper()
	key, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	return key
}

// auth makes a client send the harness's admin key.
func (h *harness) auth() grpc.DialOption { return grpc.WithPerRPCCredentials(apikeys.Bearer(h.key)) }
