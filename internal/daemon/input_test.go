package daemon_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// Tests of bad input through a real ledgerd: each refused with a precise
// error naming the field, and nothing changed.

// TestEmptyBoundIsRefused: "" as min_balance or max_balance is not "no
// bound" (which would open an account without its overdraft protection, or
// silently lift it): it is INVALID_AMOUNT naming the field, over gRPC and
// REST, and nothing is recorded. Absent is no bound, and is how a bound is
// removed on purpose.
func TestEmptyBoundIsRefused(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger) // carol has min_balance 0
	head := h.head(t, ledger)

	checkResults(t, "open, empty min", h.open(t, ledger, usdAccount("dave", ptr(""), nil)), want{codeInvalidAmount, "min_balance"})
	checkResults(t, "open, empty max", h.open(t, ledger, usdAccount("dave", ptr("0"), ptr(""))), want{codeInvalidAmount, "max_balance"})
	checkResults(t, "bounds, empty min", h.setBounds(t, ledger, &ledgerv1.AccountBounds{AccountId: "carol", MinBalance: ptr("")}),
		want{codeInvalidAmount, "min_balance"})
	checkResults(t, "bounds, empty max", h.setBounds(t, ledger, &ledgerv1.AccountBounds{AccountId: "carol", MinBalance: ptr("0"), MaxBalance: ptr("")}),
		want{codeInvalidAmount, "max_balance"})

	path := "/v1/ledgers/" + ledger
	var r struct{ Results []restItem }
	h.rest(t, "POST", path+"/accounts", `{"accounts": [{"id": "dave", "asset": "USD", "normal_balance": "NORMAL_BALANCE_CREDIT", "min_balance": ""}]}`,
		http.StatusOK, &r)
	if len(r.Results) != 1 || r.Results[0].Code != "RESULT_CODE_INVALID_AMOUNT" || r.Results[0].Field != "min_balance" {
		t.Errorf("REST open with an empty min: %+v, want INVALID_AMOUNT naming min_balance", r.Results)
	}
	h.rest(t, "POST", path+"/accounts:setBounds", `{"bounds": [{"account_id": "carol", "min_balance": ""}]}`, http.StatusOK, &r)
	if len(r.Results) != 1 || r.Results[0].Code != "RESULT_CODE_INVALID_AMOUNT" || r.Results[0].Field != "min_balance" {
		t.Errorf("REST bounds with an empty min: %+v, want INVALID_AMOUNT naming min_balance", r.Results)
	}

	// Nothing recorded: no event, and carol is still protected.
	if got := h.head(t, ledger); got != head {
		t.Fatalf("head %d after refused items, want %d", got, head)
	}
	checkResults(t, "overdraft of carol", h.transfers(t, ledger, transfer("t1", "carol", "bob", "0.01", "USD")), want{codeBelowMin, ""})

	// Removing the bound on purpose: the field absent (JSON null too).
	h.rest(t, "POST", path+"/accounts:setBounds", `{"bounds": [{"account_id": "carol", "min_balance": null}]}`, http.StatusOK, &r)
	if len(r.Results) != 1 || r.Results[0].Code != "RESULT_CODE_CREATED" {
		t.Fatalf("REST bounds with a null min: %+v, want CREATED", r.Results)
	}
	checkResults(t, "overdraft of carol, no bound", h.transfers(t, ledger, transfer("t1", "carol", "bob", "0.01", "USD")), want{codeCreated, ""})
}

