// Package apikeys stores ledgerd's API keys in PostgreSQL and verifies them.
//
// A key's text is "lk_<id>_<secret>": id is 12 hex digits (6 random bytes,
// the row's primary key, safe to log and to show in lists), secret 52 to 128
// characters of [a-z0-9] (a generated one is 32 random bytes in base32).
// Only SHA-256(secret) is stored, so the table gives nobody a usable key; a
// secret has 256 random bits, so a plain hash (no salt, no stretching) is
// enough: there is no dictionary to try.
//
// Verification looks the id up and compares the hash in constant time. A
// verified key is cached in memory and re-checked against the table every
// RefreshEveryDefault, so that calls cost no database round trip while a
// revoked key stops working within seconds, on every ledgerd sharing the
// database.
package apikeys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ledgerd/ledger/domain"
)

// Limits of the key store.
const (
	// KeysMax bounds the active (unrevoked) keys: the verification cache
	// holds at most this many, and a listing returns at most this many.
	KeysMax = 10_000
	// LedgersPerKeyMax bounds the ledgers a key is scoped to; a key for more
	// is better made for every ledger.
	LedgersPerKeyMax = 64
	// LookupsMax bounds the key look-ups in flight in a process; more wait.
	LookupsMax = 4
	// DescriptionBytesMax bounds a key's description.
	DescriptionBytesMax = 256
	// idBytes random bytes make an id (12 hex digits): unique among KeysMax
	// keys with room to spare, and short enough to read out.
	idBytes = 6
	// secretBytes random bytes make a generated secret: 256 bits.
	secretBytes = 32
	// secretLenMin and secretLenMax bound a secret's text: 52 is 32 bytes in
	// base32, 64 in hex (openssl rand -hex 32).
	secretLenMin = 52
	secretLenMax = 128
	// prefix starts every key, so a key is recognised in a config file or a
	// leaked log (and by secret scanners).
	prefix = "lk_"
)

// Role is what a key may do. A key has one or more.
type Role string

// The roles. Which calls need which role is decided by the API
// (adapters/grpcapi/auth.go), not here.
const (
	// RoleWriter changes ledgers (CommandService).
	RoleWriter Role = "writer"
	// RoleReader reads the projections (QueryService).
	RoleReader Role = "reader"
	// RoleAuditor reads the log (AuditService.ReadEvents).
	RoleAuditor Role = "auditor"
	// RoleAdmin may do everything, including making and revoking keys.
	RoleAdmin Role = "admin"
)

// Roles lists every role, in a fixed order.
var Roles = []Role{RoleWriter, RoleReader, RoleAuditor, RoleAdmin}

// Errors of the key store.
var (
	// ErrMalformed means a key's text is not lk_<id>_<secret>.
	ErrMalformed = errors.New("malformed api key")
	// ErrUnknown means no key has the id, or its secret differs: the two are
	// one error so that an id alone tells a caller nothing.
	ErrUnknown = errors.New("unknown api key")
	// ErrRevoked means the key was revoked.
	ErrRevoked = errors.New("revoked api key")
	// ErrNotFound means no key has the id (revoke).
	ErrNotFound = errors.New("api key not found")
	// ErrTooManyKeys means KeysMax keys are active: revoke some first.
	ErrTooManyKeys = errors.New("too many active api keys")
	// ErrConflict means a bootstrap key's id exists with another secret or
	// without the admin role.
	ErrConflict = errors.New("api key id taken by another key")
	// ErrInvalid means a field of a new key is bad; see FieldError.
	ErrInvalid = errors.New("invalid api key field")
)

// FieldError names the field of a new key that is bad, and why. It is
// ErrInvalid for errors.Is.
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes a FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Key is a stored key, without its secret.
type Key struct {
	ID    string
	Roles []Role
	// Ledgers the key may touch; nil: every ledger.
	Ledgers     []string
	Description string
	CreatedAt   time.Time
	// RevokedAt is zero while the key is active.
	RevokedAt time.Time
}

// Has says whether the key may act as role: admin may act as any.
func (k Key) Has(role Role) bool {
	return slices.Contains(k.Roles, role) || slices.Contains(k.Roles, RoleAdmin)
}

// AllLedgers says whether the key is scoped to every ledger.
func (k Key) AllLedgers() bool { return k.Ledgers == nil }

