// Package anchor signs and verifies anchors: statements, signed with
// Ed25519 by a key that lives outside PostgreSQL, that a ledger's log held,
// at a position, an event with a given hash. An anchor kept where the
// database cannot rewrite it (a file, a NATS bucket, an auditor's copy)
// proves the log up to that position: a deleted tail, a history re-sealed
// with recomputed hashes or a database rolled back to an older copy no
// longer shows the signed hash there.
//
// The package is pure: encoding, signing, verifying, keys. Where anchors are
// kept is the sinks' business (anchor/anchorfile, adapters/natsbus), when
// they are made the signer loop's (workflows.Anchoring).
package anchor

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Version is the version of the signed encoding (Encode) and of the JSON
// form; a verifier refuses any other.
const Version = 1

// encodingMagic starts the signed bytes: a signature over an anchor can
// never be taken for one over anything else this project signs.
const encodingMagic = "ledger-anchor-v1\n"

// Limits of the fields of an anchor, so that the encoding's length bytes
// hold them.
const (
	// LedgerMax is the longest ledger name (domain's pattern allows 63).
	LedgerMax = 255
	// KeyIDLen is the length of a key id: 16 hex digits.
	KeyIDLen = 16
)

// HashSize is the size of an event's hash (SHA-256).
const HashSize = 32

// Errors of Verify and Parse.
var (
	// ErrUnknownKey: the anchor's key id is not among the trusted keys.
	ErrUnknownKey = errors.New("signed by a key that is not trusted")
	// ErrBadSignature: the signature is not the key's over the anchor.
	ErrBadSignature = errors.New("the signature does not verify")
	// ErrMalformed: an anchor's text or fields are not an anchor of this
	// version.
	ErrMalformed = errors.New("not an anchor")
	// ErrConflict: a place that keeps anchors holds, at a ledger's
	// position, an anchor of another hash than the one to publish there.
	// The log at that position is not what was signed before: an anchor is
	// never replaced.
	ErrConflict = errors.New("another hash was signed at this position")
)

// Anchor is one signed checkpoint of a ledger's log.
type Anchor struct {
	Ledger   string
	Position uint64
	// Hash is the hash of the event at Position.
	Hash [HashSize]byte
	// Time is when it was signed (UTC; kept to the nanosecond).
	Time time.Time
	// KeyID names the public key that verifies Signature (KeyID of it).
	KeyID     string
	Signature []byte
}

// Encode returns the bytes an anchor's signature covers, version 1:
//
//	"ledger-anchor-v1\n"
//	ledger length (1 byte), ledger (UTF-8)
//	position (8 bytes, big-endian)
//	hash (32 bytes)
//	time (8 bytes, big-endian, signed Unix nanoseconds, UTC)
//	key id length (1 byte), key id (ASCII hex)
//
// Fixed-width fields and length prefixes: no two anchors encode alike.
// testdata/anchor-v1.golden pins it.
func (a *Anchor) Encode() ([]byte, error) {
	if len(a.Ledger) == 0 || len(a.Ledger) > LedgerMax {
		return nil, fmt.Errorf("ledger %q: %w (1 to %d bytes)", a.Ledger, ErrMalformed, LedgerMax)
	}
	if len(a.KeyID) != KeyIDLen {
		return nil, fmt.Errorf("key id %q: %w (%d hex digits)", a.KeyID, ErrMalformed, KeyIDLen)
	}
	b := make([]byte, 0, len(encodingMagic)+1+len(a.Ledger)+8+HashSize+8+1+len(a.KeyID))
	b = append(b, encodingMagic...)
	b = append(b, byte(len(a.Ledger)))
	b = append(b, a.Ledger...)
	b = binary.BigEndian.AppendUint64(b, a.Position)
	b = append(b, a.Hash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Time.UnixNano()))
	b = append(b, byte(len(a.KeyID)))
	b = append(b, a.KeyID...)
	return b, nil
}

// KeyID is a public key's id: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:KeyIDLen/2])
}

// Signer signs anchors with one private key: the current one.
type Signer struct {
	key ed25519.PrivateKey
	id  string
}

// NewSigner returns a Signer with key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, id: KeyID(key.Public().(ed25519.PublicKey))}
}

