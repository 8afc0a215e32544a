package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc"

	"github.com/ledgerd/ledger/adapters/grpcapi"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Roles are the jobs a ledgerd process does (-roles). Every process shares
// the same PostgreSQL and NATS; the roles say what runs where:
//   - writer: ledgers' writers, by writer lease (commands, STRONG reads,
//     imports, freezes from alerts, the expiry of timed holds);
//   - projector: ledgers' relays, projections and webhook deliveries, by
//     projector lease, and rebuilds;
//   - query: the read models' queries.
//
// A process without a role refuses its calls with Unavailable naming the
// role, so that a client or balancer sends them to another node.
type Roles struct {
	Writer, Projector, Query bool
}

// AllRoles is every role: one process that does everything.
var AllRoles = Roles{Writer: true, Projector: true, Query: true}

// nodeIDMax bounds -node-id.
const nodeIDMax = 128

// ParseRoles parses a comma-separated set of writer, projector and query.
//
// Errors: an unknown or missing role.
func ParseRoles(s string) (Roles, error) {
	var r Roles
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case eventstore.RoleWriter:
			r.Writer = true
		case eventstore.RoleProjector:
			r.Projector = true
		case "query":
			r.Query = true
		default:
			return Roles{}, fmt.Errorf("-roles %q: %q is not a role: want a comma-separated set of writer, projector and query", s, name)
		}
	}
	return r, nil
}

// orAll is r, or AllRoles for the zero value.
func (r Roles) orAll() Roles {
	if r == (Roles{}) {
		return AllRoles
	}
	return r
}

// List is the roles' names, in a fixed order.
func (r Roles) List() []string {
	var out []string
	if r.Writer {
		out = append(out, eventstore.RoleWriter)
	}
	if r.Projector {
		out = append(out, eventstore.RoleProjector)
	}
	if r.Query {
		out = append(out, "query")
	}
	return out
}

// Errors of a call this process's roles do not serve. They are Unavailable:
// another node serves them.
var (
	errNoWriterRole       = fmt.Errorf("%w: it runs without the writer role", commands.ErrNotAdmitted)
	errNoQueryRole  error = domain.NewError(domain.KindUnavailable, "this ledgerd serves no queries (it runs without the query role)",
		"send queries to a node with the query role: ledgerctl nodes lists them")
	errDraining = fmt.Errorf("%w: it is draining", commands.ErrNotAdmitted)
)

// queryMethods are the calls that read the read models: the query role's.
var queryMethods = []string{
	"/ledger.v1.AuditService/ReadStatementLines",
	"/ledger.v1.ReconciliationService/GetReconciliation",
	"/ledger.v1.ReconciliationService/ListUnmatched",
	"/ledger.v1.ReconciliationService/GetDailyJournal",
	"/ledger.v1.MonitoringService/ListRules",
	"/ledger.v1.MonitoringService/ListAlerts",
	"/ledger.v1.MonitoringService/DryRunRule",
}

// needsQueryRole says whether method reads the read models. A STRONG read
// (GetBalances with consistency STRONG) is the writer's to answer, from its
// memory: a writer node serves it, forwarded or not.
func needsQueryRole(roles Roles, method string, req any) bool {
	if r, ok := req.(interface{ GetConsistency() ledgerv1.Consistency }); ok && roles.Writer &&
		r.GetConsistency() == ledgerv1.Consistency_CONSISTENCY_STRONG {
		return false
	}
	return strings.HasPrefix(method, "/ledger.v1.QueryService/") || slices.Contains(queryMethods, method)
}

// roleGate refuses, with errNoQueryRole, the read-model calls of a process
// without the query role. The writer role is checked where a writer starts
// (commands.Ledgers.SetAdmit): whatever call needs one, of whichever
// service, is refused there.
func roleGate(roles Roles) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !roles.Query && needsQueryRole(roles, info.FullMethod, req) {
			return nil, grpcapi.StatusOf(errNoQueryRole)
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !roles.Query && needsQueryRole(roles, info.FullMethod, nil) {
			return grpcapi.StatusOf(errNoQueryRole)
		}
		return handler(srv, ss)
	}
	return unary, stream
}
