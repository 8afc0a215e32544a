package ledgerv1

import _ "embed" // GatewayRules

// GatewayRules is ledger.gateway.yaml, the HTTP rules (google.api.Service
// http.rules) the REST gateway's handlers (*.pb.gw.go) are generated from:
// adapters/httpapi reads which gRPC method a route calls from it, to check
// a REST call's role before its body is read. Written by hand, not by
// `make proto`.
//
//go:embed ledger.gateway.yaml
var GatewayRules []byte
