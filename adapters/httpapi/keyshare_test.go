package httpapi

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/apikeys"
)

// TestKeySharesBounded: at most apikeys.KeysMax keys have a share at once,
// a key more is refused (ResourceExhausted) while a key with one still
// takes it; a share is dropped when its last body puts it back, which makes
// room.
func TestKeySharesBounded(t *testing.T) {
	s := newKeyShares(1 << 20)
	shares := make([]*keyShare, apikeys.KeysMax)
	for i := range shares {
		k, err := s.take(fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatalf("key %d of %d: %v", i, apikeys.KeysMax, err)
		}
		shares[i] = k
	}
	if _, err := s.take("over"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a key beyond %d: %v, want ResourceExhausted", apikeys.KeysMax, err)
	}
	again, err := s.take("k0")
	if err != nil || again != shares[0] {
		t.Fatalf("a second body of a key with a share: %p %v, want its share %p", again, err, shares[0])
	}
	shares[0].put()
	if _, err := s.take("over"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a key beyond %d while k0 has a body left: %v, want ResourceExhausted", apikeys.KeysMax, err)
	}
	again.put()
	if len(s.byKey) != apikeys.KeysMax-1 {
		t.Fatalf("%d shares once k0's bodies are all put back, want %d", len(s.byKey), apikeys.KeysMax-1)
	}
	if _, err := s.take("over"); err != nil {
		t.Fatalf("a new key once there is room: %v", err)
	}
}