// KeyID is the id of the signer's public key.
func (s *Signer) KeyID() string { return s.id }

// Public is the signer's public key.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign returns the anchor of ledger at position, whose event has hash, at
// time at.
//
// Errors: ErrMalformed (a ledger name of more than LedgerMax bytes).
func (s *Signer) Sign(ledger string, position uint64, hash [HashSize]byte, at time.Time) (Anchor, error) {
	a := Anchor{Ledger: ledger, Position: position, Hash: hash, Time: at.UTC(), KeyID: s.id}
	msg, err := a.Encode()
	if err != nil {
		return Anchor{}, err
	}
	a.Signature = ed25519.Sign(s.key, msg)
	return a, nil
}

// Keyring is the public keys a verifier trusts, by key id: the current
// signing key's and those of keys rotated out, whose anchors stay valid.
type Keyring struct {
	keys map[string]ed25519.PublicKey
}

// NewKeyring returns a Keyring trusting keys.
func NewKeyring(keys ...ed25519.PublicKey) *Keyring {
	r := &Keyring{keys: map[string]ed25519.PublicKey{}}
	for _, k := range keys {
		r.Add(k)
	}
	return r
}

// Add trusts k.
func (r *Keyring) Add(k ed25519.PublicKey) { r.keys[KeyID(k)] = k }

// Len is the number of keys trusted.
func (r *Keyring) Len() int { return len(r.keys) }

// Verify checks a's signature against the trusted key it names.
//
// Errors: ErrUnknownKey; ErrBadSignature; ErrMalformed.
func (r *Keyring) Verify(a *Anchor) error {
	k, ok := r.keys[a.KeyID]
	if !ok {
		return fmt.Errorf("key %s: %w", a.KeyID, ErrUnknownKey)
	}
	msg, err := a.Encode()
	if err != nil {
		return err
	}
	if len(a.Signature) != ed25519.SignatureSize || !ed25519.Verify(k, msg, a.Signature) {
		return fmt.Errorf("key %s: %w", a.KeyID, ErrBadSignature)
	}
	return nil
}

// jsonAnchor is an anchor's JSON form: one line of a file sink, the value
// of a NATS key, what ledgerctl anchors list prints.
type jsonAnchor struct {
	V         int    `json:"v"`
	Ledger    string `json:"ledger"`
	Position  uint64 `json:"position"`
	Hash      string `json:"hash"`
	Time      string `json:"time"`
	KeyID     string `json:"key_id"`
	Signature string `json:"signature"`
}

// MarshalJSON writes the JSON form: hash in hex, time RFC 3339 with
// nanoseconds, signature in standard base64.
func (a Anchor) MarshalJSON() ([]byte, error) {
	return json.Marshal(jsonAnchor{V: Version, Ledger: a.Ledger, Position: a.Position, Hash: hex.EncodeToString(a.Hash[:]),
		Time: a.Time.UTC().Format(time.RFC3339Nano), KeyID: a.KeyID, Signature: base64.StdEncoding.EncodeToString(a.Signature)})
}

// UnmarshalJSON reads the JSON form of version 1.
//
// Errors: ErrMalformed with the field.
func (a *Anchor) UnmarshalJSON(b []byte) error {
	var j jsonAnchor
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if j.V != Version {
		return fmt.Errorf("version %d: %w of version %d", j.V, ErrMalformed, Version)
	}
	h, err := hex.DecodeString(j.Hash)
	if err != nil || len(h) != HashSize {
		return fmt.Errorf("hash %q: %w", j.Hash, ErrMalformed)
	}
	t, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		return fmt.Errorf("time %q: %w", j.Time, ErrMalformed)
	}
	sig, err := base64.StdEncoding.DecodeString(j.Signature)
	if err != nil {
		return fmt.Errorf("signature: %w", ErrMalformed)
	}
	*a = Anchor{Ledger: j.Ledger, Position: j.Position, Time: t.UTC(), KeyID: j.KeyID, Signature: sig}
	copy(a.Hash[:], h)
	return nil
}

// Parse reads one anchor's JSON form.
//
// Errors: ErrMalformed.
func Parse(b []byte) (Anchor, error) {
	var a Anchor
	err := a.UnmarshalJSON(b)
	return a, err
}
