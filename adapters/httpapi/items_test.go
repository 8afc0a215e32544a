package httpapi

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// TestOverfullJSON: a body's lists and maps are counted, all of a field's
// elements together, against their fields' bounds (grpcapi.RepeatedMax)
// times the bounds of the lists they are in, at any depth, by JSON or
// proto name, and named as a client names them; at the bound, and in what
// is not a field, nothing is refused.
func TestOverfullJSON(t *testing.T) {
	list := func(elem string, n int) string {
		return "[" + strings.TrimSuffix(strings.Repeat(elem+",", n), ",") + "]"
	}
	transfers := (&ledgerv1.CreateTransfersRequest{}).ProtoReflect().Descriptor()
	for _, tc := range []struct {
		name, body string
		md         protoreflect.MessageDescriptor
		field      string
	}{
		{"at the bound", `{"ledger":"x","transfers":` + list(`{"postings":`+list("{}", 64)+`}`, 8192) + `}`, transfers, ""},
		{"transfers over", `{"transfers":` + list("{}", 8193) + `}`, transfers, "transfers"},
		// One transfer over its own bounds is its item's fault (the domain
		// answers it in its result); only more than a request of the most
		// items could hold is refused whole.
		{"one transfer's postings over", `{"transfers":[{},{"postings":` + list(`{"amount":"1"}`, 65) + `}]}`, transfers, ""},
		{"one transfer's metadata over", `{"transfers":[{"metadata":{` + strings.Repeat(`"k":"v",`, 32) + `"k":"v"}}]}`, transfers, ""},
		{"postings over in all", `{"transfers":[{},{"postings":` + list(`{}`, 64*8192+1) + `}]}`, transfers, "transfers[].postings"},
		{"metadata over in all", `{"transfers":[{"metadata":{` + strings.Repeat(`"k":"v",`, 32*8192) + `"k":"v"}}]}`, transfers,
			"transfers[].metadata"},
		{"unknown field", `{"other":` + list("{}", 9000) + `,"transfers":[{}]}`, transfers, ""},
		{"not a list", `{"transfers":{"a":[1,2]}}`, transfers, ""},
		{"proto name", `{"account_ids":` + list(`"a"`, 8193) + `}`, (&ledgerv1.CloseAccountsRequest{}).ProtoReflect().Descriptor(),
			"account_ids"},
		{"JSON name", `{"accountIds":` + list(`"a"`, 8193) + `}`, (&ledgerv1.CloseAccountsRequest{}).ProtoReflect().Descriptor(),
			"account_ids"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			over := overfullJSON(tc.md, []byte(tc.body))
			switch {
			case tc.field == "" && over != nil:
				t.Errorf("refused: %s: %v", over.Field, over)
			case tc.field != "" && (over == nil || over.Field != tc.field):
				t.Errorf("got %+v, want %s", over, tc.field)
			}
		})
	}
}
