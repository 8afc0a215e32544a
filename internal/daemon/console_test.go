package daemon_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// consoleStepTimeout bounds one step of TestConsole's browser session (a
// page to load, an element to show); consoleTestTimeout the whole session.
const (
	consoleStepTimeout = 20 * time.Second
	consoleTestTimeout = 90 * time.Second
)

// chromiumPath is the headless browser TestConsole drives: Debian's
// chromium. Without one the test is skipped, unless LEDGER_REQUIRE_CHROMIUM
// is set (CI installs chromium and sets it): then its absence fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("LEDGER_REQUIRE_CHROMIUM") != "" {
		t.Fatal("LEDGER_REQUIRE_CHROMIUM is set and no chromium is on PATH (apt-get install -y chromium)")
	}
	t.Skip("console test skipped: no chromium on PATH (apt-get install -y chromium; LEDGER_REQUIRE_CHROMIUM=1 makes its absence a failure)")
	return ""
}

// browser is one headless Chromium tab on the console, recording every
// request it sends and every script error.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	shot string // screenshot directory

	mu       sync.Mutex
	requests []string
	errors   []string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	// The profile is not t.TempDir(): chromium's helper processes may still
	// write to it after the browser's exit, and TempDir's removal then fails
	// the test ("directory not empty"). It is removed after the browser
	// stops (cleanups run last to first), retried for a while.
	profile, err := os.MkdirTemp("", "ledger-console-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if err = os.RemoveAll(profile); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("chromium profile %s left behind: %v", profile, err)
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", "new"), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 900))
	session, cancel := context.WithTimeout(context.Background(), consoleTestTimeout)
	t.Cleanup(cancel)
	alloc, cancelAlloc := chromedp.NewExecAllocator(session, opts...)
	t.Cleanup(cancelAlloc)
	c, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(cancelTab)
	b := &browser{t: t, ctx: c, base: base, shot: os.Getenv("LEDGER_SCREENSHOT_DIR")}
	if b.shot == "" {
		b.shot = t.TempDir()
	}
	chromedp.ListenTarget(c, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, e.Request.URL)
		case *runtime.EventExceptionThrown:
			b.errors = append(b.errors, e.ExceptionDetails.Error())
		}
	})
	// The first Run starts the browser, for as long as its context lives:
	// without a step's timeout.
	if err := chromedp.Run(c, network.Enable(), runtime.Enable()); err != nil {
		t.Fatalf("start %s: %v", chromiumPath(t), err)
	}
	return b
}

// run runs actions, failing the test with what on an error.
func (b *browser) run(what string, actions ...chromedp.Action) {
	b.t.Helper()
	c, cancel := context.WithTimeout(b.ctx, consoleStepTimeout)
	defer cancel()
	if err := chromedp.Run(c, actions...); err != nil {
		b.screenshot("failed-" + what)
		b.t.Fatalf("browser: %s: %v (script errors: %v)", what, err, b.scriptErrors())
	}
}

func (b *browser) scriptErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// screenshot writes the page as a PNG named for the test and name (CI keeps LEDGER_SCREENSHOT_DIR).
func (b *browser) screenshot(name string) {
	var png []byte
	c, cancel := context.WithTimeout(b.ctx, consoleStepTimeout)
	defer cancel()
	if err := chromedp.Run(c, chromedp.FullScreenshot(&png, 100)); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.shot, strings.ReplaceAll(b.t.Name(), "/", "_")+"-"+strings.ReplaceAll(name, " ", "-")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot: %s", path)
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	var s string
	b.run("text of "+sel, chromedp.WaitVisible(sel, chromedp.ByQuery), chromedp.Text(sel, &s, chromedp.ByQuery))
	return strings.TrimSpace(s)
}

// rows are the texts of the cells of a table's body, row by row.
func (b *browser) rows(table string) [][]string {
	b.t.Helper()
	var rows [][]string
	b.run("rows of "+table, chromedp.WaitVisible(table, chromedp.ByQuery), chromedp.Evaluate(fmt.Sprintf(
		`Array.from(document.querySelectorAll(%q)).map(tr => Array.from(tr.cells).map(td => td.textContent))`, table+" tbody tr"), &rows))
	return rows
}

// count is the number of elements sel matches now.
func (b *browser) count(sel string) int {
	b.t.Helper()
	var n int
	b.run("count "+sel, chromedp.Evaluate(fmt.Sprintf("document.querySelectorAll(%q).length", sel), &n))
	return n
}

