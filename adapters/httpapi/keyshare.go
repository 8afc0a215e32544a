package httpapi

import (
	"sync"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/apikeys"
)

// keyShares is each API key's share of the bodies in flight
// (Gateway.bodies), max bytes a key, as the gRPC server's receive budget
// has one per key (grpcapi.RecvBudget): a key whose uploads stall waits on
// its own share, not on everyone's. A key has a share while it has bodies
// taking or holding room; the last one released drops it, so the map holds
// the keys reading bodies now: at most apikeys.KeysMax (the active keys,
// and a key revoked while its body is read), refused beyond.
type keyShares struct {
	max int64

	mu    sync.Mutex
	byKey map[string]*keyShare
}

// keyShare is one key's share: what its bodies hold of the budget, they
// hold of room too.
type keyShare struct {
	key  string
	room *semaphore.Weighted
	of   *keyShares
	// bodies counts the bodies that took the share and have not put it
	// back, under of.mu.
	bodies int
}

func newKeyShares(max int64) *keyShares {
	return &keyShares{max: max, byKey: map[string]*keyShare{}}
}

// take returns key's share, for one more body; the body puts it back when
// it is released.
//
// Errors: ResourceExhausted when apikeys.KeysMax keys have shares already.
func (s *keyShares) take(key string) (*keyShare, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.byKey[key]
	if !ok {
		if len(s.byKey) >= apikeys.KeysMax {
			return nil, status.Errorf(codes.ResourceExhausted, "the gateway is reading the bodies of %d api keys, "+
				"at most at once: retry", len(s.byKey))
		}
		k = &keyShare{key: key, room: semaphore.NewWeighted(s.max), of: s}
		s.byKey[key] = k
	}
	k.bodies++
	return k, nil
}

// put gives back one body's use of k, which holds no room of it any more;
// the last one drops k.
func (k *keyShare) put() {
	k.of.mu.Lock()
	defer k.of.mu.Unlock()
	if k.bodies--; k.bodies == 0 {
		delete(k.of.byKey, k.key)
	}
}

// refusal is the answer to a body that found no room in k, asking for
// asked bytes (0: as it grew).
func (k *keyShare) refusal(asked int64) error {
	if asked > 0 {
		return status.Errorf(codes.ResourceExhausted, "api key %s's other request bodies hold its share of the gateway's "+
			"(%d bytes asked, %d at most at once for one key): retry", k.key, asked, k.of.max)
	}
	return status.Errorf(codes.ResourceExhausted, "api key %s's other request bodies hold its share of the gateway's "+
		"(%d bytes at most at once for one key): retry", k.key, k.of.max)
}