// AllowsLedger says whether the key may touch ledger. A scoped key allows no
// empty name: a request that names no ledger means every ledger.
func (k Key) AllowsLedger(ledger string) bool {
	return k.Ledgers == nil || slices.Contains(k.Ledgers, ledger)
}

// NewKey is what a key is made of.
type NewKey struct {
	Roles []Role
	// Ledgers scopes the key; empty: every ledger.
	Ledgers     []string
	Description string
}

// validate checks every field against its bound, and normalises: roles in
// the order of Roles, an empty ledger list as nil.
//
// Errors: *FieldError naming roles, ledgers or description.
func (n NewKey) validate() (NewKey, error) {
	if len(n.Roles) == 0 {
		return n, &FieldError{"roles", "want at least one of writer, reader, auditor, admin"}
	}
	var roles []Role
	for _, r := range n.Roles {
		if !slices.Contains(Roles, r) {
			return n, &FieldError{"roles", fmt.Sprintf("unknown role %q: want writer, reader, auditor or admin", r)}
		}
		if slices.Contains(roles, r) {
			return n, &FieldError{"roles", fmt.Sprintf("role %q given twice", r)}
		}
		roles = append(roles, r)
	}
	slices.SortFunc(roles, func(a, b Role) int { return slices.Index(Roles, a) - slices.Index(Roles, b) })
	if len(n.Ledgers) > LedgersPerKeyMax {
		return n, &FieldError{"ledgers", fmt.Sprintf("%d ledgers, at most %d (none: every ledger)", len(n.Ledgers), LedgersPerKeyMax)}
	}
	var ledgers []string
	for _, l := range n.Ledgers {
		if !domain.ValidLedgerName(l) {
			return n, &FieldError{"ledgers", fmt.Sprintf("ledger %q must match [a-z0-9][a-z0-9-]{0,62}", l)}
		}
		if slices.Contains(ledgers, l) {
			return n, &FieldError{"ledgers", fmt.Sprintf("ledger %q given twice", l)}
		}
		ledgers = append(ledgers, l)
	}
	if len(n.Description) > DescriptionBytesMax {
		return n, &FieldError{"description", fmt.Sprintf("%d bytes, at most %d", len(n.Description), DescriptionBytesMax)}
	}
	if !utf8.ValidString(n.Description) || strings.ContainsFunc(n.Description, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return n, &FieldError{"description", "must be UTF-8 without control characters"}
	}
	return NewKey{Roles: roles, Ledgers: ledgers, Description: n.Description}, nil
}

// Generate makes a new key's text from random (crypto/rand.Reader when nil).
//
// Errors: random's.
func Generate(random io.Reader) (text string, err error) {
	if random == nil {
		random = rand.Reader
	}
	b := make([]byte, idBytes+secretBytes)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", fmt.Errorf("generate api key: %w", err)
	}
	secret := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[idBytes:]))
	return prefix + hex.EncodeToString(b[:idBytes]) + "_" + secret, nil
}

// Parse splits a key's text into its id and secret.
//
// Errors: ErrMalformed.
func Parse(text string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(text, prefix)
	if !ok {
		return "", "", fmt.Errorf("want prefix %q: %w", prefix, ErrMalformed)
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != 2*idBytes || !only(id, "0123456789abcdef") {
		return "", "", fmt.Errorf("want lk_<12 hex digits>_<secret>: %w", ErrMalformed)
	}
	if len(secret) < secretLenMin || len(secret) > secretLenMax || !only(secret, "abcdefghijklmnopqrstuvwxyz0123456789") {
		return "", "", fmt.Errorf("want a secret of %d to %d characters [a-z0-9]: %w", secretLenMin, secretLenMax, ErrMalformed)
	}
	return id, secret, nil
}

// ID returns the id of a key's text, for logs and messages; "" when malformed.
func ID(text string) string {
	id, _, err := Parse(text)
	if err != nil {
		return ""
	}
	return id
}

func only(s, alphabet string) bool {
	for i := range len(s) {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

func hashOf(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// Bearer is a key as gRPC per-call credentials: it sends
// "authorization: Bearer <key>" with every call. It also works without TLS
// (RequireTransportSecurity is false), for ledgerd on loopback in dev mode;
// over a network, use TLS.
type Bearer string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b Bearer) GetRequestMetadata(_ context.Context, _ ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (Bearer) RequireTransportSecurity() bool { return false }
