package apikeys

import (
	"errors"
	"time"
)

// Bounds of the negative cache: keys that failed verification are answered
// from memory for a while, so that a client repeating a bad key (a revoked
// one in a config file, a scanner replaying one) costs no query each time.
const (
	// NegativeMax bounds the entries of the negative cache. When it is full,
	// expired entries are dropped, then an arbitrary one: the cache saves
	// queries, it never decides alone (an evicted key is looked up again).
	NegativeMax = 4096
	// NegativeTTLDefault is how long a failure is remembered: a key made
	// afterwards with the very same text (only a bootstrap -admin-key given
	// to another ledgerd can be) works here within this.
	NegativeTTLDefault = 5 * time.Second
)

// ErrNotCached means Cached cannot answer from memory: the key would need a
// look-up.
var ErrNotCached = errors.New("api key not in the cache")

// negativeKey is a failed key's text, by id and secret hash: a wrong secret
// for a real id is remembered as that pair, so it never shadows the real
// key.
type negativeKey struct {
	id   string
	hash [32]byte
}

type negativeEntry struct {
	err     error // ErrUnknown or ErrRevoked, wrapped
	expires time.Time
}

// rememberFailure caches err for the key (id, hash). s.mu must be held.
func (s *Store) rememberFailure(id string, hash [32]byte, err error, now time.Time) {
	if len(s.negative) >= NegativeMax {
		for k, e := range s.negative {
			if !now.Before(e.expires) {
				delete(s.negative, k)
			}
		}
	}
	if len(s.negative) >= NegativeMax {
		for k := range s.negative { // an arbitrary one
			delete(s.negative, k)
			break
		}
	}
	s.negative[negativeKey{id, hash}] = negativeEntry{err: err, expires: now.Add(s.opts.NegativeTTL)}
}

// knownFailure returns the cached failure of (id, hash), or nil. s.mu must
// be held (read).
func (s *Store) knownFailure(id string, hash [32]byte, now time.Time) error {
	e, ok := s.negative[negativeKey{id, hash}]
	if !ok || !now.Before(e.expires) {
		return nil
	}
	return e.err
}

// forgetFailures drops every cached failure of id: a key with that id was
// just made here.
func (s *Store) forgetFailures(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.negative {
		if k.id == id {
			delete(s.negative, k)
		}
	}
}

// Active says whether the key id is in memory and fresh: verified within
// StaleMax and not revoked since (Revoke and the refresh drop a revoked key
// at once). A caller that verified the key's secret moments ago asks this
// instead of hashing it again; false means verify it again.
func (s *Store) Active(id string) bool {
	now := s.opts.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.cache[id]
	return ok && now.Sub(c.checked) <= s.opts.StaleMax
}

// Cached answers Verify from memory only: the active key whose text this
// is, or a failure remembered for it.
//
// Errors: ErrMalformed; ErrUnknown or ErrRevoked when remembered (or the
// secret differs from a cached key's); ErrNotCached when only a look-up
// could tell.
func (s *Store) Cached(text string) (Key, error) {
	id, secret, err := Parse(text)
	if err != nil {
		return Key{}, err
	}
	hash := hashOf(secret)
	now := s.opts.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.knownFailure(id, hash, now); err != nil {
		return Key{}, err
	}
	c, ok := s.cache[id]
	if !ok || now.Sub(c.checked) > s.opts.StaleMax {
		return Key{}, ErrNotCached
	}
	if !equalHash(hash, c.hash) {
		return Key{}, ErrNotCached // a look-up tells: the cache may be of another secret
	}
	return c.key, nil
}
