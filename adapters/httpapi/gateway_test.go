package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ledgerd/ledger/adapters/httpapi"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// call is what the fake gRPC server saw of one call.
type call struct {
	method string
	req    proto.Message
	md     metadata.MD
}

// fake is a gRPC server whose interceptor records every call and answers
// with reply (or err) without reaching the services, which are Unimplemented.
type fake struct {
	mu    sync.Mutex
	calls []call
	reply proto.Message
	err   error
}

func (f *fake) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{method: info.FullMethod, req: proto.Clone(req.(proto.Message)), md: md})
	if f.err != nil {
		return nil, f.err
	}
	if f.reply != nil {
		return f.reply, nil
	}
	// An empty reply of the method's response type.
	svc, method, _ := strings.Cut(strings.TrimPrefix(info.FullMethod, "/"), "/")
	out := ledgerv1.File_ledger_v1_ledger_proto.Services().ByName(protoreflect.FullName(svc).Name()).
		Methods().ByName(protoreflect.Name(method)).Output()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(out.FullName())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reply type: %v", err)
	}
	return mt.New().Interface(), nil
}

// last is the fake's latest call.
func (f *fake) last(t *testing.T) call {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("no gRPC call reached the server")
	}
	return f.calls[len(f.calls)-1]
}

func (f *fake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// serve starts the fake on loopback and a gateway in front of it.
func serve(t *testing.T, opts httpapi.Options) (*fake, *httptest.Server) {
	t.Helper()
	f := &fake{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(f.intercept))
	ledgerv1.RegisterCommandServiceServer(srv, ledgerv1.UnimplementedCommandServiceServer{})
	ledgerv1.RegisterQueryServiceServer(srv, ledgerv1.UnimplementedQueryServiceServer{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	gw, err := httpapi.NewGateway(lis.Addr().String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	hs := httptest.NewServer(gw)
	t.Cleanup(hs.Close)
	return f, hs
}

// do sends one request and returns the status and the body.
func do(t *testing.T, hs *httptest.Server, method, path, body string, header ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, hs.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func ts(s string) *timestamppb.Timestamp {
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return timestamppb.New(tm)
}

func ptr(s string) *string { return &s }

const (
	cmdSvc   = "/ledger.v1.CommandService/"
	querySvc = "/ledger.v1.QueryService/"
)

// routes is every HTTP rule of ledger.gateway.yaml with the gRPC call it
// must become.
var routes = []struct {
	name, method, path, body string
	wantMethod               string
	wantReq                  proto.Message
}{
	{"DefineAsset", "POST", "/v1/ledgers/demo/assets", `{"code":"USD","scale":2}`,
		cmdSvc + "DefineAsset", &ledgerv1.DefineAssetRequest{Ledger: "demo", Code: "USD", Scale: 2}},
	{"OpenAccounts", "POST", "/v1/ledgers/demo/accounts",
		`{"accounts":[{"id":"users:42:wallet","asset":"USD","normal_balance":"NORMAL_BALANCE_CREDIT","min_balance":"0","metadata":{"k":"v"}}],"atomic":true}`,
		cmdSvc + "OpenAccounts", &ledgerv1.OpenAccountsRequest{Ledger: "demo", Atomic: true, Accounts: []*ledgerv1.Account{
			{Id: "users:42:wallet", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT, MinBalance: ptr("0"), Metadata: map[string]string{"k": "v"}}}}},
	{"CreateTransfers", "POST", "/v1/ledgers/demo/transfers",
		`{"transfers":[{"id":"t1","postings":[{"debit_account":"a","credit_account":"b","amount":"10.00","asset":"USD"}],"effective_at":"2026-01-02T03:04:05Z","pending":true,"timeout_seconds":60}],"return_balances":true}`,
		cmdSvc + "CreateTransfers", &ledgerv1.CreateTransfersRequest{Ledger: "demo", ReturnBalances: true, Transfers: []*ledgerv1.Transfer{{
			Id: "t1", Postings: []*ledgerv1.Posting{{DebitAccount: "a", CreditAccount: "b", Amount: "10.00", Asset: "USD"}},
			EffectiveAt: ts("2026-01-02T03:04:05Z"), Pending: true, TimeoutSeconds: 60}}}},
	{"PostPendingTransfers", "POST", "/v1/ledgers/demo/transfers:post", `{"posts":[{"id":"p1","pending_id":"t1","amounts":["4.00"]}]}`,
		cmdSvc + "PostPendingTransfers", &ledgerv1.PostPendingTransfersRequest{Ledger: "demo",
			Posts: []*ledgerv1.PostPending{{Id: "p1", PendingId: "t1", Amounts: []string{"4.00"}}}}},
	{"VoidPendingTransfers", "POST", "/v1/ledgers/demo/transfers:void", `{"voids":[{"id":"v1","pending_id":"t1"}],"atomic":true}`,
		cmdSvc + "VoidPendingTransfers", &ledgerv1.VoidPendingTransfersRequest{Ledger: "demo", Atomic: true,
			Voids: []*ledgerv1.VoidPending{{Id: "v1", PendingId: "t1"}}}},
	{"ReverseTransfers", "POST", "/v1/ledgers/demo/transfers:reverse", `{"reversals":[{"id":"r1","transfer_id":"t1"}]}`,
		cmdSvc + "ReverseTransfers", &ledgerv1.ReverseTransfersRequest{Ledger: "demo",
			Reversals: []*ledgerv1.Reversal{{Id: "r1", TransferId: "t1"}}}},
	{"SetAccountBounds", "POST", "/v1/ledgers/demo/accounts:setBounds", `{"bounds":[{"account_id":"a","min_balance":"-5"}]}`,
		cmdSvc + "SetAccountBounds", &ledgerv1.SetAccountBoundsRequest{Ledger: "demo",
			Bounds: []*ledgerv1.AccountBounds{{AccountId: "a", MinBalance: ptr("-5")}}}},
	{"SetAccountMetadata", "POST", "/v1/ledgers/demo/accounts:setMetadata", `{"accounts":[{"account_id":"a","metadata":{"tier":"gold"}}]}`,
		cmdSvc + "SetAccountMetadata", &ledgerv1.SetAccountMetadataRequest{Ledger: "demo",
			Accounts: []*ledgerv1.AccountMetadata{{AccountId: "a", Metadata: map[string]string{"tier": "gold"}}}}},
	{"CloseAccounts", "POST", "/v1/ledgers/demo/accounts:close", `{"account_ids":["a","b"]}`,
		cmdSvc + "CloseAccounts", &ledgerv1.CloseAccountsRequest{Ledger: "demo", AccountIds: []string{"a", "b"}}},
	{"ClosePeriod", "POST", "/v1/ledgers/demo/periods", `{"end":"2026-11-30T00:00:00Z"}`,
		cmdSvc + "ClosePeriod", &ledgerv1.ClosePeriodRequest{Ledger: "demo", End: ts("2026-11-30T00:00:00Z")}},
	{"DefineCategories", "POST", "/v1/ledgers/demo/categories", `{"categories":[{"name":"assets:cash","parent":"assets","patterns":["bank:*"]}]}`,
		cmdSvc + "DefineCategories", &ledgerv1.DefineCategoriesRequest{Ledger: "demo",
			Categories: []*ledgerv1.Category{{Name: "assets:cash", Parent: "assets", Patterns: []string{"bank:*"}}}}},
	{"ListAssets", "GET", "/v1/ledgers/demo/assets?cursor=c&limit=5", "",
		querySvc + "ListAssets", &ledgerv1.ListAssetsRequest{Ledger: "demo", Cursor: "c", Limit: 5}},
	{"ListAccounts", "GET", "/v1/ledgers/demo/accounts?pattern=users:*:wallet&status=ACCOUNT_STATUS_OPEN&metadata[tier]=gold&include_balances=true&limit=50", "",
		querySvc + "ListAccounts", &ledgerv1.ListAccountsRequest{Ledger: "demo", Pattern: "users:*:wallet",
			Status: ledgerv1.AccountStatus_ACCOUNT_STATUS_OPEN, Metadata: map[string]string{"tier": "gold"}, IncludeBalances: true, Limit: 50}},
	{"ListCategories", "GET", "/v1/ledgers/demo/categories?limit=10", "",
		querySvc + "ListCategories", &ledgerv1.ListCategoriesRequest{Ledger: "demo", Limit: 10}},
	{"GetCategoryBalances", "GET", "/v1/ledgers/demo/category-balances?category=assets&as_of_position=40", "",
		querySvc + "GetCategoryBalances", &ledgerv1.GetCategoryBalancesRequest{Ledger: "demo", Category: "assets", AsOfPosition: 40}},
	{"ListPeriods", "GET", "/v1/ledgers/demo/periods?after_position=12&limit=5", "",
		querySvc + "ListPeriods", &ledgerv1.ListPeriodsRequest{Ledger: "demo", AfterPosition: 12, Limit: 5}},
	{"GetBalances", "GET", "/v1/ledgers/demo/balances?accounts=a&accounts=users:42:wallet&min_position=7&consistency=CONSISTENCY_STRONG", "",
		querySvc + "GetBalances", &ledgerv1.GetBalancesRequest{Ledger: "demo", Accounts: []string{"a", "users:42:wallet"},
			MinPosition: 7, Consistency: ledgerv1.Consistency_CONSISTENCY_STRONG}},
	{"GetBalances as of a time", "GET", "/v1/ledgers/demo/balances?accounts=a&as_of_time=2026-01-02T03:04:05Z&time_basis=TIME_BASIS_EFFECTIVE", "",
		querySvc + "GetBalances", &ledgerv1.GetBalancesRequest{Ledger: "demo", Accounts: []string{"a"},
			AsOfTime: ts("2026-01-02T03:04:05Z"), TimeBasis: ledgerv1.TimeBasis_TIME_BASIS_EFFECTIVE}},
	{"GetBalances batchGet", "POST", "/v1/ledgers/demo/balances:batchGet", `{"accounts":["a","b"],"min_position":"9"}`,
		querySvc + "GetBalances", &ledgerv1.GetBalancesRequest{Ledger: "demo", Accounts: []string{"a", "b"}, MinPosition: 9}},
	{"ListStatement", "GET", "/v1/ledgers/demo/accounts/users:42:wallet/statement?limit=10&include_pending=true&from_time=2026-01-01T00:00:00Z&cursor=abc", "",
		querySvc + "ListStatement", &ledgerv1.ListStatementRequest{Ledger: "demo", Account: "users:42:wallet", Limit: 10,
			IncludePending: true, FromTime: ts("2026-01-01T00:00:00Z"), Cursor: "abc"}},
	{"GetTransfers", "GET", "/v1/ledgers/demo/transfers/t1,order:2?min_position=3", "",
		querySvc + "GetTransfers", &ledgerv1.GetTransfersRequest{Ledger: "demo", Ids: []string{"t1", "order:2"}, MinPosition: 3}},
	{"GetTransfers one id with a colon", "GET", "/v1/ledgers/demo/transfers/order:2", "",
		querySvc + "GetTransfers", &ledgerv1.GetTransfersRequest{Ledger: "demo", Ids: []string{"order:2"}}},
	{"GetTransfers batchGet", "POST", "/v1/ledgers/demo/transfers:batchGet", `{"ids":["t1","t2"]}`,
		querySvc + "GetTransfers", &ledgerv1.GetTransfersRequest{Ledger: "demo", Ids: []string{"t1", "t2"}}},
	{"ListTransfers", "GET", "/v1/ledgers/demo/transfers?account=a&status=TRANSFER_STATUS_PENDING&limit=5&metadata_key=k", "",
		querySvc + "ListTransfers", &ledgerv1.ListTransfersRequest{Ledger: "demo", Account: "a",
			Status: ledgerv1.TransferStatus_TRANSFER_STATUS_PENDING, Limit: 5, MetadataKey: "k"}},
	{"ListTransfers by asset, amounts and times", "GET", "/v1/ledgers/demo/transfers?asset=USD&min_amount=1.00&max_amount=2&effective_from=2026-01-01T00:00:00Z&recorded_to=2026-02-01T00:00:00Z", "",
		querySvc + "ListTransfers", &ledgerv1.ListTransfersRequest{Ledger: "demo", Asset: "USD", MinAmount: "1.00", MaxAmount: "2",
			EffectiveFrom: ts("2026-01-01T00:00:00Z"), RecordedTo: ts("2026-02-01T00:00:00Z")}},
	{"ListAccounts with several metadata pairs", "GET", "/v1/ledgers/demo/accounts?asset=USD&metadata[tier]=gold&metadata[region]=eu&min_position=4", "",
		querySvc + "ListAccounts", &ledgerv1.ListAccountsRequest{Ledger: "demo", Asset: "USD",
			Metadata: map[string]string{"tier": "gold", "region": "eu"}, MinPosition: 4}},
	{"GetTrialBalance", "GET", "/v1/ledgers/demo/trial-balance?as_of_position=3", "",
		querySvc + "GetTrialBalance", &ledgerv1.GetTrialBalanceRequest{Ledger: "demo", AsOfPosition: 3}},
	{"GetProjectionStatus", "GET", "/v1/ledgers/demo/projections", "",
		querySvc + "GetProjectionStatus", &ledgerv1.GetProjectionStatusRequest{Ledger: "demo"}},
	{"GetProjectionStatus every ledger", "GET", "/v1/projections", "",
		querySvc + "GetProjectionStatus", &ledgerv1.GetProjectionStatusRequest{}},
}

func TestGatewayRoutes(t *testing.T) {
	f, hs := serve(t, httpapi.Options{})
	for _, rt := range routes {
		t.Run(rt.name, func(t *testing.T) {
			code, body := do(t, hs, rt.method, rt.path, rt.body)
			if code != http.StatusOK {
				t.Fatalf("%s %s: %d %s, want 200", rt.method, rt.path, code, body)
			}
			got := f.last(t)
			if got.method != rt.wantMethod {
				t.Errorf("%s %s called %s, want %s", rt.method, rt.path, got.method, rt.wantMethod)
			}
			if diff := cmp.Diff(rt.wantReq, got.req, protocmp.Transform()); diff != "" {
				t.Errorf("%s %s: request (-want +got):\n%s", rt.method, rt.path, diff)
			}
		})
	}
}

// TestGatewayRoutesEveryMethod fails when an RPC of CommandService or
// QueryService has no HTTP rule tested above (and so, likely, none at all).
func TestGatewayRoutesEveryMethod(t *testing.T) {
	tested := map[string]bool{}
	for _, rt := range routes {
		tested[rt.wantMethod] = true
	}
	for _, svc := range []string{"CommandService", "QueryService"} {
		methods := ledgerv1.File_ledger_v1_ledger_proto.Services().ByName(protoreflect.Name(svc)).Methods()
		for i := range methods.Len() {
			full := "/ledger.v1." + svc + "/" + string(methods.Get(i).Name())
			if !tested[full] {
				t.Errorf("%s has no route in the table (and maybe none in ledger.gateway.yaml)", full)
			}
		}
	}
}

func TestGatewayJSONShape(t *testing.T) {
	f, hs := serve(t, httpapi.Options{})
	f.reply = &ledgerv1.CreateTransfersResponse{Results: []*ledgerv1.ItemResult{{
		Index: 0, Id: "t1", Code: ledgerv1.ResultCode_RESULT_CODE_CREATED, Position: 12,
		Balances: []*ledgerv1.Balance{{Account: "a", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_DEBIT, DebitsPosted: "1.00"}},
	}}}
	code, body := do(t, hs, "POST", "/v1/ledgers/demo/transfers", `{"transfers":[]}`)
	if code != http.StatusOK {
		t.Fatalf("status %d %s, want 200", code, body)
	}
	// Proto names, enums by name, 64-bit integers as strings, zero values
	// (index 0, empty strings) left out.
	want := `{"results":[{"id":"t1","code":"RESULT_CODE_CREATED","position":"12",` +
		`"balances":[{"account":"a","normal_balance":"NORMAL_BALANCE_DEBIT","debits_posted":"1.00"}]}]}`
	if got, want := compact(t, body), compact(t, want); got != want {
		t.Errorf("body %s, want %s", got, want)
	}
}

func compact(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("body %q: %v", s, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// errorBody is grpc-gateway's JSON of a google.rpc.Status.
type errorBody struct {
	Code    codes.Code `json:"code"`
	Message string     `json:"message"`
	Details []struct {
		Type            string `json:"@type"`
		FieldViolations []struct {
			Field       string `json:"field"`
			Description string `json:"description"`
		} `json:"field_violations"`
	} `json:"details"`
}

func decodeError(t *testing.T, body string) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e
}

func TestGatewayErrors(t *testing.T) {
	badLedger, err := status.New(codes.InvalidArgument, "ledger: must match [a-z0-9][a-z0-9-]{0,62}").
		WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "ledger", Description: "must match [a-z0-9][a-z0-9-]{0,62}"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		err      error
		wantHTTP int
	}{
		{"InvalidArgument with BadRequest", badLedger.Err(), http.StatusBadRequest},
		{"Unimplemented", status.Error(codes.Unimplemented, "method ListStatement not implemented"), http.StatusNotImplemented},
		{"NotFound", status.Error(codes.NotFound, "no such thing"), http.StatusNotFound},
		{"Unavailable", status.Error(codes.Unavailable, "commit failed"), http.StatusServiceUnavailable},
		{"DeadlineExceeded", status.Error(codes.DeadlineExceeded, "position not reached"), http.StatusGatewayTimeout},
		{"ResourceExhausted", status.Error(codes.ResourceExhausted, "too many ledgers"), http.StatusTooManyRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, hs := serve(t, httpapi.Options{})
			f.err = tc.err
			code, body := do(t, hs, "POST", "/v1/ledgers/demo/transfers", `{}`)
			if code != tc.wantHTTP {
				t.Errorf("status %d, want %d", code, tc.wantHTTP)
			}
			got, want := decodeError(t, body), status.Convert(tc.err)
			if got.Code != want.Code() || got.Message != want.Message() {
				t.Errorf("error %d %q, want %d %q", got.Code, got.Message, want.Code(), want.Message())
			}
			if len(want.Details()) == 0 {
				return
			}
			if len(got.Details) != 1 || got.Details[0].Type != "type.googleapis.com/google.rpc.BadRequest" ||
				len(got.Details[0].FieldViolations) != 1 || got.Details[0].FieldViolations[0].Field != "ledger" {
				t.Errorf("details %s, want one BadRequest naming field ledger", body)
			}
		})
	}
}

func TestGatewayRefusals(t *testing.T) {
	const bodyMax = 64
	f, hs := serve(t, httpapi.Options{BodyMax: bodyMax})
	atMax := `{"code":"USD","scale":2}` + strings.Repeat(" ", bodyMax-len(`{"code":"USD","scale":2}`))
	for _, tc := range []struct {
		name, method, path, body string
		wantHTTP                 int
		wantCode                 codes.Code
	}{
		{"unknown path", "GET", "/v1/nothing/here", "", http.StatusNotFound, codes.NotFound},
		{"wrong method", "GET", "/v1/ledgers/demo/accounts:close", "", http.StatusMethodNotAllowed, codes.Unimplemented},
		{"unknown verb", "POST", "/v1/ledgers/demo/transfers:frobnicate", "{}", http.StatusNotFound, codes.NotFound},
		{"unknown JSON field", "POST", "/v1/ledgers/demo/transfers", `{"atomc":true}`, http.StatusBadRequest, codes.InvalidArgument},
		{"malformed JSON", "POST", "/v1/ledgers/demo/transfers", `{"transfers":`, http.StatusBadRequest, codes.InvalidArgument},
		{"bad enum name", "POST", "/v1/ledgers/demo/accounts", `{"accounts":[{"normal_balance":"SIDEWAYS"}]}`, http.StatusBadRequest, codes.InvalidArgument},
		{"bad query number", "GET", "/v1/ledgers/demo/balances?accounts=a&min_position=minus-one", "", http.StatusBadRequest, codes.InvalidArgument},
		{"body over the bound", "POST", "/v1/ledgers/demo/assets", atMax + " ", http.StatusRequestEntityTooLarge, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.count()
			code, body := do(t, hs, tc.method, tc.path, tc.body)
			if code != tc.wantHTTP {
				t.Errorf("status %d %s, want %d", code, body, tc.wantHTTP)
			}
			if e := decodeError(t, body); e.Code != tc.wantCode || e.Message == "" {
				t.Errorf("error %d %q, want code %d and a message", e.Code, e.Message, tc.wantCode)
			}
			if n := f.count(); n != before {
				t.Errorf("%d gRPC calls made, want none", n-before)
			}
		})
	}

	t.Run("body at the bound", func(t *testing.T) {
		if code, body := do(t, hs, "POST", "/v1/ledgers/demo/assets", atMax); code != http.StatusOK {
			t.Errorf("status %d %s, want 200", code, body)
		}
	})
	t.Run("chunked body over the bound", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A reader of unknown length: sent chunked, without Content-Length.
		body := io.MultiReader(strings.NewReader(`{"code":"` + strings.Repeat("U", bodyMax) + `"}`))
		req, err := http.NewRequestWithContext(ctx, "POST", hs.URL+"/v1/ledgers/demo/assets", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "too large") {
			t.Errorf("status %d %s, want 400 saying the body is too large", resp.StatusCode, b)
		}
	})
}

// TestGatewayForwardsAuthorization: API keys (bearer) reach the gRPC
// server, where authentication happens, as for a gRPC client.
func TestGatewayForwardsAuthorization(t *testing.T) {
	f, hs := serve(t, httpapi.Options{})
	if code, body := do(t, hs, "GET", "/v1/projections", "", "Authorization", "Bearer k3y"); code != http.StatusOK {
		t.Fatalf("status %d %s, want 200", code, body)
	}
	if got := f.last(t).md.Get("authorization"); len(got) != 1 || got[0] != "Bearer k3y" {
		t.Errorf("authorization metadata %q, want [Bearer k3y]", got)
	}
}

// TestGatewayDecodeFaultsNameTheField: a body or query the gateway cannot
// decode answers as every other bad field does (InvalidArgument, 400, a
// google.rpc.BadRequest naming the proto field in snake_case, the message
// "field: reason"), and reaches no server.
func TestGatewayDecodeFaultsNameTheField(t *testing.T) {
	f, hs := serve(t, httpapi.Options{})
	for _, tc := range []struct {
		name, method, path, body string
		field                    string
	}{
		{"bad timestamp", "POST", "/v1/ledgers/demo/transfers", `{"transfers": [{"id": "t1", "effective_at": "yesterday"}]}`,
			"transfers[0].effective_at"},
		{"bad timestamp, second item", "POST", "/v1/ledgers/demo/transfers",
			`{"transfers": [{"id": "t1"}, {"id": "t2", "effective_at": "2026-13-01T00:00:00Z"}]}`, "transfers[1].effective_at"},
		{"bad enum", "POST", "/v1/ledgers/demo/accounts", `{"accounts": [{"id": "a", "normal_balance": "SIDEWAYS"}]}`,
			"accounts[0].normal_balance"},
		{"number for a string", "POST", "/v1/ledgers/demo/transfers",
			`{"transfers": [{"id": "t1", "postings": [{"amount": "1.00"}, {"amount": 1.5}]}]}`, "transfers[0].postings[1].amount"},
		{"string for a bool", "POST", "/v1/ledgers/demo/transfers", `{"atomic": "yes", "transfers": []}`, "atomic"},
		{"string for a number", "POST", "/v1/ledgers/demo/assets", `{"code": "USD", "scale": "two"}`, "scale"},
		{"camelCase name, snake_case answer", "POST", "/v1/ledgers/demo/transfers", `{"transfers": [{"effectiveAt": 5}]}`,
			"transfers[0].effective_at"},
		{"object for a list", "POST", "/v1/ledgers/demo/transfers", `{"transfers": {"id": "t1"}}`, "transfers"},
		{"bad list element", "POST", "/v1/ledgers/demo/accounts:close", `{"account_ids": ["a", 7]}`, "account_ids[1]"},
		{"unknown field", "POST", "/v1/ledgers/demo/transfers", `{"transfers": [], "atomc": true}`, "atomc"},
		{"invalid UTF-8", "POST", "/v1/ledgers/demo/accounts", "{\"accounts\": [{\"id\": \"a\xff\"}]}", "accounts[0].id"},
		{"unknown nested field", "POST", "/v1/ledgers/demo/transfers", `{"transfers": [{"id": "t1", "pendng": true}]}`, "transfers[0].pendng"},
		{"malformed JSON", "POST", "/v1/ledgers/demo/transfers", `{"transfers":`, "CreateTransfersRequest"},
		{"a second request after the first", "POST", "/v1/ledgers/demo/assets", `{"code": "USD"} {"code": "EUR"}`, "DefineAssetRequest"},
		{"garbage after the request", "POST", "/v1/ledgers/demo/assets", "{\"code\": \"USD\"}\n]", "DefineAssetRequest"},
		{"bad query number", "GET", "/v1/ledgers/demo/balances?accounts=a&min_position=minus-one", "", "min_position"},
		{"bad query enum", "GET", "/v1/ledgers/demo/balances?accounts=a&consistency=NOPE", "", "consistency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.count()
			code, body := do(t, hs, tc.method, tc.path, tc.body)
			if code != http.StatusBadRequest {
				t.Errorf("status %d %s, want 400", code, body)
			}
			e := decodeError(t, body)
			if e.Code != codes.InvalidArgument || len(e.Details) != 1 || e.Details[0].Type != "type.googleapis.com/google.rpc.BadRequest" ||
				len(e.Details[0].FieldViolations) != 1 {
				t.Fatalf("error %s, want InvalidArgument with one BadRequest violation", body)
			}
			v := e.Details[0].FieldViolations[0]
			if v.Field != tc.field || v.Description == "" || e.Message != v.Field+": "+v.Description {
				t.Errorf("error %s, want a violation of %q and the message %q", body, tc.field, tc.field+": <reason>")
			}
			if strings.Contains(body, "(line ") || strings.ContainsRune(e.Message, 0) {
				t.Errorf("error %s carries the decoder's position or tag", body)
			}
			if n := f.count(); n != before {
				t.Errorf("%d gRPC calls made, want none", n-before)
			}
		})
	}
}

// manyKeys is a JSON object of exactly size bytes: the keys key(0),
// key(1), ... each with the value value, then last, a member of its own.
func manyKeys(size int, key func(i int) string, value, last string) string {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; b.Len()+len(key(i))+len(value)+len(last)+8 < size; i++ {
		fmt.Fprintf(&b, "%q:%s,", key(i), value)
	}
	b.WriteString(last)
	b.WriteString(strings.Repeat(" ", size-b.Len()-1))
	b.WriteString("}")
	return b.String()
}

// TestGatewayDecodeFaultOfManyKeys: a body of 1 MiB made of many keys is
// searched for its faulty field in one pass, in the body's order: the first
// unknown key of 1 MiB of them is named, and so is a bad value after 1 MiB
// of good ones. (The search sorted the keys by their place in the body,
// found by scanning the body in each comparison: hours for such a body. At
// the route's bound, 4 MiB, the good keys' case took 5–7 s under -race,
// close to do's 10 s on a busy box. See BenchmarkDecodeFaultManyKeys for
// its speed.)
func TestGatewayDecodeFaultOfManyKeys(t *testing.T) {
	f, hs := serve(t, httpapi.Options{})
	for _, tc := range []struct {
		name, path, body, field string
	}{
		{"unknown keys", "/v1/ledgers/demo/balances:batchGet",
			manyKeys(1<<20, func(i int) string { return fmt.Sprintf("k%d", i) }, "0", `"k":0`), "k0"},
		{"good keys, then a bad value", "/v1/ledgers/demo/assets",
			manyKeys(1<<20, func(int) string { return "code" }, `"USD"`, `"scale":"two"`), "scale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.count()
			code, body := do(t, hs, "POST", tc.path, tc.body)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d %.200s, want 400", code, body)
			}
			if e := decodeError(t, body); len(e.Details) != 1 || len(e.Details[0].FieldViolations) != 1 ||
				e.Details[0].FieldViolations[0].Field != tc.field {
				t.Errorf("error %.300s, want a violation of %q", body, tc.field)
			}
			if n := f.count(); n != before {
				t.Errorf("%d gRPC calls made, want none", n-before)
			}
		})
	}
}

