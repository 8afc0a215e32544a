package daemon_test

import (
	"net/http"
	"testing"

	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestRESTRefusesABodylessCrossSitePost: the gateway refuses what a web page
// could make the operator's browser send to a dev ledgerd (-auth=false).
// From an older browser, which says nothing of where a request comes from
// (no Sec-Fetch-Site), it told such a request only by its body's type, and
// a route whose POST takes no body (ArchiveLedger, UnarchiveLedger,
// RevokeApiKey, RebuildProjection, RepairStream) was reached by an HTML form
// with no field (a form's type, Content-Length: 0, Origin: another site),
// which needs no preflight: it archived the ledger. A bodyless POST with a
// form's type, or naming another site's Origin, is now refused; one with
// neither (curl -X POST) still passes.
func TestRESTRefusesABodylessCrossSitePost(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(m *daemon.Main) { m.Config.AuthDisabled = true })
	ledger := testenv.Name(t)
	h.rest(t, "POST", "/v1/ledgers", `{"ledger": "`+ledger+`"}`, http.StatusOK, nil)

	post := func(verb, contentType, origin string) int {
		req, err := http.NewRequestWithContext(ctx(t), "POST", "http://"+h.m.HTTPAddr()+"/v1/ledgers/"+ledger+":"+verb, http.NoBody)
		testenv.NoError(t, err)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		testenv.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	status := func() string {
		var got struct {
			Ledger struct {
				Status string `json:"status"`
			} `json:"ledger"`
		}
		h.rest(t, "GET", "/v1/ledgers/"+ledger, "", http.StatusOK, &got)
		return got.Ledger.Status
	}
	// What <form method=post action=".../v1/ledgers/L:archive"></form>
	// sends from another site's page, and the same with its type left out.
	for _, c := range []struct{ contentType, origin string }{
		{"application/x-www-form-urlencoded", "https://evil.example"},
		{"application/x-www-form-urlencoded", ""},
		{"", "https://evil.example"},
		{"", "null"},
	} {
		if code := post("archive", c.contentType, c.origin); code != http.StatusForbidden || status() != "LEDGER_STATUS_ACTIVE" {
			t.Errorf("a bodyless POST to :archive, Content-Type %q, Origin %q: %d, the ledger %s; want 403 and ACTIVE",
				c.contentType, c.origin, code, status())
		}
	}
	// curl -X POST, and a page of ledgerd's own host.
	if code := post("archive", "", ""); code != http.StatusOK || status() != "LEDGER_STATUS_ARCHIVED" {
		t.Fatalf("curl -X POST .../%s:archive: %d, the ledger %s; want 200 and ARCHIVED", ledger, code, status())
	}
	if code := post("unarchive", "", "http://"+h.m.HTTPAddr()); code != http.StatusOK || status() != "LEDGER_STATUS_ACTIVE" {
		t.Fatalf("a bodyless POST to :unarchive from ledgerd's own origin: %d, the ledger %s; want 200 and ACTIVE", code, status())
	}
}
