package httpapi

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"sigs.k8s.io/yaml"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// The gateway checks a REST call's role before it reads the body, as the
// gRPC server's tap does before it reads a message: for that it needs the
// gRPC method a route calls, which grpc-gateway tells only once the
// generated handler runs, and it reads the body at once. The route table
// below is read from the rules the handlers were generated from
// (ledgerv1.GatewayRules), keyed as grpc-gateway's mux names the pattern a
// request matched (runtime.HTTPPattern), so a route is found by the mux's
// own matching.

// routeTable maps "HTTP-METHOD pattern" ("POST
// /v1/ledgers/{ledger=*}/transfers") to a gRPC full method name
// ("/ledger.v1.CommandService/CreateTransfers").
type routeTable map[string]string

// httpRule is one rule of a google.api.Service's http.rules, or one of its
// additional bindings.
type httpRule struct {
	Selector           string     `json:"selector"`
	Get                string     `json:"get"`
	Post               string     `json:"post"`
	Put                string     `json:"put"`
	Delete             string     `json:"delete"`
	Patch              string     `json:"patch"`
	AdditionalBindings []httpRule `json:"additional_bindings"`
}

// gatewayRoutes is the route table of ledgerv1.GatewayRules, read once.
var gatewayRoutes = mustRouteTable(ledgerv1.GatewayRules)

func mustRouteTable(rules []byte) routeTable {
	t, err := newRouteTable(rules)
	if err != nil {
		panic(fmt.Sprintf("httpapi: ledger.gateway.yaml: %v", err)) // embedded: a build fault
	}
	return t
}

// newRouteTable reads a google.api.Service's HTTP rules.
//
// Errors: YAML that does not parse; a rule without a selector or a path;
// a route given twice.
func newRouteTable(rules []byte) (routeTable, error) {
	var svc struct {
		HTTP struct {
			Rules []httpRule `json:"rules"`
		} `json:"http"`
	}
	if err := yaml.Unmarshal(rules, &svc); err != nil {
		return nil, err
	}
	t := routeTable{}
	for _, r := range svc.HTTP.Rules {
		i := strings.LastIndexByte(r.Selector, '.')
		if i < 0 {
			return nil, fmt.Errorf("selector %q: want package.Service.Method", r.Selector)
		}
		method := "/" + r.Selector[:i] + "/" + r.Selector[i+1:]
		for _, b := range append([]httpRule{r}, r.AdditionalBindings...) {
			if err := t.add(b, method); err != nil {
				return nil, fmt.Errorf("%s: %w", r.Selector, err)
			}
		}
	}
	return t, nil
}

// add puts the route of one binding of method in t.
func (t routeTable) add(b httpRule, method string) error {
	verbs := map[string]string{http.MethodGet: b.Get, http.MethodPost: b.Post, http.MethodPut: b.Put,
		http.MethodDelete: b.Delete, http.MethodPatch: b.Patch}
	n := 0
	for verb, path := range verbs {
		if path == "" {
			continue
		}
		n++
		key := verb + " " + patternOf(path)
		if _, ok := t[key]; ok {
			return fmt.Errorf("route %s given twice", key)
		}
		t[key] = method
	}
	if n != 1 {
		return fmt.Errorf("a binding with %d paths, want 1", n)
	}
	return nil
}

// pathVariable is a variable of a path template without its own pattern,
// "{ledger}": grpc-gateway's Pattern.String writes it "{ledger=*}".
var pathVariable = regexp.MustCompile(`\{([^}=]+)\}`)

func patternOf(template string) string {
	return pathVariable.ReplaceAllString(template, "{$1=*}")
}

// method is the gRPC method of the route r matched in the mux ("" when r
// was not routed, or its route is not in t).
func (t routeTable) method(r *http.Request) string {
	p, ok := runtime.HTTPPattern(r.Context())
	if !ok {
		return ""
	}
	return t[r.Method+" "+p.String()]
}
