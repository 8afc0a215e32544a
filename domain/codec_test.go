package domain_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ledgerd/ledger/domain"
)

// nastyStrings exercise every escape encoding/json makes.
var nastyStrings = []string{"", "plain", `q"uote`, `back\slash`, "<tag>&amp;", "tab\tnl\ncr\rbs\bff\f",
	"\x00\x01\x1f", "line\u2028sep\u2029", "bad\xffutf8\xc3", "ünïcødé ✓ 💸", "\x7f"}

func randomString(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		return nastyStrings[r.IntN(len(nastyStrings))]
	}
	b := make([]byte, r.IntN(20))
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return string(b)
}

func randomEvent(r *rand.Rand) domain.Event {
	meta := func() map[string]string {
		if r.IntN(2) == 0 {
			return nil
		}
		m := map[string]string{}
		for range r.IntN(4) {
			m[randomString(r)] = randomString(r)
		}
		return m
	}
	amount := func() *domain.Amount {
		a := domain.Amount{Units: domain.UnitsFromInt64(r.Int64N(1 << 62)), Scale: uint8(r.IntN(19))}
		if r.IntN(4) == 0 {
			a.Units = a.Units.Neg()
		}
		return &a
	}
	when := func() time.Time {
		return time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(time.FixedZone("x", 3600*(r.IntN(25)-12)))
	}
	postings := func() []domain.Posting {
		if r.IntN(10) == 0 {
			return nil // written as null
		}
		var ps []domain.Posting
		for range 1 + r.IntN(4) {
			ps = append(ps, domain.Posting{Debit: randomString(r), Credit: randomString(r), Asset: randomString(r), Amount: *amount()})
		}
		return ps
	}
	maybe := func() *domain.Amount {
		if r.IntN(2) == 0 {
			return amount()
		}
		return nil
	}
	switch r.IntN(11) {
	case 0:
		return domain.AssetDefined{Code: randomString(r), Scale: uint8(r.IntN(19))}
	case 1:
		return domain.AccountOpened{ID: randomString(r), Asset: randomString(r), Normal: domain.Side(1 + r.IntN(2)), Metadata: meta(),
			MinBalance: maybe(), MaxBalance: maybe()}
	case 2:
		return domain.AccountBoundsChanged{ID: randomString(r), MinBalance: maybe(), MaxBalance: maybe()}
	case 3:
		return domain.AccountMetadataSet{ID: randomString(r), Metadata: meta()}
	case 4:
		return domain.AccountClosed{ID: randomString(r)}
	case 5:
		e := domain.TransferPending{ID: randomString(r), Postings: postings(), Reference: randomString(r), Metadata: meta(), EffectiveAt: when()}
		if r.IntN(2) == 0 {
			at := when()
			e.TimeoutSeconds, e.ExpiresAt = r.Uint32(), &at
		}
		return e
	case 6:
		e := domain.PendingPosted{ID: randomString(r), PendingID: randomString(r), Reference: randomString(r), Metadata: meta(), EffectiveAt: when()}
		for range r.IntN(4) {
			e.Postings = append(e.Postings, domain.HeldPosting{Debit: randomString(r), Credit: randomString(r), Asset: randomString(r),
				Amount: *amount(), Held: *amount()})
		}
		return e
	case 7:
		return domain.PendingVoided{ID: randomString(r), PendingID: randomString(r), Postings: postings(), Reference: randomString(r)}
	case 8:
		return domain.PendingExpired{PendingID: randomString(r), Postings: postings()}
	case 9:
		return domain.TransferReversed{ID: randomString(r), TransferID: randomString(r), TransferPosition: r.Uint64(), Postings: postings(),
			Reference: randomString(r), Metadata: meta(), EffectiveAt: when()}
	}
	return domain.TransferCommitted{ID: randomString(r), Postings: postings(), Reference: randomString(r), Metadata: meta(), EffectiveAt: when()}
}

func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	types := map[string]int{}
	for i := 0; i < 20000; i++ {
		e := randomEvent(r)
		types[e.EventType()]++
		want, err := domain.MarshalEvent(e)
		if err != nil {
			t.Fatalf("MarshalEvent(%#v): %v", e, err)
		}
		if got := domain.AppendEvent(nil, e); string(got) != string(want) {
			t.Fatalf("AppendEvent(%#v)\n got %s\nwant %s", e, got, want)
		}
		// Appending keeps what the buffer held.
		if got := domain.AppendEvent([]byte("prefix"), e); string(got) != "prefix"+string(want) {
			t.Fatalf("AppendEvent after a prefix = %s", got)
		}
	}
	// Every event type of the contract is covered.
	for _, typ := range []string{domain.TypeAssetDefined, domain.TypeAccountOpened, domain.TypeAccountBoundsChanged,
		domain.TypeAccountMetadataSet, domain.TypeAccountClosed, domain.TypeTransferCommitted, domain.TypeTransferPending,
		domain.TypePendingPosted, domain.TypePendingVoided, domain.TypePendingExpired, domain.TypeTransferReversed} {
		if types[typ] == 0 {
			t.Errorf("randomEvent never made a %s", typ)
		}
	}
}

func BenchmarkAppendEventTransfer(b *testing.B) {
	e := domain.TransferCommitted{ID: "t-12-345678", EffectiveAt: time.Now().UTC(), Postings: []domain.Posting{
		{Debit: "acc-123", Credit: "acc-4567", Asset: "USD", Amount: domain.Amount{Units: domain.UnitsFromInt64(12345), Scale: 2}}}}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = domain.AppendEvent(buf[:0], e)
	}
}

func BenchmarkMarshalEventTransfer(b *testing.B) {
	e := domain.TransferCommitted{ID: "t-12-345678", EffectiveAt: time.Now().UTC(), Postings: []domain.Posting{
		{Debit: "acc-123", Credit: "acc-4567", Asset: "USD", Amount: domain.Amount{Units: domain.UnitsFromInt64(12345), Scale: 2}}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := domain.MarshalEvent(e); err != nil {
			b.Fatal(err)
		}
	}
}
