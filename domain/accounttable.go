package domain

import (
	"fmt"
	"hash/maphash"
	"iter"
	"math/bits"
)

// accountTable holds a ledger's accounts in chunks, with an open-addressing
// index of integers by id. A map of pointers to accounts was
// an object per account and two pointers per map entry, which the collector
// marked one by one at every cycle: at a million accounts that was a large
// part of ledgerd's CPU (docs/perf.md, "Session 15"). Chunks never move, so
// an *Account stays valid for as long as the account is in the table. They
// double from accountChunkMin to accountChunk: a ledger of a few accounts
// (and there may be thousands of them, each with its writer) holds a few
// kilobytes, not a chunk of a thousand.
type accountTable struct {
	seed   maphash.Seed
	chunks [][]Account
	// n is the accounts held, room what the chunks hold.
	n, room int
	// slots is the index, a power of two long: 0 is empty; else the high
	// 32 bits of the id's hash and, below, i+1 for the i-th account added.
	// A probe compares ids only when the hash bits match.
	slots []uint64
	// ids holds the ids of the first kept accounts (keepIDs): a probe
	// compares bytes next to other ids, not the strings the accounts were
	// added with. An account added and then removed (RemoveLast) never
	// gets there, so a rolled back batch leaves nothing behind.
	ids  idBuffer
	kept int
}

const (
	// accountChunkMin and accountChunk are the accounts of the first chunk
	// and of every chunk once they stop doubling; both powers of two.
	accountChunkMin = 16
	accountChunk    = 1024
	// accountDoublings is the chunks that double, accountDoubled the
	// accounts they hold together.
	accountDoublings = 7 // log2(accountChunk/accountChunkMin) + 1
	accountDoubled   = accountChunkMin * (1<<accountDoublings - 1)
	// accountSlotsMin is the index's size for a new table.
	accountSlotsMin = 64
	// accountNumberMask selects a slot's account number (i+1); the bits
	// above are the hash's.
	accountNumberMask = 1<<32 - 1
)

func newAccountTable(hint int) *accountTable {
	slots := accountSlotsMin
	for slots < 2*hint {
		slots *= 2
	}
	return &accountTable{seed: maphash.MakeSeed(), slots: make([]uint64, slots)}
}

// Len is the number of accounts.
func (t *accountTable) Len() int { return t.n }

// at is the i-th account added.
func (t *accountTable) at(i int) *Account {
	if i < accountDoubled {
		// Chunk k starts at accountChunkMin*(2^k-1).
		k := bits.Len(uint(i/accountChunkMin+1)) - 1
		return &t.chunks[k][i-accountChunkMin*(1<<k-1)]
	}
	i -= accountDoubled
	return &t.chunks[accountDoublings+i/accountChunk][i%accountChunk]
}

// find is the slot of id: its account's, or the empty one where it goes;
// tag is the hash bits its slot holds.
func (t *accountTable) find(id string) (slot int, tag uint64, found bool) {
	hash := maphash.String(t.seed, id)
	tag = hash &^ accountNumberMask
	mask := len(t.slots) - 1
	for i := int(hash) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return i, tag, false
		}
		if s&^accountNumberMask == tag && t.at(int(s&accountNumberMask)-1).ID == id {
			return i, tag, true
		}
	}
}

// Get is the account with id, nil when there is none.
func (t *accountTable) Get(id string) *Account {
	if i, _, ok := t.find(id); ok {
		return t.at(int(t.slots[i]&accountNumberMask) - 1)
	}
	return nil
}

// number is the account's number: i for the i-th account added.
func (t *accountTable) number(id string) (int, bool) {
	if i, _, ok := t.find(id); ok {
		return int(t.slots[i]&accountNumberMask) - 1, true
	}
	return 0, false
}

// Lookup is Get with a flag, as a map's index expression.
func (t *accountTable) Lookup(id string) (*Account, bool) {
	a := t.Get(id)
	return a, a != nil
}

// Add adds a copy of a and returns it, or nil when an account with its id
// is there already.
func (t *accountTable) Add(a Account) *Account {
	i, tag, ok := t.find(a.ID)
	if ok {
		return nil
	}
	// At most half full: probes stay short.
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
		i, tag, _ = t.find(a.ID)
	}
	if t.n >= accountNumberMask-1 {
		panic("domain: an account table holds at most 2^32-2 accounts")
	}
	if t.n == t.room {
		size := accountChunk
		if k := len(t.chunks); k < accountDoublings {
			size = accountChunkMin << k
		}
		t.chunks = append(t.chunks, make([]Account, size))
		t.room += size
	}
	p := t.at(t.n)
	*p = a
	t.n++
	t.slots[i] = tag | uint64(t.n)
	return p
}

// keepIDs copies the ids of the accounts added since the last keepIDs into
// t.ids, once they stay: an id copied and then rolled back would keep its
// bytes, and the buffer they share with the ids kept, for the table's life.
func (t *accountTable) keepIDs() {
	for ; t.kept < t.n; t.kept++ {
		a := t.at(t.kept)
		a.ID = t.ids.copy(a.ID)
	}
}

// RemoveLast removes the account added last, whose id is id: the undo of
// an Add, which a rollback runs in the reverse order of the adds.
func (t *accountTable) RemoveLast(id string) {
	i, _, ok := t.find(id)
	if !ok || int(t.slots[i]&accountNumberMask) != t.n {
		panic(fmt.Sprintf("domain: account %s removed but not the last added", id))
	}
	// Linear probing's deletion: move back every entry after the hole
	// that its probe reaches only through the hole.
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j] != 0; j = (j + 1) & mask {
		home := int(maphash.String(t.seed, t.at(int(t.slots[j]&accountNumberMask)-1).ID)) & mask
		// The entry at j stays when its home lies cyclically in (i, j].
		if i <= j && i < home && home <= j || j < i && (i < home || home <= j) {
			continue
		}
		t.slots[i] = t.slots[j]
		i = j
	}
	t.slots[i] = 0
	t.n--
	t.kept = min(t.kept, t.n) // a kept account is not rolled back; still, never past the end
	*t.at(t.n) = Account{}
}

// All yields every account in the order added.
func (t *accountTable) All() iter.Seq[*Account] {
	return func(yield func(*Account) bool) {
		for i := range t.n {
			if !yield(t.at(i)) {
				return
			}
		}
	}
}

// grow doubles the index and places every account again.
func (t *accountTable) grow() {
	t.slots = make([]uint64, 2*len(t.slots))
	mask := len(t.slots) - 1
	for n := range t.n {
		hash := maphash.String(t.seed, t.at(n).ID)
		i := int(hash) & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = hash&^accountNumberMask | uint64(n+1)
	}
}
