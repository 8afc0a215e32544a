package daemon_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// restItem is an ItemResult as REST/JSON carries it: proto field names, the
// code by name, 64-bit integers as strings, zero values left out.
type restItem struct {
	Index    int    `json:"index"`
	ID       string `json:"id"`
	Code     string `json:"code"`
	Position string `json:"position"`
	Field    string `json:"field"`
	Detail   string `json:"detail"`
}

// restError is the JSON of a google.rpc.Status.
type restError struct {
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

// rest sends one JSON request to ledgerd's HTTP port, as curl would, fails
// the test unless the status is want, and decodes the reply into out (when
// not nil). It returns the raw body.
func (h *harness) rest(t *testing.T, method, path, body string, want int, out any) []byte {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx(t), method, "http://"+h.m.HTTPAddr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+h.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: body %s: %v", method, path, raw, err)
		}
	}
	return raw
}

// restCreated checks that every item was CREATED and returns the last position.
func restCreated(t *testing.T, what string, items []restItem) uint64 {
	t.Helper()
	if len(items) == 0 {
		t.Fatalf("%s: no results", what)
	}
	var pos uint64
	for _, r := range items {
		if r.Code != "RESULT_CODE_CREATED" {
			t.Fatalf("%s: item %d (%s): %s %s %s, want RESULT_CODE_CREATED", what, r.Index, r.ID, r.Code, r.Field, r.Detail)
		}
		p, err := strconv.ParseUint(r.Position, 10, 64)
		if err != nil || p == 0 {
			t.Fatalf("%s: item %d position %q, want a positive integer as a string", what, r.Index, r.Position)
		}
		pos = p
	}
	return pos
}

