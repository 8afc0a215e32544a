package grpcapi

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ledgerd/ledger/adapters/apikeys"
	_ "github.com/ledgerd/ledger/api/ledger/v1" // registers ledger.v1's descriptors
)

// TestEveryMethodHasARole: every method of every ledger.v1 service is in
// methodRoles (a method missing would be refused to every key), with
// the role the API promises, and the table names no method that does not
// exist. ReconciliationService is checked once its descriptor is linked in.
func TestEveryMethodHasARole(t *testing.T) {
	want := map[string]apikeys.Role{
		"CommandService":                          apikeys.RoleWriter,
		"CommandService/ClosePeriod":              apikeys.RoleAdmin,
		"QueryService":                            apikeys.RoleReader,
		"AuditService/ReadEvents":                 apikeys.RoleAuditor,
		"AuditService/ReadStatementLines":         apikeys.RoleAuditor,
		"AuditService/ImportEvents":               apikeys.RoleAdmin,
		"AdminService":                            apikeys.RoleAdmin,
		"AdminService/GetLedger":                  apikeys.RoleReader,
		"IntegrityService":                        apikeys.RoleAuditor,
		"MonitoringService":                       apikeys.RoleReader,
		"MonitoringService/DefineRules":           apikeys.RoleWriter,
		"MonitoringService/FreezeAccounts":        apikeys.RoleWriter,
		"MonitoringService/UnfreezeAccounts":      apikeys.RoleWriter,
		"WebhookService":                          apikeys.RoleAdmin,
		"WebhookService/ListSubscriptions":        apikeys.RoleReader,
		"WebhookService/ListDeliveries":           apikeys.RoleReader,
		"ReconciliationService/ImportStatement":   apikeys.RoleWriter,
		"ReconciliationService/SetMatchingRules":  apikeys.RoleWriter,
		"ReconciliationService/MatchManually":     apikeys.RoleWriter,
		"ReconciliationService/Unmatch":           apikeys.RoleWriter,
		"ReconciliationService/GetReconciliation": apikeys.RoleReader,
		"ReconciliationService/ListUnmatched":     apikeys.RoleReader,
		"ReconciliationService/GetDailyJournal":   apikeys.RoleReader,
	}
	seen := map[string]bool{}
	for _, svc := range []string{"CommandService", "QueryService", "AuditService", "AdminService", "ReconciliationService", "IntegrityService",
		"MonitoringService", "WebhookService"} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName("ledger.v1." + svc))
		if err != nil {
			if svc == "ReconciliationService" {
				continue // not built yet
			}
			t.Fatalf("service %s: %v", svc, err)
		}
		methods := d.(protoreflect.ServiceDescriptor).Methods()
		for i := range methods.Len() {
			name := svc + "/" + string(methods.Get(i).Name())
			full := "/ledger.v1." + name
			seen[full] = true
			role, ok := methodRoles[full]
			expect, exact := want[name]
			if !exact {
				expect = want[svc]
			}
			if !ok || role != expect {
				t.Errorf("%s needs %q (in table: %v), want %q", full, role, ok, expect)
			}
		}
	}
	for m := range methodRoles {
		if !seen[m] && !strings.HasPrefix(m, "/ledger.v1.ReconciliationService/") {
			t.Errorf("methodRoles names %s, which no service has", m)
		}
	}
}
