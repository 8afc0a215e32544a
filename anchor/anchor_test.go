package anchor_test

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ledgerd/ledger/anchor"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixedKey is a key from a fixed seed: the golden signature depends on it.
func fixedKey(b byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = b + byte(i)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func fixedAnchor(t *testing.T, s *anchor.Signer) anchor.Anchor {
	t.Helper()
	var h [anchor.HashSize]byte
	for i := range h {
		h[i] = byte(0xa0 + i)
	}
	a, err := s.Sign("acme-eu", 1234567, h, time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The signed bytes and the JSON form are a contract: an anchor signed today
// must verify with any later build. The golden file pins both.
func TestEncodingGolden(t *testing.T) {
	t.Parallel()
	a := fixedAnchor(t, anchor.NewSigner(fixedKey(1)))
	enc, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	js, err := a.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	got := hex.EncodeToString(enc) + "\n" + string(js) + "\n"
	path := filepath.Join("testdata", "anchor-v1.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("encoding changed (a new version needs a new magic):\n got %s\nwant %s", got, want)
	}
	back, err := anchor.Parse(js)
	if err != nil {
		t.Fatal(err)
	}
	if err := anchor.NewKeyring(fixedKey(1).Public().(ed25519.PublicKey)).Verify(&back); err != nil {
		t.Fatalf("the golden anchor read back: %v", err)
	}
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	s := anchor.NewSigner(fixedKey(1))
	ring := anchor.NewKeyring(s.Public())
	a := fixedAnchor(t, s)
	if err := ring.Verify(&a); err != nil {
		t.Fatal(err)
	}
	for name, alter := range map[string]func(*anchor.Anchor){
		"position": func(a *anchor.Anchor) { a.Position++ },
		"hash":     func(a *anchor.Anchor) { a.Hash[31] ^= 1 },
		"ledger":   func(a *anchor.Anchor) { a.Ledger = "acme-us" },
		"time":     func(a *anchor.Anchor) { a.Time = a.Time.Add(time.Nanosecond) },
		"sig":      func(a *anchor.Anchor) { a.Signature[0] ^= 1 },
		"sig-cut":  func(a *anchor.Anchor) { a.Signature = a.Signature[:10] },
	} {
		b := a
		b.Signature = append([]byte(nil), a.Signature...)
		alter(&b)
		if err := ring.Verify(&b); !errors.Is(err, anchor.ErrBadSignature) {
			t.Errorf("%s altered: %v, want ErrBadSignature", name, err)
		}
	}
	if err := anchor.NewKeyring(fixedKey(2).Public().(ed25519.PublicKey)).Verify(&a); !errors.Is(err, anchor.ErrUnknownKey) {
		t.Fatalf("another key: %v, want ErrUnknownKey", err)
	}
}

// Rotation: a keyring of the old and the new public keys verifies anchors
// of both; the old key alone does not verify the new anchors.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var signers []*anchor.Signer
	for _, name := range []string{"2025.pub", "2026.pub"} {
		priv, pub, err := anchor.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		k, err := anchor.ParsePrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, anchor.NewSigner(k))
		if err := os.WriteFile(filepath.Join(dir, name), pub, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, cur := fixedAnchor(t, signers[0]), fixedAnchor(t, signers[1])
	if old.KeyID == cur.KeyID {
		t.Fatal("two keys, one id")
	}
	ring, err := anchor.LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []anchor.Anchor{old, cur} {
		if err := ring.Verify(&a); err != nil {
			t.Fatalf("key %s: %v", a.KeyID, err)
		}
	}
	oldOnly, err := anchor.LoadKeyring(filepath.Join(dir, "2025.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := oldOnly.Verify(&cur); !errors.Is(err, anchor.ErrUnknownKey) {
		t.Fatalf("the new anchor with the old key only: %v", err)
	}
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	priv, pub, err := anchor.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := anchor.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := anchor.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if fromPriv, err := anchor.ParsePublicKey(priv); err != nil || !p.Equal(fromPriv) {
		t.Fatalf("a private key file as the public key: %v", err)
	}
	if !p.Equal(k.Public()) {
		t.Fatal("the public key is not the private key's")
	}
	for _, bad := range []string{"", "hello", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		if _, err := anchor.ParsePrivateKey([]byte(bad)); !errors.Is(err, anchor.ErrNoKey) {
			t.Errorf("private %q: %v", bad, err)
		}
		if _, err := anchor.ParsePublicKey([]byte(bad)); !errors.Is(err, anchor.ErrNoKey) {
			t.Errorf("public %q: %v", bad, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{`{}`, `{"v":2}`, `not json`,
		`{"v":1,"ledger":"a","position":1,"hash":"zz","time":"2026-01-01T00:00:00Z","key_id":"0011223344556677","signature":""}`,
		`{"v":1,"ledger":"a","position":1,"hash":"` + hex.EncodeToString(make([]byte, 32)) + `","time":"yesterday","key_id":"0011223344556677","signature":""}`,
	} {
		if _, err := anchor.Parse([]byte(bad)); !errors.Is(err, anchor.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", bad, err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	s := anchor.NewSigner(fixedKey(1))
	var h [anchor.HashSize]byte
	at := time.Now()
	for b.Loop() {
		if _, err := s.Sign("acme-eu", 1234567, h, at); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify1000 verifies the signatures of 1,000 anchors: a day of
// one ledger's anchors at one every 90 s.
func BenchmarkVerify1000(b *testing.B) {
	s := anchor.NewSigner(fixedKey(1))
	ring := anchor.NewKeyring(s.Public())
	var h [anchor.HashSize]byte
	as := make([]anchor.Anchor, 1000)
	for i := range as {
		a, err := s.Sign("acme-eu", uint64(i+1), h, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		as[i] = a
	}
	for b.Loop() {
		for i := range as {
			if err := ring.Verify(&as[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
