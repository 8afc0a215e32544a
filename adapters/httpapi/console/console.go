// Package console serves ledgerd's operator console on the HTTP port: a
// small single-page app (static/: HTML, one script, one stylesheet, embedded
// in the binary, nothing fetched from elsewhere) that reads the REST API
// (/v1/) with the API key its user pastes. The console holds no data and no
// privilege of its own: every page is a REST call carrying that key, so the
// gRPC server decides, as for any client, what the key may see or do.
//
// Its one endpoint besides the files is /console/whoami: the key's id,
// roles and ledgers, so that the app shows admin buttons (a projection's
// rebuild) to admin keys only. Hiding a button is a courtesy; the server's
// authorization is what refuses a reader.
//
// Security: every answer carries a strict Content-Security-Policy (scripts,
// styles and requests from this origin only, no inline script, no framing),
// X-Content-Type-Options: nosniff and Referrer-Policy: no-referrer. The key
// lives in the tab's sessionStorage and travels in the Authorization header,
// never in a URL; the app renders data with textContent only.
package console

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Prefix is the path the console is served under.
const Prefix = "/console/"

//go:embed static
var files embed.FS

// contentSecurityPolicy allows this origin's script, stylesheet and REST
// calls and nothing else: no inline script or style, no plugin, no frame,
// no form posted anywhere.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Identity is what /console/whoami tells about a key.
type Identity struct {
	// AuthOff is set when ledgerd runs without API keys (-auth=false).
	AuthOff bool     `json:"auth_off,omitempty"`
	ID      string   `json:"id,omitempty"`
	Roles   []string `json:"roles"`
	// Ledgers the key may touch; empty: every ledger.
	Ledgers []string `json:"ledgers,omitempty"`
}

// Options configures the console's Handler.
type Options struct {
	// Whoami authenticates a request's Authorization header and returns
	// its key's identity, or a gRPC status error (Unauthenticated, ...)
	// answered as the REST API answers it. Nil means auth is off.
	Whoami func(r *http.Request) (Identity, error)
}

// Handler serves the console under Prefix: the app's files and whoami.
func Handler(opts Options) http.Handler {
	static, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix+"{$}", serveFile(static, "index.html", "text/html; charset=utf-8"))
	mux.Handle("GET "+Prefix+"app.js", serveFile(static, "app.js", "text/javascript; charset=utf-8"))
	mux.Handle("GET "+Prefix+"app.css", serveFile(static, "app.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET "+Prefix+"whoami", func(w http.ResponseWriter, r *http.Request) { whoami(w, r, opts.Whoami) })
	mux.HandleFunc("GET "+strings.TrimSuffix(Prefix, "/"), func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
	})
	return secured(mux)
}

// secured sets the security headers of every console answer, errors and
// redirects included.
func secured(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// serveFile answers one embedded file. Its content is fixed per binary, so
// the browser revalidates (no-cache) rather than keeping a stale app after
// an upgrade.
func serveFile(static fs.FS, name, contentType string) http.Handler {
	body, err := fs.ReadFile(static, name)
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	})
}

// whoami answers the identity of the request's key as JSON, or the REST
// API's error body ({"code", "message"}) with its HTTP status. A request
// without a key is answered at once (the app asks so on start, to learn
// whether auth is off): it costs no key look-up and no failed attempt.
func whoami(w http.ResponseWriter, r *http.Request, check func(*http.Request) (Identity, error)) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	id := Identity{AuthOff: true, Roles: []string{"admin"}}
	if check != nil {
		var err error
		if r.Header.Get("Authorization") == "" {
			err = status.Error(codes.Unauthenticated, "no API key")
		} else {
			id, err = check(r)
		}
		if err != nil {
			st, ok := status.FromError(err)
			if !ok {
				st = status.New(codes.Internal, "the key could not be checked")
			}
			w.WriteHeader(runtime.HTTPStatusFromCode(st.Code()))
			_ = json.NewEncoder(w).Encode(struct {
				Code    int32  `json:"code"`
				Message string `json:"message"`
			}{int32(st.Code()), st.Message()})
			return
		}
	}
	_ = json.NewEncoder(w).Encode(id)
}