// TestREST is a curl-style round trip on a real ledgerd: commands and
// queries as JSON on the HTTP port, through the gateway to gRPC.
func TestREST(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := "/v1/ledgers/" + testenv.Name(t)

	var asset struct{ Result restItem }
	h.rest(t, "POST", ledger+"/assets", `{"code": "USD", "scale": 2}`, http.StatusOK, &asset)
	restCreated(t, "define asset", []restItem{asset.Result})

	var opened struct{ Results []restItem }
	h.rest(t, "POST", ledger+"/accounts", `{"accounts": [
		{"id": "alice", "asset": "USD", "normal_balance": "NORMAL_BALANCE_CREDIT"},
		{"id": "users:42:wallet", "asset": "USD", "normal_balance": "NORMAL_BALANCE_CREDIT", "min_balance": "0"}]}`,
		http.StatusOK, &opened)
	restCreated(t, "open accounts", opened.Results)

	var moved struct{ Results []restItem }
	h.rest(t, "POST", ledger+"/transfers", `{"transfers": [{"id": "t1", "reference": "rest",
		"postings": [{"debit_account": "alice", "credit_account": "users:42:wallet", "amount": "10.00", "asset": "USD"}]}]}`,
		http.StatusOK, &moved)
	pos := restCreated(t, "create transfer", moved.Results)

	// Read-your-writes with the position from the reply.
	var bal struct {
		Balances []struct {
			Account, Asset, Balance, Available string
			NormalBalance                      string `json:"normal_balance"`
			DebitsPosted                       string `json:"debits_posted"`
			CreditsPosted                      string `json:"credits_posted"`
		}
		Position string
	}
	h.rest(t, "GET", ledger+"/balances?accounts=alice&accounts=users:42:wallet&accounts=nobody&min_position="+strconv.FormatUint(pos, 10),
		"", http.StatusOK, &bal)
	if p, err := strconv.ParseUint(bal.Position, 10, 64); err != nil || p < pos {
		t.Fatalf("balances reflect position %q, asked for at least %d", bal.Position, pos)
	}
	got := map[string]string{}
	for _, b := range bal.Balances {
		got[b.Account] = b.Balance + " " + b.Available + " " + b.DebitsPosted + "/" + b.CreditsPosted + " " + b.NormalBalance
	}
	want := map[string]string{
		"alice":           "-10.00 -10.00 10.00/0.00 NORMAL_BALANCE_CREDIT",
		"users:42:wallet": "10.00 10.00 0.00/10.00 NORMAL_BALANCE_CREDIT",
	}
	if len(got) != len(want) || got["alice"] != want["alice"] || got["users:42:wallet"] != want["users:42:wallet"] {
		t.Errorf("balances %v, want %v", got, want)
	}

	// The same balances through the POST binding, for long account lists.
	var batch struct{ Balances []struct{ Account string } }
	h.rest(t, "POST", ledger+"/balances:batchGet", `{"accounts": ["alice"], "min_position": "`+strconv.FormatUint(pos, 10)+`"}`,
		http.StatusOK, &batch)
	if len(batch.Balances) != 1 || batch.Balances[0].Account != "alice" {
		t.Errorf("balances:batchGet %+v, want alice's", batch.Balances)
	}

	t.Run("statement", func(t *testing.T) {
		statement := ledger + "/accounts/users:42:wallet/statement?min_position=" + strconv.FormatUint(pos, 10)
		var st struct {
			Account string
			Lines   []struct {
				TransferID     string `json:"transfer_id"`
				Direction      string
				Amount         string
				RunningBalance string `json:"running_balance"`
			}
			ClosingBalance string `json:"closing_balance"`
		}
		h.rest(t, "GET", statement, "", http.StatusOK, &st)
		if len(st.Lines) != 1 {
			t.Fatalf("statement %+v: %d lines, want 1", st, len(st.Lines))
		}
		l := st.Lines[0]
		if l.TransferID != "t1" || l.Direction != "DIRECTION_CREDIT" || l.Amount != "10.00" || l.RunningBalance != "10.00" {
			t.Errorf("statement line %+v, want t1 DIRECTION_CREDIT 10.00 running 10.00", l)
		}
		if st.ClosingBalance != "10.00" {
			t.Errorf("closing balance %q, want 10.00", st.ClosingBalance)
		}
	})

	t.Run("transfer by id", func(t *testing.T) {
		var got struct {
			Transfers []struct{ ID, Status string }
		}
		h.rest(t, "GET", ledger+"/transfers/t1?min_position="+strconv.FormatUint(pos, 10), "", http.StatusOK, &got)
		if len(got.Transfers) != 1 || got.Transfers[0].ID != "t1" || got.Transfers[0].Status != "TRANSFER_STATUS_POSTED" {
			t.Errorf("transfers %+v, want t1 TRANSFER_STATUS_POSTED", got.Transfers)
		}
	})

	t.Run("bad ledger name", func(t *testing.T) {
		var e restError
		h.rest(t, "POST", "/v1/ledgers/Not_A_Ledger/transfers", `{"transfers": [{"id": "t2",
			"postings": [{"debit_account": "alice", "credit_account": "users:42:wallet", "amount": "1.00", "asset": "USD"}]}]}`,
			http.StatusBadRequest, &e)
		checkViolation(t, e, "ledger")
	})
	t.Run("no accounts to read", func(t *testing.T) {
		var e restError
		h.rest(t, "GET", ledger+"/balances", "", http.StatusBadRequest, &e)
		checkViolation(t, e, "accounts")
	})
	t.Run("amount finer than the asset", func(t *testing.T) {
		// An item-level refusal: the call succeeds, the item says why.
		var r struct{ Results []restItem }
		h.rest(t, "POST", ledger+"/transfers", `{"transfers": [{"id": "t3",
			"postings": [{"debit_account": "alice", "credit_account": "users:42:wallet", "amount": "1.001", "asset": "USD"}]}]}`,
			http.StatusOK, &r)
		if len(r.Results) != 1 || r.Results[0].Code != "RESULT_CODE_INVALID_AMOUNT" || !strings.HasSuffix(r.Results[0].Field, "amount") {
			t.Errorf("results %+v, want one RESULT_CODE_INVALID_AMOUNT naming the amount", r.Results)
		}
	})
	t.Run("unknown field", func(t *testing.T) {
		var e restError
		h.rest(t, "POST", ledger+"/transfers", `{"transfers": [], "atomc": true}`, http.StatusBadRequest, &e)
		if e.Code != codes.InvalidArgument || !strings.Contains(e.Message, "atomc") {
			t.Errorf("error %d %q, want InvalidArgument naming atomc", e.Code, e.Message)
		}
	})
	t.Run("unknown route", func(t *testing.T) {
		var e restError
		h.rest(t, "GET", "/v1/ledgers/x/nothing", "", http.StatusNotFound, &e)
		if e.Code != codes.NotFound {
			t.Errorf("error code %d, want NotFound", e.Code)
		}
	})
	t.Run("health and metrics still served", func(t *testing.T) {
		h.rest(t, "GET", "/healthz", "", http.StatusOK, nil)
		h.rest(t, "GET", "/readyz", "", http.StatusOK, nil)
		// REST calls go through the gRPC interceptors: they are counted.
		raw := h.rest(t, "GET", "/metrics", "", http.StatusOK, nil)
		if !bytes.Contains(raw, []byte(`method="/ledger.v1.CommandService/CreateTransfers"`)) {
			t.Errorf("/metrics does not count the REST CreateTransfers calls")
		}
	})
}

