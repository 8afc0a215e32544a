package console_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/httpapi/console"
)

// get serves one request and returns its status, headers and body.
func get(t *testing.T, h http.Handler, method, path, authorization string) (int, http.Header, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, rec.Result().Header, string(body)
}

// TestHandlerFiles: the app's files are served with their types and the
// security headers, on every answer, errors included; the page has no
// inline script or style for the CSP to allow.
func TestHandlerFiles(t *testing.T) {
	t.Parallel()
	h := console.Handler(console.Options{})
	for _, tc := range []struct {
		method, path string
		status       int
		contentType  string
	}{
		{"GET", "/console/", 200, "text/html; charset=utf-8"},
		{"GET", "/console/app.js", 200, "text/javascript; charset=utf-8"},
		{"GET", "/console/app.css", 200, "text/css; charset=utf-8"},
		{"GET", "/console", 301, ""},
		{"GET", "/console/index.html", 404, ""},
		{"GET", "/console/nothing", 404, ""},
		{"POST", "/console/", 405, ""},
	} {
		code, hdr, body := get(t, h, tc.method, tc.path, "")
		if code != tc.status || (tc.contentType != "" && hdr.Get("Content-Type") != tc.contentType) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, code, hdr.Get("Content-Type"), tc.status, tc.contentType)
		}
		if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s %s: Content-Security-Policy %q", tc.method, tc.path, csp)
		}
		if hdr.Get("X-Content-Type-Options") != "nosniff" || hdr.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s %s: headers %v, want nosniff and no framing", tc.method, tc.path, hdr)
		}
		if tc.path == "/console/" && tc.status == 200 {
			if regexp.MustCompile(`<script[^>]*>[^<]|<style|\son[a-z]+=`).MatchString(body) {
				t.Errorf("index.html has inline script or style:\n%s", body)
			}
		}
	}
}

// TestHandlerAppRendersTextOnly: the app never parses data as HTML: no
// innerHTML, outerHTML, insertAdjacentHTML, document.write or eval.
func TestHandlerAppRendersTextOnly(t *testing.T) {
	t.Parallel()
	_, _, js := get(t, console.Handler(console.Options{}), "GET", "/console/app.js", "")
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(js, sink) {
			t.Errorf("app.js uses %s", sink)
		}
	}
	if !strings.Contains(js, "sessionStorage") || strings.Contains(js, "localStorage") {
		t.Error("app.js must keep the key in sessionStorage only")
	}
}

// TestHandlerWhoami: the key's identity; a refused key answered as the
// REST API answers it; no key refused without asking Whoami; auth off says so.
func TestHandlerWhoami(t *testing.T) {
	t.Parallel()
	calls := 0
	h := console.Handler(console.Options{Whoami: func(r *http.Request) (console.Identity, error) {
		calls++
		if r.Header.Get("Authorization") != "Bearer good" {
			return console.Identity{}, status.Error(codes.Unauthenticated, "unknown key")
		}
		return console.Identity{ID: "0123456789ab", Roles: []string{"reader"}, Ledgers: []string{"acme"}}, nil
	}})
	code, hdr, body := get(t, h, "GET", "/console/whoami", "Bearer good")
	var id console.Identity
	if err := json.Unmarshal([]byte(body), &id); code != 200 || err != nil || id.ID != "0123456789ab" || id.Roles[0] != "reader" ||
		hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("whoami with a good key: %d %s %v", code, body, hdr)
	}
	code, _, body = get(t, h, "GET", "/console/whoami", "Bearer bad")
	var e struct {
		Code    codes.Code
		Message string
	}
	if err := json.Unmarshal([]byte(body), &e); code != 401 || err != nil || e.Code != codes.Unauthenticated || e.Message != "unknown key" {
		t.Errorf("whoami with a bad key: %d %s", code, body)
	}
	before := calls
	if code, _, _ = get(t, h, "GET", "/console/whoami", ""); code != 401 || calls != before {
		t.Errorf("whoami without a key: %d, Whoami called %d times, want 401 and none", code, calls-before)
	}
	code, _, body = get(t, console.Handler(console.Options{}), "GET", "/console/whoami", "")
	if code != 200 || !strings.Contains(body, `"auth_off":true`) {
		t.Errorf("whoami with auth off: %d %s", code, body)
	}
}