// TestGatewayRefusesWhatAWebPageCouldSend: a body that is not declared
// JSON (text/plain, a form, no type: what a page of another site may make
// a browser send without a preflight) is refused with 415, and any request
// a browser says comes from another site with 403; neither reaches the
// server. JSON, NDJSON (the import's lines) and a browser's own page pass.
func TestGatewayRefusesWhatAWebPageCouldSend(t *testing.T) {
	f, hs := serve(t, httpapi.Options{})
	const asset = `{"code":"USD","scale":2}`
	for _, tc := range []struct {
		name, method, body, contentType, fetchSite string
		want                                       int
	}{
		{"text/plain", "POST", asset, "text/plain;charset=UTF-8", "", http.StatusUnsupportedMediaType},
		{"a form", "POST", asset, "application/x-www-form-urlencoded", "", http.StatusUnsupportedMediaType},
		{"multipart", "POST", asset, "multipart/form-data; boundary=x", "", http.StatusUnsupportedMediaType},
		{"no type", "POST", asset, "", "", http.StatusUnsupportedMediaType},
		{"cross-site JSON", "POST", asset, "application/json", "cross-site", http.StatusForbidden},
		{"cross-site GET", "GET", "", "", "cross-site", http.StatusForbidden},
		{"JSON", "POST", asset, "application/json", "", http.StatusOK},
		{"JSON with a charset", "POST", asset, "Application/JSON; charset=utf-8", "", http.StatusOK},
		{"NDJSON", "POST", asset, "application/x-ndjson", "", http.StatusOK},
		{"same-origin JSON (the console)", "POST", asset, "application/json", "same-origin", http.StatusOK},
		{"no body, no type", "GET", "", "", "none", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/v1/ledgers/demo/assets"
			before := f.count()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequestWithContext(ctx, tc.method, hs.URL+path, body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.fetchSite != "" {
				req.Header.Set("Sec-Fetch-Site", tc.fetchSite)
			}
			resp, err := hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want {
				t.Errorf("status %d %s, want %d", resp.StatusCode, out, tc.want)
			}
			if calls := f.count() - before; (calls == 0) != (tc.want != http.StatusOK) {
				t.Errorf("%d gRPC calls made, want %d", calls, map[bool]int{true: 1}[tc.want == http.StatusOK])
			}
		})
	}
}