// signIn signs in with key and waits for the ledgers page, or for the
// sign-in error when wantErr.
func (b *browser) signIn(key string, wantErr bool) {
	b.t.Helper()
	b.run("sign in", chromedp.WaitVisible("#key", chromedp.ByID),
		chromedp.Evaluate(`document.getElementById('key').value = ''`, nil),
		chromedp.SendKeys("#key", key, chromedp.ByID), chromedp.Click(`#login button[type="submit"]`, chromedp.ByQuery))
	if wantErr {
		b.run("sign-in error", chromedp.WaitVisible("#login-error", chromedp.ByID))
		return
	}
	b.run("ledgers page", chromedp.WaitVisible("#open-ledger", chromedp.ByID))
}

// TestConsole drives the operator console in headless Chromium against a
// real ledgerd: a bad key is refused; an admin key lists the ledger, opens
// an account whose balance and statement (running balances) are those the
// API returns, a transfer with its reversal, and the projections with their
// rebuild buttons; a reader key sees no admin button. The key never appears
// in a URL and the page fetches nothing from another origin.
func TestConsole(t *testing.T) {
	t.Parallel()
	chromiumPath(t) // skip before starting anything
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	h := startWith(t, func(m *daemon.Main) {
		m.Config.Console = true
		m.Config.AnchorKey, m.Config.AnchorDir = base64.StdEncoding.EncodeToString(seed), t.TempDir()
		m.Config.AnchorEvery = 0 // signed when the test asks
	})
	base := "http://" + h.m.HTTPAddr()
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	for i, amount := range []string{"10.00", "2.50", "7.25"} {
		h.transferOK(t, ledger, transfer(fmt.Sprintf("t%d", i+1), "alice", "bob", amount, "USD"))
	}
	h.transferOK(t, ledger, transfer("t4", "bob", "carol", "1.75", "USD"))
	h.transferOK(t, ledger, pendingTransfer("p1", "alice", "carol", "3.00", "USD", 3600))
	mustCreated(t, h.post(t, ledger, &ledgerv1.PostPending{Id: "p1-post", PendingId: "p1", Amounts: []string{"2.00"}})...)
	rs := h.reverse(t, ledger, &ledgerv1.Reversal{Id: "r1", TransferId: "t1", Amounts: []string{"4.00"}})
	mustCreated(t, rs...)
	pos := rs[0].GetPosition()
	rc := h.reconClient(t)
	today := time.Now().UTC().Format(time.DateOnly)
	imported, err := rc.ImportStatement(ctx(t), &ledgerv1.ImportStatementRequest{Ledger: ledger, Account: "bob", Source: "bank",
		Lines: []*ledgerv1.ExternalLine{
			{ExternalId: "x1", Amount: "10.00", Direction: ledgerv1.LineDirection_LINE_DIRECTION_CREDIT, ValueDate: today},
			{ExternalId: "x2", Amount: "99.00", Direction: ledgerv1.LineDirection_LINE_DIRECTION_CREDIT, ValueDate: today},
		}})
	testenv.NoError(t, err)
	mustCreated(t, imported.GetResults()...)
	pos = max(pos, imported.GetResults()[1].GetPosition())
	signed, err := h.m.Anchor(ctx(t), ledger)
	testenv.NoError(t, err)
	balance := h.balances(t, ledger, pos, "bob")["bob"]
	statement, err := h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob", MinPosition: pos})
	testenv.NoError(t, err)
	if len(statement.GetLines()) != 5 {
		t.Fatalf("bob's statement has %d lines, want 5", len(statement.GetLines()))
	}
	admin := h.as(t, h.key)
	readerKey, _ := admin.newKey(t, []string{ledger}, "reader")
	badKey := newKey(t) // well formed, never stored

	checkHeaders(t, base+"/console/")

	b := newBrowser(t, base)
	b.run("open", chromedp.Navigate(base+"/console/"))
	b.signIn(badKey, true)
	if got := b.text("#login-error"); !strings.Contains(got, "UNAUTHENTICATED") {
		t.Errorf("sign-in error with a bad key: %q, want UNAUTHENTICATED", got)
	}
	b.screenshot("bad-key")

	b.signIn(h.key, false)
	b.run("open the ledger", chromedp.WaitVisible("#ledgers", chromedp.ByID),
		chromedp.Click(fmt.Sprintf(`#ledgers a[href="#/l/%s"]`, ledger), chromedp.ByQuery),
		chromedp.WaitVisible("#account-filters", chromedp.ByID))
	b.run("open bob", chromedp.SendKeys(`#open-account input[name="account"]`, "bob", chromedp.ByQuery),
		chromedp.Click(`#open-account button[type="submit"]`, chromedp.ByQuery))
	if got := b.text("#balance"); got != balance.GetBalance() {
		t.Errorf("console balance %q, GetBalances %q", got, balance.GetBalance())
	}
	if got := b.text("#available"); got != balance.GetAvailable() {
		t.Errorf("console available %q, GetBalances %q", got, balance.GetAvailable())
	}
	rows := b.rows("#statement")
	if len(rows) != len(statement.GetLines()) {
		t.Fatalf("console statement has %d lines, ListStatement %d: %q", len(rows), len(statement.GetLines()), rows)
	}
	for i, l := range statement.GetLines() {
		// position, transfer, amount, running balance (see app.js accountPage).
		got := strings.Join([]string{rows[i][0], rows[i][3], rows[i][7], rows[i][8]}, " ")
		want := fmt.Sprintf("%d %s %s %s", l.GetPosition(), l.GetTransferId(), l.GetAmount(), l.GetRunningBalance())
		if got != want {
			t.Errorf("statement line %d: console %q, ListStatement %q", i, got, want)
		}
	}
	if got := b.text("#closing-balance"); got != statement.GetClosingBalance() {
		t.Errorf("console closing balance %q, ListStatement %q", got, statement.GetClosingBalance())
	}
	b.screenshot("account")

	b.run("transfer t1", chromedp.Click(`#statement a[href$="/transfer/t1"]`, chromedp.ByQuery), chromedp.WaitVisible("#related", chromedp.ByID))
	if got := b.text("#transfer-status"); got != "PARTIALLY_REVERSED" {
		t.Errorf("t1's status in the console: %q, want PARTIALLY_REVERSED", got)
	}
	if got := b.text("#related"); !strings.Contains(got, "r1") {
		t.Errorf("t1's holds and reversals: %q, want r1 listed", got)
	}
	b.screenshot("transfer")

	b.checkPages(t, ledger, h, pos, signed.Position)

	// A crafted link whose segment is '..' (encoded or not) would have the
	// console call another route with the operator's key: refused.
	for _, dots := range []string{"..", "%2e%2E"} {
		b.run("a '..' segment", chromedp.Navigate(base+"/console/#/l/"+dots+"/projections"),
			chromedp.Poll(`document.querySelector('#main p.error') !== null`, nil))
		if got := b.text("#main p.error"); !strings.Contains(got, "bad path segment") {
			t.Errorf("#/l/%s/projections: %q, want the segment refused", dots, got)
		}
	}

	b.run("projections", chromedp.Navigate(base+"/console/#/l/"+ledger+"/projections"), chromedp.WaitVisible("#projections", chromedp.ByID))
	if n := b.count("button.admin"); n == 0 {
		t.Error("an admin key sees no rebuild button")
	}
	// The admin rebuilds a projection: the console asks first (accepted
	// here), then shows the streamed progress to the swap.
	chromedp.ListenTarget(b.ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			go func() { _ = chromedp.Run(b.ctx, page.HandleJavaScriptDialog(true)) }()
		}
	})
	b.run("rebuild", chromedp.Click(`button.admin[data-projection="balances"]`, chromedp.ByQuery),
		chromedp.Poll(`document.getElementById('rebuild-progress').textContent.endsWith('Done.')`, nil))
	b.screenshot("projections-admin")

	b.run("sign out", chromedp.Click("#logout", chromedp.ByID))
	b.signIn(readerKey, false)
	b.run("projections as reader", chromedp.Navigate(base+"/console/#/l/"+ledger+"/projections"),
		chromedp.WaitVisible("#projections", chromedp.ByID))
	if n := b.count("button.admin"); n != 0 {
		t.Errorf("a reader key sees %d admin buttons, want none", n)
	}
	b.screenshot("projections-reader")

	if errs := b.scriptErrors(); len(errs) > 0 {
		t.Errorf("script errors: %q", errs)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range b.requests {
		for _, key := range []string{h.key, readerKey, badKey} {
			if strings.Contains(u, key) {
				t.Errorf("request URL %q carries an API key", u)
			}
		}
		// data: URLs are Chromium's own (a date input's icon), not fetched.
		if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("request to %q: the console fetches from its own origin only", u)
		}
	}
}

