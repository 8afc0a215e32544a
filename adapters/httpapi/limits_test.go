package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ledgerd/ledger/adapters/httpapi"
)

// readRecorder is a body that records whether it was read.
type readRecorder struct {
	strings.Reader
	read bool
}

func (r *readRecorder) Read(p []byte) (int, error) {
	r.read = true
	return r.Reader.Read(p)
}

func (r *readRecorder) Close() error { return nil }

// TestGatewayAuthorizesBeforeTheBody: a request Authorize refuses, for its
// key or for its method's role, is answered with its status, its body
// unread (and no gRPC server needed); Authorize is asked about the method
// the route calls.
func TestGatewayAuthorizesBeforeTheBody(t *testing.T) {
	gw, err := httpapi.NewGateway("127.0.0.1:1", httpapi.Options{Authorize: func(r *http.Request, method string) (string, error) {
		switch {
		case r.Header.Get("Authorization") != "Bearer good":
			return "", status.Error(codes.Unauthenticated, "no")
		case method != "/ledger.v1.QueryService/GetBalances":
			return "", status.Errorf(codes.PermissionDenied, "not %s", method)
		}
		return "good", nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	for _, tc := range []struct {
		name, path, auth, length string
		want                     int
	}{
		{"no key", "/v1/ledgers/demo/transfers", "", "", http.StatusUnauthorized},
		{"a key without the role", "/v1/ledgers/demo/transfers", "Bearer good", "", http.StatusForbidden},
		{"a key without the role, a body over the bound", "/v1/ledgers/demo/transfers", "Bearer good",
			strconv.Itoa(httpapi.BodyMaxDefault + 1), http.StatusForbidden},
		{"an import without the role", "/v1/events:import", "Bearer good", "", http.StatusForbidden},
	} {
		body := &readRecorder{Reader: *strings.NewReader(`{"transfers":[]}`)}
		req := httptest.NewRequest("POST", tc.path, body)
		req.Header.Set("Content-Type", "application/json")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		if tc.length != "" {
			req.ContentLength, _ = strconv.ParseInt(tc.length, 10, 64)
		}
		w := httptest.NewRecorder()
		gw.ServeHTTP(w, req)
		if w.Code != tc.want || body.read {
			t.Errorf("%s: status %d, body read %v; want %d, unread", tc.name, w.Code, body.read, tc.want)
		}
	}
}

// TestGatewayRoutesNameTheirMethods: every route of ledger.gateway.yaml,
// whatever its service, is told to Authorize by the gRPC method it calls
// (a route the gateway could not name would be refused to every key).
func TestGatewayRoutesNameTheirMethods(t *testing.T) {
	var asked string
	gw, err := httpapi.NewGateway("127.0.0.1:1", httpapi.Options{Authorize: func(_ *http.Request, method string) (string, error) {
		asked = method
		return "", status.Error(codes.PermissionDenied, "asked")
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	routes := httpapi.Routes()
	if len(routes) < 59 { // ledger.gateway.yaml's rules and bindings when this was written
		t.Fatalf("%d routes, want every rule of ledger.gateway.yaml", len(routes))
	}
	for _, rt := range routes {
		// Each variable a segment: "{ledger=*}" becomes "v".
		path := regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(rt.Pattern, "v")
		asked = ""
		req := httptest.NewRequest(rt.Verb, path, nil)
		w := httptest.NewRecorder()
		gw.ServeHTTP(w, req)
		if asked != rt.Method {
			t.Errorf("%s %s: Authorize asked about %q, want %q (status %d)", rt.Verb, path, asked, rt.Method, w.Code)
		}
		full := protoreflect.FullName(strings.ReplaceAll(strings.TrimPrefix(rt.Method, "/"), "/", "."))
		if d, err := protoregistry.GlobalFiles.FindDescriptorByName(full); err != nil {
			t.Errorf("%s %s calls %s: %v", rt.Verb, rt.Pattern, rt.Method, err)
		} else if _, ok := d.(protoreflect.MethodDescriptor); !ok {
			t.Errorf("%s %s calls %s, which is no method", rt.Verb, rt.Pattern, rt.Method)
		}
	}
}

// TestGatewayBodyBoundPerRoute: a batch route takes bodies up to BodyMax
// (64 MiB), every other route up to BodyMaxSmall (4 MiB), at the byte.
func TestGatewayBodyBoundPerRoute(t *testing.T) {
	_, hs := serve(t, httpapi.Options{})
	json := func(n int) string {
		const obj = `{"code":"USD","scale":2}`
		return obj + strings.Repeat(" ", n-len(obj))
	}
	for _, tc := range []struct {
		name, path string
		size       int
		tooLarge   bool
	}{
		{"small route at its bound", "/v1/ledgers/demo/assets", httpapi.BodyMaxSmall, false},
		{"small route over its bound", "/v1/ledgers/demo/assets", httpapi.BodyMaxSmall + 1, true},
		{"batch route over the small bound", "/v1/ledgers/demo/transfers", httpapi.BodyMaxSmall + 1, false},
		{"batch verb route over the small bound", "/v1/ledgers/demo/transfers:void", httpapi.BodyMaxSmall + 1, false},
		{"batch route over its bound", "/v1/ledgers/demo/transfers", httpapi.BodyMaxDefault + 1, true},
	} {
		body := `{"transfers":[]}` + strings.Repeat(" ", tc.size-len(`{"transfers":[]}`))
		if strings.HasSuffix(tc.path, "/assets") {
			body = json(tc.size)
		}
		code, _ := do(t, hs, "POST", tc.path, body)
		if (code == http.StatusRequestEntityTooLarge) != tc.tooLarge {
			t.Errorf("%s: status %d, want 413: %v", tc.name, code, tc.tooLarge)
		}
	}
}

// TestGatewayMetersSlowBodies: a chunked body takes room among the bodies
// in flight as its bytes arrive (1 MiB at first), not its route's whole
// bound: while one has sent a few bytes, another call's body of 2 MiB still
// finds room in a budget of one route's bound, 4 MiB.
func TestGatewayMetersSlowBodies(t *testing.T) {
	const bodyMax = 4 << 20
	_, hs := serve(t, httpapi.Options{BodyMax: bodyMax, BodiesInFlightMax: bodyMax, BodyWait: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	slow, err := http.NewRequestWithContext(ctx, "POST", hs.URL+"/v1/ledgers/demo/transfers", pr)
	if err != nil {
		t.Fatal(err)
	}
	slow.ContentLength = -1 // chunked: as long as its route's bound, at most
	slow.Header.Set("Content-Type", "application/json")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := hs.Client().Do(slow); err == nil {
			resp.Body.Close()
		}
	}()
	defer func() { pw.Close(); <-done }()
	if _, err := io.WriteString(pw, `{"transfers": [`); err != nil { // read: the slow body holds room
		t.Fatal(err)
	}
	body := `{"transfers":[]}` + strings.Repeat(" ", 2<<20)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) { // the slow call's headers may come after this call's
		if code, out := do(t, hs, "POST", "/v1/ledgers/demo/transfers", body); code == http.StatusTooManyRequests {
			t.Fatalf("a body of 2 MiB while a slow one sent 15 bytes: %d %s", code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGatewayImportIdle: a log import whose body sends nothing for
// ImportIdle fails with a reason that says so, instead of holding its
// connection for good (an import has no overall read deadline).
func TestGatewayImportIdle(t *testing.T) {
	_, hs := serve(t, httpapi.Options{ImportIdle: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	context.AfterFunc(ctx, func() { pw.Close() }) // the client waits for its body to end
	req, err := http.NewRequestWithContext(ctx, "POST", hs.URL+"/v1/events:import", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	go func() { _, _ = io.WriteString(pw, `{"ledger": "demo", `) }()
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatalf("an idle import: %v, want an answer once it is idle", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(out), "sent nothing for 300ms") {
		t.Errorf("an idle import: %d %s, want 400 saying it sent nothing", resp.StatusCode, out)
	}
}

// TestGatewayConcurrentBodiesDoNotStarve: four bodies of 1 MiB, their
// length declared, arrive at once in a budget of 2 MiB, each sent in two
// parts: two take their room, two wait for it holding none, and all four
// are answered (bodies that each held part of the budget while waiting for
// more waited for one another until refused).
func TestGatewayConcurrentBodiesDoNotStarve(t *testing.T) {
	const bodyMax = 1 << 20
	_, hs := serve(t, httpapi.Options{BodyMax: bodyMax, BodiesInFlightMax: 2 * bodyMax, BodyWait: 2 * time.Second})
	body := `{"transfers":[` + strings.Repeat(" ", bodyMax-len(`{"transfers":[]}`)) + `]}`
	const n = 4
	codes := make([]int, n)
	outs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			pr, pw := io.Pipe()
			go func() {
				_, _ = io.WriteString(pw, body[:300<<10])
				time.Sleep(300 * time.Millisecond)
				_, _ = io.WriteString(pw, body[300<<10:])
				pw.Close()
			}()
			req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/v1/ledgers/demo/transfers", pr)
			req.ContentLength = int64(len(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := hs.Client().Do(req)
			if err != nil {
				codes[i], outs[i] = -1, err.Error()
				pr.CloseWithError(err)
				return
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			codes[i], outs[i] = resp.StatusCode, string(out)
		})
	}
	wg.Wait()
	for i := range n {
		if codes[i] == http.StatusTooManyRequests || codes[i] < 0 {
			t.Errorf("body %d of 4 × 1 MiB in a 2 MiB budget: %d %.200s, want an answer once the first two are read", i, codes[i], outs[i])
		}
	}
}

// keyOfBearer is an Authorize that takes every bearer for a key of that
// name: key "a" for "Bearer a".
func keyOfBearer(r *http.Request, _ string) (string, error) {
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), nil
}

// stall starts a POST of path as key whose body sends sent and then waits
// until the returned func sends the rest and reports the status; length -1
// is chunked.
func stall(t *testing.T, hs *httptest.Server, path, key string, length int64, sent, rest string) (finish func() int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	req, err := http.NewRequestWithContext(ctx, "POST", hs.URL+path, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	done := make(chan int, 1)
	go func() {
		resp, err := hs.Client().Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	if _, err := io.WriteString(pw, sent); err != nil { // the gateway reads: the room is taken
		t.Fatal(err)
	}
	return func() int {
		_, _ = io.WriteString(pw, rest)
		pw.Close()
		return <-done
	}
}

// doChunked POSTs body to path with authorization, chunked (of no declared
// length), and returns the status and the reply.
func doChunked(t *testing.T, hs *httptest.Server, path, body, authorization string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", hs.URL+path, io.MultiReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", authorization)
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(out)
}

// TestGatewayBodiesShareOfAKey: one key's bodies hold at most its share of
// the bodies in flight, a quarter of them by default; beyond it the key's
// bodies are refused (429, saying it is the key's share) while another
// key's are read, and the share comes back with the bytes. A body of a
// declared length takes its room before it is read: one of the share's
// size, at the bound, is admitted and the key's next is refused. A chunked
// body takes more room as it grows, and is refused when its key's share
// has none left.
func TestGatewayBodiesShareOfAKey(t *testing.T) {
	asset := `{"code":"USD","scale":2}`
	padded := func(n int) string { return asset + strings.Repeat(" ", n-len(asset)) }
	transfers := func(n int) string { return `{"transfers":[]}` + strings.Repeat(" ", n-len(`{"transfers":[]}`)) }
	for _, tc := range []struct {
		name          string
		bodyMax       int64
		path          string
		length        int64 // of the stalled body: -1 chunked
		stalled, next string
		nextChunked   bool
	}{
		// A share of 64 bytes: the stalled body's.
		{"declared length", 64, "/v1/ledgers/demo/assets", 64, padded(64), asset, false},
		// A share of 2 MiB: the stalled body holds 1 MiB of it, the next
		// takes the other at once, then finds no more as it grows.
		{"chunked, as it grows", 2 << 20, "/v1/ledgers/demo/transfers", -1, transfers(1 << 20), transfers(2 << 20), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, hs := serve(t, httpapi.Options{BodyMax: tc.bodyMax, BodiesInFlightMax: 4 * tc.bodyMax,
				BodyWait: 200 * time.Millisecond, Authorize: keyOfBearer})
			next := func(key string) (int, string) {
				if tc.nextChunked {
					return doChunked(t, hs, tc.path, tc.next, "Bearer "+key)
				}
				return do(t, hs, "POST", tc.path, tc.next, "Authorization", "Bearer "+key)
			}
			finish := stall(t, hs, tc.path, "a", tc.length, tc.stalled[:10], tc.stalled[10:])
			// Once the stalled body holds a's share (its headers may reach the
			// gateway after this call's), a's next body is refused.
			deadline := time.Now().Add(5 * time.Second)
			for {
				code, body := next("a")
				if code == http.StatusTooManyRequests && decodeError(t, body).Code == codes.ResourceExhausted &&
					strings.Contains(body, "api key a's other request bodies hold its share") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("key a's body while its share is held: %d %s, want 429 for its key's share", code, body)
				}
			}
			if code, body := next("b"); code != http.StatusOK {
				t.Errorf("key b's body while key a's share is held: %d %s, want 200", code, body)
			}
			if code := finish(); code != http.StatusOK {
				t.Fatalf("the stalled body: status %d, want 200", code)
			}
			if code, body := next("a"); code != http.StatusOK {
				t.Errorf("key a's body once its stalled one is read: %d %s, want 200", code, body)
			}
		})
	}
}