// TestGatewayBoundsTheBodiesInFlight: the bodies the gateway reads at once
// are bounded all calls together (the gRPC server's receive budget sees a
// REST call only once the gateway has read its whole body): a call that
// finds no room waits, and is refused with 429 when none comes; once the
// body that held it is read, room is back.
func TestGatewayBoundsTheBodiesInFlight(t *testing.T) {
	const bodyMax = 64
	_, hs := serve(t, httpapi.Options{BodyMax: bodyMax, BodiesInFlightMax: bodyMax, BodyWait: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A body that declares the whole budget and arrives slowly.
	pr, pw := io.Pipe()
	slow, err := http.NewRequestWithContext(ctx, "POST", hs.URL+"/v1/ledgers/demo/assets", pr)
	if err != nil {
		t.Fatal(err)
	}
	slow.ContentLength = bodyMax
	slow.Header.Set("Content-Type", "application/json")
	done := make(chan int, 1)
	go func() {
		resp, err := hs.Client().Do(slow)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	asset := `{"code":"USD","scale":2}`
	first := asset + strings.Repeat(" ", bodyMax-len(asset))
	if _, err := io.WriteString(pw, first[:10]); err != nil { // the gateway reads: the room is taken
		t.Fatal(err)
	}
	// Once the slow call holds the room (its headers may reach the gateway
	// after this call's), a call with a body is refused.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := do(t, hs, "POST", "/v1/ledgers/demo/assets", asset)
		if code == http.StatusTooManyRequests && decodeError(t, body).Code == codes.ResourceExhausted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a body while the budget is held: %d %s, want 429 ResourceExhausted", code, body)
		}
	}
	if _, err := io.WriteString(pw, first[10:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if code := <-done; code != http.StatusOK {
		t.Fatalf("the slow body: status %d, want 200", code)
	}
	if code, body := do(t, hs, "POST", "/v1/ledgers/demo/assets", asset); code != http.StatusOK {
		t.Errorf("after the slow body: %d %s, want 200", code, body)
	}
}
