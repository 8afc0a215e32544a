package grpcapi

import "github.com/ledgerd/ledger/domain"

// ledgerNameReason is what a bad ledger name is told.
const ledgerNameReason = "must match [a-z0-9][a-z0-9-]{0,62}"

// ledgerOptional lists the methods whose request may name no ledger, which
// means every ledger.
var ledgerOptional = map[string]bool{
	"/ledger.v1.QueryService/GetProjectionStatus": true,
	"/ledger.v1.AdminService/ListPlacements":      true,
}

// checkLedgerName refuses a request whose ledger is not a ledger name: the
// one check of it, made by the interceptors (refuseUndecodedUnary and
// refuseUndecodedStream) before any handler, for every method whose request
// names a ledger. A ledger may be empty only where ledgerOptional says so, and
// in a stream's messages after the first (they continue the first's ledger).
//
// Errors: InvalidArgument naming ledger.
func checkLedgerName(method string, req any, first bool) error {
	l, ok := req.(ledgered)
	if !ok {
		return nil
	}
	name := l.GetLedger()
	switch {
	case domain.ValidLedgerName(name):
		return nil
	case name == "" && (!first || ledgerOptional[method]):
		return nil
	case ledgerOptional[method]:
		return invalidArgument("ledger", ledgerNameReason+", or be empty for every ledger")
	}
	return invalidArgument("ledger", ledgerNameReason)
}
