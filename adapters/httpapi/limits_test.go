package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// TestGatewayAuthenticatesBeforeTheBody: a request Authenticate refuses is
// answered with its status, its body unread (and no gRPC server needed).
func TestGatewayAuthenticatesBeforeTheBody(t *testing.T) {
	gw, err := httpapi.NewGateway("127.0.0.1:1", httpapi.Options{Authenticate: func(r *http.Request) error {
		if r.Header.Get("Authorization") != "Bearer good" {
			return status.Error(codes.Unauthenticated, "no")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	body := &readRecorder{Reader: *strings.NewReader(`{"transfers":[]}`)}
	req := httptest.NewRequest("POST", "/v1/ledgers/demo/transfers", body)
	w := httptest.NewRecorder()
	gw.ServeHTTP(w, req)
	if w.Code != http.StatusUnauthorized || body.read {
		t.Errorf("status %d, body read %v; want 401, unread", w.Code, body.read)
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