// checkViolation wants InvalidArgument with a google.rpc.BadRequest naming field.
func checkViolation(t *testing.T, e restError, field string) {
	t.Helper()
	if e.Code != codes.InvalidArgument || e.Message == "" {
		t.Errorf("error %d %q, want InvalidArgument with a message", e.Code, e.Message)
	}
	for _, d := range e.Details {
		if d.Type != "type.googleapis.com/google.rpc.BadRequest" {
			continue
		}
		for _, v := range d.FieldViolations {
			if v.Field == field && v.Description != "" {
				return
			}
		}
	}
	t.Errorf("details %+v, want a google.rpc.BadRequest violation of %q", e.Details, field)
}

// TestRESTRefusesWhatAWebPageCouldSend: with -auth=false (a machine nobody
// else reaches), a page of any site the operator's browser opens can still
// reach a loopback ledgerd: a CORS "simple" POST (text/plain, no preflight)
// from another site, told by its Sec-Fetch-Site or, from an older
// browser, only by its type, changes nothing.
func TestRESTRefusesWhatAWebPageCouldSend(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(m *daemon.Main) { m.Config.AuthDisabled = true })
	ledger := testenv.Name(t)
	h.rest(t, "POST", "/v1/ledgers", `{"ledger": "`+ledger+`"}`, http.StatusOK, nil)
	for _, tc := range []struct {
		name, fetchSite string
		want            int
	}{
		{"cross-site", "cross-site", http.StatusForbidden},
		{"no Sec-Fetch-Site", "", http.StatusUnsupportedMediaType},
	} {
		req, err := http.NewRequestWithContext(ctx(t), "POST", "http://"+h.m.HTTPAddr()+"/v1/ledgers/"+ledger+"/assets",
			strings.NewReader(`{"code":"USD","scale":2}`))
		testenv.NoError(t, err)
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		req.Header.Set("Origin", "https://evil.example")
		if tc.fetchSite != "" {
			req.Header.Set("Sec-Fetch-Site", tc.fetchSite)
		}
		resp, err := http.DefaultClient.Do(req)
		testenv.NoError(t, err)
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: a text/plain POST from another site: %d %s, want %d", tc.name, resp.StatusCode, raw, tc.want)
		}
	}
	// The asset is new when defined by the ledger's own client.
	var got struct{ Result restItem }
	h.rest(t, "POST", "/v1/ledgers/"+ledger+"/assets", `{"code":"USD","scale":2}`, http.StatusOK, &got)
	if got.Result.Code != "RESULT_CODE_CREATED" {
		t.Errorf("DefineAsset after the refused requests: %+v, want RESULT_CODE_CREATED", got.Result)
	}
}
