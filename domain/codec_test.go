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
	switch r.IntN(3) {
	case 0:
		return domain.AssetDefined{Code: randomString(r), Scale: uint8(r.IntN(19))}
	case 1:
		e := domain.AccountOpened{ID: randomString(r), Asset: randomString(r), Normal: domain.Side(1 + r.IntN(2)), Metadata: meta()}
		if r.IntN(2) == 0 {
			e.MinBalance = amount()
		}
		if r.IntN(2) == 0 {
			e.MaxBalance = amount()
		}
		return e
	}
	e := domain.TransferCommitted{ID: randomString(r), Reference: randomString(r), Metadata: meta(),
		EffectiveAt: time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(time.FixedZone("x", 3600*(r.IntN(25)-12)))}
	for range 1 + r.IntN(4) {
		e.Postings = append(e.Postings, domain.Posting{Debit: randomString(r), Credit: randomString(r), Asset: randomString(r), Amount: *amount()})
	}
	return e
}

func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < 20000; i++ {
		e := randomEvent(r)
		want, err := domain.MarshalEvent(e)
		if err != nil {
			t.Fatalf("MarshalEvent(%#v): %v", e, err)
		}
		if got := domain.AppendEvent(nil, e); string(got) != string(want) {
			t.Fatalf("AppendEvent(%#v)\n got %s\nwant %s", e, got, want)
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
