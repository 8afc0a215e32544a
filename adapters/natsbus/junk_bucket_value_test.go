package natsbus_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestOneJunkBucketValueHidesEveryAnchor: one entry written by anyone who
// reaches NATS that is not a trusted anchor (junk, unsigned, signed by a
// key not trusted, a genuine anchor copied to another key) is passed over
// by List; the signed anchors are still listed. List used to fail whole on
// a value that did not parse, so IntegrityService.ListAnchors (and
// ledgerctl anchors list, and an export's trailer) gave none of them.
func TestOneJunkBucketValueHidesEveryAnchor(t *testing.T) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	testenv.NoError(t, err)
	s := anchor.NewSigner(k)
	js := jetStream(t)
	bucket := natsbus.NewAnchors(js, anchor.NewKeyring(s.Public()), nil)
	ledger := testenv.Name(t)
	var genuine anchor.Anchor
	for _, pos := range []uint64{10, 20} {
		a, err := s.Sign(ledger, pos, [32]byte{byte(pos)}, time.Now())
		testenv.NoError(t, err)
		testenv.NoError(t, bucket.Put(t.Context(), a))
		genuine = a
	}
	kv, err := js.KeyValue(t.Context(), natsbus.AnchorBucket)
	testenv.NoError(t, err)
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	testenv.NoError(t, err)
	untrusted, err := anchor.NewSigner(otherKey).Sign(ledger, 40, [32]byte{40}, time.Now())
	testenv.NoError(t, err)
	unsigned := genuine
	unsigned.Position, unsigned.Signature = 50, []byte("not a signature")
	for pos, value := range map[uint64]anchor.Anchor{30: genuine, 40: untrusted, 50: unsigned} {
		b, err := value.MarshalJSON()
		testenv.NoError(t, err)
		_, err = kv.Create(t.Context(), fmt.Sprintf("%s.%020d", ledger, pos), b)
		testenv.NoError(t, err)
	}
	_, err = kv.Create(t.Context(), fmt.Sprintf("%s.%020d", ledger, 99), []byte("junk"))
	testenv.NoError(t, err)
	got, more, err := bucket.List(t.Context(), ledger, 0, 0, 100)
	if err != nil || len(got) != 2 || got[0].Position != 10 || got[1].Position != 20 || more {
		t.Fatalf("List after junk, unsigned, untrusted and misplaced values: %v, more %v, err %v; want the 2 signed ones", got, more, err)
	}
	// Put replaces such an entry with the signed anchor: no conflict.
	for _, pos := range []uint64{30, 40, 50, 99} {
		a, err := s.Sign(ledger, pos, [32]byte{byte(pos)}, time.Now())
		testenv.NoError(t, err)
		if err := bucket.Put(t.Context(), a); err != nil {
			t.Fatalf("Put at %d over an entry that is not a trusted anchor: %v", pos, err)
		}
	}
	got, _, err = bucket.List(t.Context(), ledger, 0, 0, 100)
	if err != nil || len(got) != 6 {
		t.Fatalf("List after the Puts: %v, %v; want 6 signed anchors", got, err)
	}
}
