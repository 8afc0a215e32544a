package domain

import (
	"fmt"
	"io"
	"maps"
	"reflect"
)

// Test-only access to unexported fields, so that the external test package can
// build Units across the full 128-bit range and check a Decimal's parts.

// UnitsFromHiLo returns the Units with the given two's-complement halves.
func UnitsFromHiLo(hi int64, lo uint64) Units { return Units{hi: hi, lo: lo} }

// HiLo returns u's two's-complement halves.
func (u Units) HiLo() (hi int64, lo uint64) { return u.hi, u.lo }

// Parts returns d's coefficient and count of fractional digits.
func (d Decimal) Parts() (coef Units, frac uint8) { return d.coef, d.frac }

// CollideTransferID makes id's hash point at the transfer at pos, as if id
// and that transfer's id had the same hash: a collision, forced.
func CollideTransferID(s *State, id string, pos uint64) {
	s.ids.set(s.key.hash(id), pos)
}

// SetIDKey gives s, which must not have indexed an id yet, the key (k0, k1)
// of its id index's hash: a test can then use ids known to collide.
func SetIDKey(s *State, k0, k1 uint64) {
	if s.TransferCount() != 0 {
		panic("SetIDKey on a state that indexed ids")
	}
	s.key = idKey{k0, k1}
}

// IDHash returns id's hash under s's key.
func IDHash(s *State, id string) uint64 { return s.key.hash(id) }

// IDHashBits is how many top bits of a hash the id index keeps.
const IDHashBits = idHashBits

// IDExact reports whether s holds id by itself (State.collided), not by its
// hash.
func IDExact(s *State, id string) bool {
	_, _, exact, ok := s.lookupID(id)
	return ok && exact
}

// SipHash returns SipHash-c-d of s under the key (k0, k1): the index's hash,
// checked against the published test vectors.
func SipHash(k0, k1 uint64, s string, c, d int) uint64 { return siphash(idKey{k0, k1}, s, c, d) }

// CategoryChildrenAgree fails unless s's children index, when built, holds
// exactly the parent links of s's categories.
func CategoryChildrenAgree(s *State) error {
	if s.categoryChildren == nil {
		return nil
	}
	n := 0
	for parent, kids := range s.categoryChildren {
		for k := range kids {
			n++
			if c := s.categories[k]; c == nil || c.Parent != parent {
				return fmt.Errorf("index holds %q under %q; the category is %+v", k, parent, c)
			}
		}
	}
	if n != len(s.categories) {
		return fmt.Errorf("index holds %d categories, the state %d", n, len(s.categories))
	}
	return nil
}

// Equal reports whether x and y hold the same entries, however they are
// laid out (a snapshot's load merges what recent maps held): go-cmp uses
// it to compare states.
func (x *idIndex) Equal(y *idIndex) bool {
	if x == nil || y == nil {
		return x == y
	}
	if x.n != y.n {
		return false
	}
	equal := true
	x.each(func(h, v uint64) bool {
		w, ok := y.get(h)
		equal = ok && w == v
		return equal
	})
	return equal
}

// Equal reports whether x and y hold the same accounts, whatever their
// order and their index's layout, and whether each one's index finds every
// account it holds: go-cmp uses it to compare states.
func (x *accountTable) Equal(y *accountTable) bool {
	if x == nil || y == nil {
		return x == y
	}
	if x.Len() != y.Len() || !x.indexed() || !y.indexed() {
		return false
	}
	for a := range x.All() {
		if b := y.Get(a.ID); b == nil || !reflect.DeepEqual(*a, *b) {
			return false
		}
	}
	return true
}

// indexed reports whether t's index finds every account t holds.
func (t *accountTable) indexed() bool {
	for a := range t.All() {
		if t.Get(a.ID) != a {
			return false
		}
	}
	return true
}

// AccountCopy is a copy of a that shares nothing with it: its terms and
// their metadata copied too, so that a change made to a's in place shows.
func AccountCopy(a *Account) Account {
	c := *a
	if a.terms != nil {
		t := *a.terms
		t.metadata = maps.Clone(t.metadata)
		c.terms = &t
	}
	return c
}

// MarshalSnapshotAt writes s in an older format (6): what the build before
// wrote, for the tests of reading it.
func MarshalSnapshotAt(s *State, w io.Writer, version uint64) error {
	return s.marshalSnapshot(w, version)
}
