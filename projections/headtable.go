package projections

import (
	"hash/maphash"

	"github.com/ledgerd/ledger/domain"
)

// headTable maps account names to their movement heads without a pointer per
// account: the names end to end in one byte arena, the heads in one slice,
// and an open-addressing index of integers. At a million accounts a map of
// pointers to heads was two million objects the collector marked at every
// cycle, about as many as the writer's own state; this is three slices
// without pointers, and the few asset codes. Heads are never removed: a ledger's cache is dropped
// whole.
type headTable struct {
	seed maphash.Seed
	// names holds every account's name; a head's name is
	// names[nameAt:nameAt+nameLen].
	names []byte
	heads []movementHead
	// slots is the index, a power of two long: 0 is empty; else the high 32
	// bits of the name's hash and, below, i+1 for heads[i]. A probe looks
	// at a head only when the hash bits match: a look-up then touches one
	// head, not every head its probe passes.
	slots []uint64
	// assets are the asset codes heads name by index (a ledger has few).
	assets  []string
	assetOf map[string]uint32
}

// headSlotsMin is the index's size for a new table.
const headSlotsMin = 64

func newHeadTable() *headTable {
	return &headTable{seed: maphash.MakeSeed(), slots: make([]uint64, headSlotsMin), assetOf: map[string]uint32{}}
}

// Len is the number of accounts held.
func (t *headTable) Len() int { return len(t.heads) }

// find is the slot of name: its head's, or the empty one where it goes; tag
// is the hash bits its slot holds.
func (t *headTable) find(name string) (slot int, tag uint64, found bool) {
	hash := maphash.String(t.seed, name)
	tag = hash &^ headIndexMask
	mask := len(t.slots) - 1
	for i := int(hash) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return i, tag, false
		}
		if s&^headIndexMask != tag {
			continue
		}
		h := &t.heads[s&headIndexMask-1]
		if string(t.names[h.nameAt:h.nameAt+uint64(h.nameLen)]) == name {
			return i, tag, true
		}
	}
}

// headIndexMask selects a slot's head number (i+1); the bits above are the
// hash's.
const headIndexMask = 1<<32 - 1

// Get is name's head, nil when the table has none. The pointer is valid
// until the next Add.
func (t *headTable) Get(name string) *movementHead {
	if i, _, ok := t.find(name); ok {
		return &t.heads[t.slots[i]&headIndexMask-1]
	}
	return nil
}

// Add adds name with asset and returns its head, zero but for the name and
// asset, and true; or, when name is there already, its head and false. The
// pointer is valid until the next Add.
func (t *headTable) Add(name, asset string) (*movementHead, bool) {
	i, tag, ok := t.find(name)
	if ok {
		return &t.heads[t.slots[i]&headIndexMask-1], false
	}
	// At most half full: probes stay short.
	if 2*(len(t.heads)+1) > len(t.slots) {
		t.grow()
		i, tag, _ = t.find(name)
	}
	a, ok := t.assetOf[asset]
	if !ok {
		a = uint32(len(t.assets))
		t.assets = append(t.assets, asset)
		t.assetOf[asset] = a
	}
	if len(t.heads) >= headIndexMask-1 {
		panic("projections: a head table holds at most 2^32-2 accounts")
	}
	t.heads = append(t.heads, movementHead{nameAt: uint64(len(t.names)), nameLen: uint32(len(name)), assetIndex: a})
	t.names = append(t.names, name...)
	t.slots[i] = tag | uint64(len(t.heads))
	return &t.heads[len(t.heads)-1], true
}

// Asset is h's asset code.
func (t *headTable) Asset(h *movementHead) string { return t.assets[h.assetIndex] }

// grow doubles the index and places every head again.
func (t *headTable) grow() {
	t.slots = make([]uint64, 2*len(t.slots))
	mask := len(t.slots) - 1
	for n := range t.heads {
		h := &t.heads[n]
		hash := maphash.Bytes(t.seed, t.names[h.nameAt:h.nameAt+uint64(h.nameLen)])
		i := int(hash) & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = hash&^headIndexMask | uint64(n+1)
	}
}

// movementHead is an account's running totals across the batch: from its
// last line before the batch (its movement_heads row only says what never
// changes), or zero for an account the batch opens (opened). It holds no
// pointer (headTable).
type movementHead struct {
	dp, cp, dq, cq domain.Units
	// position is the account's last movement (its opening before any);
	// seq the next line number at that position.
	position, opened uint64
	nameAt           uint64
	nameLen          uint32
	seq              int32
	assetIndex       uint32
	scale            uint8
	normal           domain.Side
}
