package natsbus_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/internal/testenv"
)

// Anchors put out of order come back by position, one ledger's only, in
// pages that end where asked, each signature intact.
func TestAnchorsPutList(t *testing.T) {
	t.Parallel()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	testenv.NoError(t, err)
	s := anchor.NewSigner(k)
	ring := anchor.NewKeyring(s.Public())
	bucket := natsbus.NewAnchors(jetStream(t), anchor.NewKeyring(s.Public()), nil)
	ledger, other := testenv.Name(t), testenv.Name(t)+"-other"
	for _, pos := range []uint64{30, 10, 20, 40, 50} {
		for _, l := range []string{ledger, other} {
			a, err := s.Sign(l, pos, [32]byte{byte(pos)}, time.Now())
			testenv.NoError(t, err)
			testenv.NoError(t, bucket.Put(t.Context(), a))
		}
	}
	got, more, err := bucket.List(t.Context(), ledger, 15, 0, 2)
	testenv.NoError(t, err)
	if len(got) != 2 || got[0].Position != 20 || got[1].Position != 30 || !more {
		t.Fatalf("from 15, 2: %v, more %v", got, more)
	}
	// A page of 1 out of 5 put out of order: what List keeps is cut to the
	// page as it reads, and the lowest position still comes first.
	got, more, err = bucket.List(t.Context(), ledger, 0, 0, 1)
	testenv.NoError(t, err)
	if len(got) != 1 || got[0].Position != 10 || !more {
		t.Fatalf("from 0, 1: %v, more %v", got, more)
	}
	got, more, err = bucket.List(t.Context(), ledger, 31, 40, 1000)
	testenv.NoError(t, err)
	if len(got) != 1 || got[0].Position != 40 || more || got[0].Ledger != ledger || ring.Verify(&got[0]) != nil {
		t.Fatalf("31..40: %v, more %v", got, more)
	}
}

// An anchor is never replaced: the same head published again is no error
// and keeps the first; another hash at a position the bucket holds is
// refused with anchor.ErrConflict, and the first stays. (Replaced, a
// rewritten log's anchor took the place of the one that would catch it.)
func TestAnchorsNeverReplaced(t *testing.T) {
	t.Parallel()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	testenv.NoError(t, err)
	s := anchor.NewSigner(k)
	bucket := natsbus.NewAnchors(jetStream(t), anchor.NewKeyring(s.Public()), nil)
	ledger := testenv.Name(t)
	first, err := s.Sign(ledger, 5, [32]byte{1}, time.Now())
	testenv.NoError(t, err)
	testenv.NoError(t, bucket.Put(t.Context(), first))
	again, err := s.Sign(ledger, 5, [32]byte{1}, time.Now().Add(time.Second))
	testenv.NoError(t, err)
	testenv.NoError(t, bucket.Put(t.Context(), again))
	forged, err := s.Sign(ledger, 5, [32]byte{2}, time.Now())
	testenv.NoError(t, err)
	if err := bucket.Put(t.Context(), forged); !errors.Is(err, anchor.ErrConflict) {
		t.Fatalf("another hash at 5: %v, want anchor.ErrConflict", err)
	}
	got, _, err := bucket.List(t.Context(), ledger, 0, 0, 10)
	testenv.NoError(t, err)
	if len(got) != 1 || got[0].Hash != first.Hash || !got[0].Time.Equal(first.Time) {
		t.Fatalf("held: %+v, want the first anchor alone", got)
	}
}