// TestAmountGrammar: one canonical grammar for every amount on the wire;
// anything else is INVALID_AMOUNT naming the field, and nothing changes.
func TestAmountGrammar(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	for i, bad := range []string{"01.00", "+1", "-0", "-0.00", "1e2", " 1", "1.", ".5", "00", "1,00", ""} {
		head := h.head(t, ledger)
		checkResults(t, "transfer of "+bad, h.transfers(t, ledger, transfer(fmt.Sprintf("bad%d", i), "alice", "bob", bad, "USD")),
			want{codeInvalidAmount, "postings[0].amount"})
		checkResults(t, "min_balance "+bad, h.setBounds(t, ledger, &ledgerv1.AccountBounds{AccountId: "carol", MinBalance: ptr(bad)}),
			want{codeInvalidAmount, "min_balance"})
		if got := h.head(t, ledger); got != head {
			t.Fatalf("head %d after %q was refused, want %d", got, bad, head)
		}
	}
	checkResults(t, "canonical", h.transfers(t, ledger, transfer("t1", "alice", "bob", "0.50", "USD"), transfer("t2", "alice", "bob", "12.5", "USD"),
		transfer("t3", "alice", "bob", "7", "USD")), want{codeCreated, ""}, want{codeCreated, ""}, want{codeCreated, ""})
	checkResults(t, "more fractional digits than the scale", h.transfers(t, ledger, transfer("t4", "alice", "bob", "12.500", "USD")),
		want{codeInvalidAmount, "postings[0].amount"})
	checkResults(t, "negative bound", h.setBounds(t, ledger, &ledgerv1.AccountBounds{AccountId: "carol", MinBalance: ptr("-10.00")}),
		want{codeCreated, ""})
}

// TestReversalCodes: ALREADY_REVERSED when nothing is left of the original,
// AMOUNT_EXCEEDS_REMAINING when a reversal asks more than is left, and a
// reversal reusing its original's id is INVALID_FIELD naming id.
func TestReversalCodes(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	h.transferOK(t, ledger, transfer("t1", "alice", "bob", "10.00", "USD"))
	rev := func(id, of string, amounts ...string) *ledgerv1.Reversal {
		return &ledgerv1.Reversal{Id: id, TransferId: of, Amounts: amounts}
	}
	exceeds := codeExceedsRemaining

	got := h.reverse(t, ledger, rev("r0", "t1", "10.01"))
	checkResults(t, "more than the original", got, want{exceeds, "amounts[0]"})
	checkResults(t, "part", h.reverse(t, ledger, rev("r1", "t1", "4.00")), want{codeCreated, ""})
	got = h.reverse(t, ledger, rev("r2", "t1", "7.00"))
	checkResults(t, "more than is left", got, want{exceeds, "amounts[0]"})
	if d := got[0].GetDetail(); !strings.Contains(d, "6.00 left") {
		t.Errorf("detail %q, want it to say 6.00 is left", d)
	}
	checkResults(t, "the rest", h.reverse(t, ledger, rev("r3", "t1")), want{codeCreated, ""})
	checkResults(t, "in full again", h.reverse(t, ledger, rev("r4", "t1")), want{codeAlreadyReversed, "transfer_id"})
	checkResults(t, "a part again", h.reverse(t, ledger, rev("r5", "t1", "0.01")), want{codeAlreadyReversed, "transfer_id"})
	got = h.reverse(t, ledger, rev("t1", "t1"))
	checkResults(t, "the original's id", got, want{codeInvalidField, "id"})
	if d := got[0].GetDetail(); !strings.Contains(d, "id of its own") {
		t.Errorf("detail %q, want it to say a reversal needs an id of its own", d)
	}
	h.checkBalances(t, "after the reversals", ledger, h.head(t, ledger), map[string]string{"bob": "0.00 0.00 | 10.00/10.00 | 0.00/0.00"})
}

// rawCodec sends bytes as they are, so that a test can send what no proto
// marshaler would: strings that are not UTF-8.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }
func (rawCodec) Name() string                       { return "proto" }

// badUTF8 marshals m, whose strings hold "@@@@" where bytes that are not
// UTF-8 go, and swaps them in.
func badUTF8(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	testenv.NoError(t, err)
	return bytes.ReplaceAll(b, []byte("@@@@"), []byte("\xff\xfe\xfd\xfc"))
}

