package daemon_test

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// allocatedDuring is the bytes the whole process allocated while f ran:
// a count that only grows, whatever the collector does meanwhile. Tests
// that use it are not parallel, so that the count is theirs and their
// ledgerd's (its background work allocates little).
func allocatedDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestManyTinyItemsBounded: a CreateTransfers of 8 MiB made of empty
// transfers (2 bytes each on the wire: 4M of them), over gRPC, and of
// 8 MiB of "{}," over REST, is refused for its item count from the wire,
// before it is decoded: decoded, each 2 or 3 bytes would be a Transfer of
// some 150 (584 MiB grown for the gRPC request), before the 8,192 items
// bound was checked.
func TestManyTinyItemsBounded(t *testing.T) {
	h := start(t)
	const msgLen = 8 << 20
	msg := make([]byte, 0, msgLen+16)
	msg = append(msg, 0x0a, 1, 'x') // ledger "x"
	for len(msg)+2 <= msgLen {
		msg = append(msg, 0x12, 0x00) // transfers: an empty Transfer
	}
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	defer conn.Close()
	// A first call connects, so that the one measured costs only itself.
	_, _ = h.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{})
	err = conn.Invoke(ctx(t), "/ledger.v1.CommandService/CreateTransfers", []byte{0x0a, 1, 'x'}, &ledgerv1.CreateTransfersResponse{},
		grpc.ForceCodec(rawCodec{}))
	wantCode(t, "CreateTransfers without transfers", err, codes.InvalidArgument)
	allocated := allocatedDuring(func() {
		err = conn.Invoke(ctx(t), "/ledger.v1.CommandService/CreateTransfers", msg, &ledgerv1.CreateTransfersResponse{},
			grpc.ForceCodec(rawCodec{}))
	})
	st, _ := status.FromError(err)
	t.Logf("CreateTransfers of %d MiB, %d empty transfers: %v; %d MiB allocated", msgLen>>20, (len(msg)-3)/2, err,
		allocated>>20)
	if st.Code() != codes.InvalidArgument || fieldOf(st) != "transfers" {
		t.Errorf("%v (field %q), want InvalidArgument naming transfers", err, fieldOf(st))
	}
	if allocated > 8*msgLen {
		t.Errorf("a %d MiB request of tiny items made the process allocate %d MiB (%dx the message) before it was "+
			"refused for its item count", msgLen>>20, allocated>>20, allocated/msgLen)
	}

	body := `{"transfers":[{}` + strings.Repeat(`,{}`, (msgLen-20)/3) + `]}`
	var out []byte
	allocated = allocatedDuring(func() { out = h.rest(t, "POST", "/v1/ledgers/x/transfers", body, 400, nil) })
	t.Logf("REST CreateTransfers of %d MiB of {}: %.200s; %d MiB allocated", len(body)>>20, out, allocated>>20)
	if field := restField(t, out); field != "transfers" {
		t.Errorf("REST: %s, want InvalidArgument naming transfers", out)
	}
	// The body is read by a json.Decoder and copied once (a few times its
	// bytes in all); decoded, it was 50 times.
	if allocated > 8*uint64(len(body)) {
		t.Errorf("a %d MiB REST body of tiny items made the process allocate %d MiB (%dx the body) before it was "+
			"refused for its item count", len(body)>>20, allocated>>20, allocated/uint64(len(body)))
	}
}

// TestRESTFaultSearchBounded: a REST body whose list holds many tiny wrong
// elements ({"accounts":[1,1,...]}, 4 MiB on balances:batchGet, a
// reader's route) is refused naming the list without costing many times
// its bytes: the search for the field at fault went through the whole
// list as a []json.RawMessage, a slice header and an allocation for each
// 2 bytes of body (now the list's count is refused first, and the search
// reads a list element by element). Within its bound, the first wrong
// element is still named.
func TestRESTFaultSearchBounded(t *testing.T) {
	h := start(t)
	var b strings.Builder
	b.WriteString(`{"accounts":[1`)
	for b.Len()+4 < 4<<20-64 {
		b.WriteString(",1")
	}
	b.WriteString("]}")
	body := b.String()
	var out []byte
	allocated := allocatedDuring(func() { out = h.rest(t, "POST", "/v1/ledgers/x/balances:batchGet", body, 400, nil) })
	t.Logf("balances:batchGet of %d bytes: %.200s; %d MiB allocated", len(body), out, allocated>>20)
	if field := restField(t, out); field != "accounts" {
		t.Errorf("field %q, want accounts", field)
	}
	if allocated > 8*uint64(len(body)) {
		t.Errorf("a %d MiB REST body with a bad list made the process allocate %d MiB (%dx the body) to name the field",
			len(body)>>20, allocated>>20, allocated/uint64(len(body)))
	}
	within := `{"accounts":[` + strings.Repeat(`"a",`, 999) + `1]}`
	if field := restField(t, h.rest(t, "POST", "/v1/ledgers/x/balances:batchGet", within, 400, nil)); field != "accounts[999]" {
		t.Errorf("a list of 1,000 whose last is a number: field %q, want accounts[999]", field)
	}
}

// restField is the field a REST error body names first.
func restField(t *testing.T, out []byte) string {
	t.Helper()
	var e restError
	testenv.NoError(t, json.Unmarshal(out, &e))
	if len(e.Details) == 0 || len(e.Details[0].FieldViolations) == 0 {
		return ""
	}
	return e.Details[0].FieldViolations[0].Field
}
