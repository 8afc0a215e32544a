package grpcapi

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// withBadUTF8 marshals m, whose strings hold the placeholder "@@@@" where
// the test wants bytes that are not UTF-8, and swaps them in.
func withBadUTF8(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("@@@@")) {
		t.Fatal("no placeholder in the message")
	}
	return bytes.ReplaceAll(b, []byte("@@@@"), []byte("\xff\xfe\xfd\xfc"))
}

// decodeStatus decodes raw into m through the server's codec and its unary
// interceptor, and returns the status the call ends with ("handled" when
// the handler ran).
func decodeStatus(t *testing.T, raw []byte, m proto.Message) (*status.Status, bool) {
	t.Helper()
	c := markingCodec{base: encoding.GetCodecV2("proto")}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, m); err != nil {
		t.Fatalf("codec: %v, want the error carried by the message", err)
	}
	handled := false
	_, err := refuseUndecodedUnary(context.Background(), m, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) {
		handled = true
		return nil, nil
	})
	st, _ := status.FromError(err)
	return st, handled
}

func violation(st *status.Status) string {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return "<none>"
}

func TestUndecodableRequestIsInvalidArgument(t *testing.T) {
	for _, tc := range []struct {
		name  string
		req   proto.Message
		empty proto.Message
		field string
	}{
		{"ledger", &ledgerv1.OpenAccountsRequest{Ledger: "@@@@"}, &ledgerv1.OpenAccountsRequest{}, "ledger"},
		{"nested in a list", &ledgerv1.OpenAccountsRequest{Ledger: "l", Accounts: []*ledgerv1.Account{{Id: "a"}, {Id: "b", Asset: "@@@@"}}},
			&ledgerv1.OpenAccountsRequest{}, "accounts[1].asset"},
		{"optional bound", &ledgerv1.SetAccountBoundsRequest{Ledger: "l", Bounds: []*ledgerv1.AccountBounds{{AccountId: "a", MinBalance: proto.String("@@@@")}}},
			&ledgerv1.SetAccountBoundsRequest{}, "bounds[0].min_balance"},
		{"map value", &ledgerv1.CreateTransfersRequest{Ledger: "l", Transfers: []*ledgerv1.Transfer{{Id: "t", Metadata: map[string]string{"k": "@@@@"}}}},
			&ledgerv1.CreateTransfersRequest{}, "transfers[0].metadata"},
		{"map key", &ledgerv1.CreateTransfersRequest{Ledger: "l", Transfers: []*ledgerv1.Transfer{{Id: "t", Metadata: map[string]string{"@@@@": "v"}}}},
			&ledgerv1.CreateTransfersRequest{}, "transfers[0].metadata"},
		{"repeated string", &ledgerv1.GetBalancesRequest{Ledger: "l", Accounts: []string{"a", "b", "@@@@"}},
			&ledgerv1.GetBalancesRequest{}, "accounts[2]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, handled := decodeStatus(t, withBadUTF8(t, tc.req), tc.empty)
			if handled {
				t.Fatal("the handler ran on a request that does not decode")
			}
			if st.Code() != codes.InvalidArgument || violation(st) != tc.field {
				t.Fatalf("status %v (field %q), want InvalidArgument naming %q", st, violation(st), tc.field)
			}
			if !strings.Contains(st.Message(), "UTF-8") {
				t.Errorf("message %q does not say why", st.Message())
			}
		})
	}
}

func TestTruncatedRequestNamesTheMessage(t *testing.T) {
	raw, err := proto.Marshal(&ledgerv1.GetBalancesRequest{Ledger: "ledger", Accounts: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	st, handled := decodeStatus(t, raw[:len(raw)-2], &ledgerv1.GetBalancesRequest{})
	if handled || st.Code() != codes.InvalidArgument || violation(st) != "accounts[0]" {
		t.Fatalf("status %v (field %q, handled %t), want InvalidArgument naming accounts[0]", st, violation(st), handled)
	}
	// A tag that does not parse: no field to name, so the message is named.
	st, handled = decodeStatus(t, []byte{0x80}, &ledgerv1.GetBalancesRequest{})
	if handled || st.Code() != codes.InvalidArgument || violation(st) != "GetBalancesRequest" {
		t.Fatalf("status %v (field %q, handled %t), want InvalidArgument naming GetBalancesRequest", st, violation(st), handled)
	}
}

func TestDecodableRequestIsHandled(t *testing.T) {
	raw, err := proto.Marshal(&ledgerv1.GetBalancesRequest{Ledger: "ledger", Accounts: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	// An unknown field is allowed, as proto allows it.
	raw = protowire.AppendTag(raw, 99, protowire.VarintType)
	raw = protowire.AppendVarint(raw, 1)
	st, handled := decodeStatus(t, raw, &ledgerv1.GetBalancesRequest{})
	if !handled || st.Code() != codes.OK {
		t.Fatalf("status %v, handled %t: want the handler to run", st, handled)
	}
}

// TestForgedMarkIsRefused: a client sending the mark's field number does not
// choose what the server says.
func TestForgedMarkIsRefused(t *testing.T) {
	raw, err := proto.Marshal(&ledgerv1.GetBalancesRequest{Ledger: "ledger"})
	if err != nil {
		t.Fatal(err)
	}
	raw = protowire.AppendTag(raw, decodeMarkField, protowire.BytesType)
	raw = protowire.AppendString(raw, "ledger\x00chosen by the client")
	st, handled := decodeStatus(t, raw, &ledgerv1.GetBalancesRequest{})
	if handled || st.Code() != codes.InvalidArgument || strings.Contains(st.Message(), "chosen") {
		t.Fatalf("status %v, handled %t: want InvalidArgument in the server's words", st, handled)
	}
}

func TestDecodeReasonIsBounded(t *testing.T) {
	for _, n := range []int{decodeReasonLenMax, decodeReasonLenMax + 1} {
		m := &ledgerv1.GetBalancesRequest{}
		mark(m, "ledger", strings.Repeat("r", n))
		u, ok := markOf(m)
		if !ok || len(u.reason) != min(n, decodeReasonLenMax) || u.field != "ledger" {
			t.Errorf("reason of %d bytes: marked %t, field %q, %d bytes kept; want %d", n, ok, u.field, len(u.reason), min(n, decodeReasonLenMax))
		}
	}
}