// TestInvalidUTF8IsInvalidArgument: a request whose strings are not UTF-8
// (which grpc-go answers Internal) is InvalidArgument naming the field,
// counted in the metrics under that code, and changes nothing; in a stream
// too.
func TestInvalidUTF8IsInvalidArgument(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	head := h.head(t, ledger)
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	defer conn.Close()

	const method = "/ledger.v1.CommandService/OpenAccounts"
	req := badUTF8(t, &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: []*ledgerv1.Account{
		{Id: "dave", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT},
		{Id: "erin@@@@", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT}}})
	for range 2 {
		err = conn.Invoke(ctx(t), method, req, &ledgerv1.OpenAccountsResponse{}, grpc.ForceCodec(rawCodec{}))
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "accounts[1].id" {
			t.Fatalf("OpenAccounts with a bad id: %v (field %q), want InvalidArgument naming accounts[1].id", err, fieldOf(st))
		}
	}
	if got := h.head(t, ledger); got != head {
		t.Fatalf("head %d after a refused request, want %d", got, head)
	}
	checkResults(t, "dave afterwards", h.open(t, ledger, usdAccount("dave", nil, nil)), want{codeCreated, ""})

	// Counted as the client's error, under its method.
	metric := fmt.Sprintf(`ledger_grpc_request_duration_seconds_count{code="InvalidArgument",method=%q} 2`, method)
	if !hasLine(h.rest(t, "GET", "/metrics", "", http.StatusOK, nil), metric) {
		t.Errorf("/metrics has no line %s", metric)
	}

	// A server stream: the request is refused the same way.
	stream, err := conn.NewStream(ctx(t), &grpc.StreamDesc{ServerStreams: true}, "/ledger.v1.AuditService/ReadEvents", grpc.ForceCodec(rawCodec{}))
	testenv.NoError(t, err)
	testenv.NoError(t, stream.SendMsg(badUTF8(t, &ledgerv1.ReadEventsRequest{Ledger: ledger + "@@@@"})))
	testenv.NoError(t, stream.CloseSend())
	err = stream.RecvMsg(&ledgerv1.ReadEventsResponse{})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "ledger" {
		t.Errorf("ReadEvents with a bad ledger: %v (field %q), want InvalidArgument naming ledger", err, fieldOf(st))
	}
}

func hasLine(text []byte, line string) bool {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if sc.Text() == line {
			return true
		}
	}
	return false
}

// TestRESTDecodeFaultShape: a body the gateway cannot decode answers in the
// shape of every other InvalidArgument (a bad ledger name, refused by the
// server): a google.rpc.BadRequest naming the proto field, the message
// "field: reason"; and nothing is recorded.
func TestRESTDecodeFaultShape(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	head := h.head(t, ledger)
	check := func(what string, e restError, field string) {
		t.Helper()
		checkViolation(t, e, field)
		if len(e.Details) != 1 || len(e.Details[0].FieldViolations) != 1 ||
			e.Message != field+": "+e.Details[0].FieldViolations[0].Description {
			t.Errorf("%s: %+v, want one violation and the message %q", what, e, field+": <description>")
		}
	}
	var e restError
	h.rest(t, "POST", "/v1/ledgers/Bad_Ledger/transfers", `{"transfers": [{"id": "t1",
		"postings": [{"debit_account": "alice", "credit_account": "bob", "amount": "1.00", "asset": "USD"}]}]}`, http.StatusBadRequest, &e)
	check("bad ledger (the server's refusal)", e, "ledger")
	for _, tc := range []struct{ name, path, body, field string }{
		{"bad timestamp", "/transfers", `{"transfers": [{"id": "t1", "effective_at": "yesterday",
			"postings": [{"debit_account": "alice", "credit_account": "bob", "amount": "1.00", "asset": "USD"}]}]}`, "transfers[0].effective_at"},
		{"bad enum", "/accounts", `{"accounts": [{"id": "dave", "asset": "USD", "normal_balance": "SIDEWAYS"}]}`, "accounts[0].normal_balance"},
		{"wrong type", "/transfers", `{"transfers": [{"id": "t1",
			"postings": [{"debit_account": "alice", "credit_account": "bob", "amount": 1, "asset": "USD"}]}]}`, "transfers[0].postings[0].amount"},
	} {
		var e restError
		h.rest(t, "POST", "/v1/ledgers/"+ledger+tc.path, tc.body, http.StatusBadRequest, &e)
		check(tc.name, e, tc.field)
	}
	if got := h.head(t, ledger); got != head {
		t.Fatalf("head %d after refused requests, want %d", got, head)
	}
}