// visit shows the console's page at route (after #/) and waits until every
// part of it has loaded; it returns the errors the page shows.
func (b *browser) visit(name, route string) []string {
	b.t.Helper()
	var errs []string
	b.run("visit "+route, chromedp.Navigate(b.base+"/console/#/"+route),
		chromedp.Poll(`location.hash === '#/`+route+`' && document.querySelector('main section') !== null && `+
			`!Array.from(document.querySelectorAll('main p.note')).some(p => p.textContent === 'Loading…')`, nil),
		chromedp.Evaluate(`Array.from(document.querySelectorAll('main .error')).map(e => e.textContent)`, &errs))
	b.screenshot(name)
	return errs
}

// checkPages visits the pages the main flow does not, as an admin: each
// loads without an error but those of methods this ledgerd may not serve
// yet (UNIMPLEMENTED) or cannot (anchors without an anchor key), and shows
// what the API returns.
func (b *browser) checkPages(t *testing.T, ledger string, h *harness, pos, anchored uint64) {
	t.Helper()
	allow := func(page string, errs []string, codes ...string) {
		t.Helper()
	next:
		for _, e := range errs {
			for _, c := range codes {
				if strings.Contains(e, c) {
					continue next
				}
			}
			t.Errorf("console page %s shows the error %q", page, e)
		}
	}
	errs := b.visit("accounts", "l/"+ledger)
	allow("accounts", errs, "UNIMPLEMENTED")
	if len(errs) == 0 {
		if got := b.text("#accounts"); !strings.Contains(got, "bob") || !strings.Contains(got, "eve:eur") {
			t.Errorf("accounts page: %q, want bob and eve:eur listed", got)
		}
	}

	allow("transfers", b.visit("transfers", "l/"+ledger+"/transfers"))
	if got := b.text("#transfers"); !strings.Contains(got, "t4") || !strings.Contains(got, "p1-post") {
		t.Errorf("transfers page: %q, want t4 and p1-post listed", got)
	}
	allow("transfers of carol", b.visit("transfers-of-carol", "l/"+ledger+"/transfers?account=carol"))
	if got := b.text("#transfers"); strings.Contains(got, "t1") || !strings.Contains(got, "t4") {
		t.Errorf("carol's transfers: %q, want t4 and not t1", got)
	}

	allow("hold p1", b.visit("hold", "l/"+ledger+"/transfer/p1"))
	if got := b.text("#related"); !strings.Contains(got, "p1-post") {
		t.Errorf("p1's holds and reversals: %q, want p1-post", got)
	}

	allow("trial balance", b.visit("trial-balance", "l/"+ledger+"/trial-balance"))
	tb, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: ledger})
	testenv.NoError(t, err)
	var want [][]string
	for _, l := range tb.GetLines() {
		want = append(want, []string{l.GetAsset(), l.GetDebitsPosted(), l.GetCreditsPosted(), l.GetDebitsPending(), l.GetCreditsPending(),
			fmt.Sprint(l.GetAccounts()), fmt.Sprint(l.GetAccountsClosed()), "balanced"})
	}
	if got := b.rows("#trial-balance"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("trial balance page %q, GetTrialBalance %q", got, want)
	}

	allow("integrity", b.visit("integrity", "l/"+ledger+"/integrity"))
	if got := b.text("#chain-state"); !strings.HasPrefix(got, "unbroken") {
		t.Errorf("integrity page, chain state %q, want unbroken", got)
	}
	if got := b.text("#anchor-state"); !strings.HasPrefix(got, "yes") {
		t.Errorf("integrity page, head signed: %q, want yes", got)
	}
	if got := b.rows("#anchors"); len(got) != 1 || got[0][0] != fmt.Sprint(anchored) {
		t.Errorf("integrity page, anchors %q, want one at %d", got, anchored)
	}

	allow("reconciliation", b.visit("reconciliation", "l/"+ledger+"/reconciliation/bob"))
	rec, err := h.reconClient(t).GetReconciliation(ctx(t), &ledgerv1.GetReconciliationRequest{Ledger: ledger, Account: "bob", MinPosition: pos})
	testenv.NoError(t, err)
	if got := b.text("#recon-difference"); got != rec.GetDifference() {
		t.Errorf("reconciliation page: difference %q, GetReconciliation %q", got, rec.GetDifference())
	}
	if got := b.text("#unmatched-lines"); !strings.Contains(got, "x2") {
		t.Errorf("reconciliation page: unmatched lines %q, want x2", got)
	}
}

// checkHeaders fails unless url answers with the console's security
// headers: a CSP without inline script, nosniff, no framing.
func checkHeaders(t *testing.T, url string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), "GET", url, nil)
	testenv.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	testenv.NoError(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") ||
		strings.Contains(csp, "unsafe") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("GET %s: Content-Security-Policy %q, want default-src 'none', script-src 'self', no unsafe-*, no framing", url, csp)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", url, got)
	}
}

// TestConsoleOff: with -console=false nothing is served under /console/,
// while the REST API is.
func TestConsoleOff(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(m *daemon.Main) { m.Config.Console = false })
	for _, path := range []string{"/console", "/console/", "/console/app.js", "/console/whoami"} {
		req, err := http.NewRequestWithContext(ctx(t), "GET", "http://"+h.m.HTTPAddr()+path, nil)
		testenv.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+h.key)
		resp, err := http.DefaultClient.Do(req)
		testenv.NoError(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s with the console off: %s, want 404", path, resp.Status)
		}
	}
	h.rest(t, "GET", "/v1/ledgers", "", http.StatusOK, nil)
}
