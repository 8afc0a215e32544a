package domain

import (
	"container/heap"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"time"
)

// A snapshot is the whole State in a compact binary encoding, so that a writer
// starts from it and folds only the log's tail. Version 5, all integers
// varints unless said otherwise, strings a length and their bytes:
//
//	magic "LDGRSNAP" (8 bytes), format version
//	position; policy (two signed durations, ns); index key (2 × 8 bytes LE)
//	assets:   count, then code, scale (1 byte), position
//	accounts: count, then id, asset (index into assets), normal side (1 byte),
//	          flags (1 byte: min, max, closed, amended, freezes), min and max
//	          when set, metadata (count+1, 0 for none, then key, value),
//	          position, closed at, frozen at and unfrozen at when flagged,
//	          debits and credits posted, debits and credits pending
//	holds:    count, then id, position, expiry (0, or 1 and seconds, nanos,
//	          heap number), postings (count, then debit, credit, asset index,
//	          amount, scale)
//	expiry heap counter
//	reversed: count, then transfer position, count, amounts
//	index:    count, then in ascending hash order the hash's top 40 bits
//	          less the previous entry's (less 0 for the first), and
//	          position<<2 | status
//	collided: count, then id, position<<2 | status
//	period:   0 while none is closed, else 1, the last closed end (seconds,
//	          nanos since the Unix epoch) and its position
//	categories: count, then name, parent ("" for a root), patterns (count,
//	          then each), description, position
//	monitoring: the alert freeze mark (position, id, position of its
//	          freeze); the alert raise mark likewise (format 7 on); rules: count, then the RuleDefined JSON and its
//	          position; velocity rings: count, then account, and per side
//	          (debits, credits) count, then time (Unix ns), count, sum;
//	          format 7 on, the rules' hold accounts: count, then rule id,
//	          count, then version and account
//	SHA-256 of every byte before it (32 bytes)
//
// Units are two varints: the signed high half and the unsigned low half, so
// that a small balance costs two or three bytes. The expiry heap is not
// stored: it is rebuilt from the open holds, each keeping its number, so due
// holds come out in the same order. An index entry's hash, a difference
// from the last, takes about three bytes at ten million ids, not eight.

// SnapshotFormatVersion is the version of the encoding MarshalSnapshot
// writes. Versions 1 to 4 are refused (SnapshotFormatVersionMin): their
// index holds 64-bit hashes, and two alike in the top 40 bits, all the index
// keeps now, would be one entry for two ids it does not know. A writer that
// finds only those folds its log, once, and writes the current version from
// then on. Version 6 adds the velocity rings' horizons; 5 reads without them.
// Version 7 adds the alert raise mark; 5 and 6 read as none raised, which
// is what their builds did (the alerter raises none before this one).
const SnapshotFormatVersion = 7

// SnapshotFormatVersionMin is the oldest version UnmarshalSnapshot reads.
const SnapshotFormatVersionMin = 5

const (
	snapshotMagic = "LDGRSNAP"
	// snapshotChunk is how many bytes are buffered between writes (and read
	// at once): large enough that the calls cost nothing next to the map
	// work, small enough to stay in cache.
	snapshotChunk = 1 << 20
	// snapshotStringMax and snapshotListMax bound a string, and the
	// postings or metadata of one item, far above anything the domain
	// accepts: they only keep a corrupt length from allocating much before
	// the checksum, at the end, refuses it.
	snapshotStringMax = 1 << 16
	snapshotListMax   = 1 << 12
	// snapshotHintMax bounds how far a map is sized ahead from a count not
	// yet covered by the checksum; beyond it, maps grow as entries arrive.
	snapshotHintMax = 1 << 20
)

var (
	// ErrSnapshotCorrupt means a snapshot fails its checksum or does not
	// decode: it must be ignored.
	ErrSnapshotCorrupt = errors.New("snapshot corrupt")
	// ErrSnapshotVersion means a snapshot has a format this build cannot read.
	ErrSnapshotVersion = errors.New("snapshot format not supported")
)

// MarshalSnapshot writes the whole state to w (see the format above); the
// encoding ends with a SHA-256 of the rest. It must not run while the state
// records an atomic batch (Begin).
//
// Errors: w's error; a state that is recording.
func (s *State) MarshalSnapshot(w io.Writer) error {
	return s.marshalSnapshot(w, SnapshotFormatVersion)
}

// marshalSnapshot writes format version: the current one, or 6 for the
// tests that read what the build before wrote.
func (s *State) marshalSnapshot(w io.Writer, version uint64) error {
	if s.recording {
		return errors.New("snapshot of a state in the middle of an atomic batch")
	}
	if s.foldOnly() {
		return errors.New("snapshot of a fold-only state: it has no id index")
	}
	e := &snapWriter{w: w, h: sha256.New(), buf: make([]byte, 0, snapshotChunk+snapshotChunk/4), version: version}
	e.buf = append(e.buf, snapshotMagic...)
	e.uvarint(version)
	e.uvarint(s.position)
	e.varint(int64(s.policy.EffectivePastMax))
	e.varint(int64(s.policy.EffectiveFutureMax))
	e.u64(s.key[0])
	e.u64(s.key[1])

	assetIndex := make(map[string]uint64, len(s.assets))
	e.uvarint(uint64(len(s.assets)))
	for code, a := range s.assets {
		assetIndex[code] = uint64(len(assetIndex))
		e.str(a.Code)
		e.buf = append(e.buf, a.Scale)
		e.uvarint(a.Position)
	}
	e.uvarint(uint64(s.accounts.Len()))
	for a := range s.accounts.All() {
		e.account(a, assetIndex)
		e.flushFull()
	}
	e.uvarint(uint64(len(s.holds)))
	for _, h := range s.holds {
		e.hold(h, assetIndex)
		e.flushFull()
	}
	e.uvarint(s.expirySeq)
	e.uvarint(uint64(len(s.reversed)))
	for pos, done := range s.reversed {
		e.uvarint(pos)
		e.uvarint(uint64(len(done)))
		for _, u := range done {
			e.units(u)
		}
		e.flushFull()
	}
	e.uvarint(uint64(s.ids.Len()))
	var last uint64
	s.ids.each(func(h, v uint64) bool {
		e.uvarint((h - last) >> (64 - idHashBits))
		last = h
		e.uvarint(packIndexValue(v))
		e.flushFull()
		return e.err == nil
	})
	e.uvarint(uint64(len(s.collided)))
	for id, v := range s.collided {
		e.str(id)
		e.uvarint(packIndexValue(v))
	}
	e.timeAnd(s.periodEnd, s.periodPos)
	e.uvarint(uint64(len(s.categories)))
	for _, c := range s.categories {
		e.category(c)
		e.flushFull()
	}
	e.monitoring(s)
	e.flush()
	if e.err != nil {
		return fmt.Errorf("write snapshot: %w", e.err)
	}
	if _, err := w.Write(e.h.Sum(nil)); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

const (
	flagMin = 1 << iota
	flagMax
	flagClosed
	flagAmended
	// flagFreezes: the account was frozen once; its FrozenAt and
	// UnfrozenAt follow ClosedAt.
	flagFreezes
)

func (e *snapWriter) account(a *Account, assetIndex map[string]uint64) {
	e.str(a.ID)
	e.uvarint(assetIndex[a.Asset])
	var flags byte
	t := a.readTerms()
	if t.min != nil {
		flags |= flagMin
	}
	if t.max != nil {
		flags |= flagMax
	}
	if a.Closed {
		flags |= flagClosed
	}
	if a.Amended {
		flags |= flagAmended
	}
	if t.frozenAt != 0 || t.unfrozenAt != 0 {
		flags |= flagFreezes
	}
	e.buf = append(e.buf, byte(a.Normal), flags)
	if t.min != nil {
		e.units(*t.min)
	}
	if t.max != nil {
		e.units(*t.max)
	}
	if t.metadata == nil {
		e.uvarint(0)
	} else {
		e.uvarint(uint64(len(t.metadata)) + 1)
		for k, v := range t.metadata {
			e.str(k)
			e.str(v)
		}
	}
	e.uvarint(a.Position)
	e.uvarint(t.closedAt)
	if flags&flagFreezes != 0 {
		e.uvarint(t.frozenAt)
		e.uvarint(t.unfrozenAt)
	}
	e.units(a.DebitsPosted)
	e.units(a.CreditsPosted)
	e.units(a.DebitsPending)
	e.units(a.CreditsPending)
}

func (e *snapWriter) category(c *Category) {
	e.str(c.Name)
	e.str(c.Parent)
	e.uvarint(uint64(len(c.Patterns)))
	for _, p := range c.Patterns {
		e.str(p)
	}
	e.str(c.Description)
	e.uvarint(c.Position)
}

func (e *snapWriter) hold(h *Hold, assetIndex map[string]uint64) {
	e.str(h.ID)
	e.uvarint(h.Position)
	e.timeAnd(h.ExpiresAt, h.expirySeq)
	e.uvarint(uint64(len(h.Postings)))
	for _, p := range h.Postings {
		e.str(p.Debit)
		e.str(p.Credit)
		e.uvarint(assetIndex[p.Asset])
		e.units(p.Amount.Units)
		e.buf = append(e.buf, p.Amount.Scale)
	}
}

// packIndexValue moves an index entry's status (top byte, 0..3) next to its
// position, so that the usual entry is a 4-byte varint, not a 9-byte one.
func packIndexValue(v uint64) uint64 { return (v&posMask)<<2 | v>>56 }

// UnmarshalSnapshot reads a state written by MarshalSnapshot. Nothing is
// returned unless the checksum matches and every part decodes; the expiry
// heap is rebuilt. The policy is the snapshot's: a writer sets its own. A
// reader that tells its length (bytes.Reader does) lets the id index be sized
// at once, bounded by what is left to read.
//
// Errors: ErrSnapshotVersion (a format before SnapshotFormatVersionMin or
// after SnapshotFormatVersion); ErrSnapshotCorrupt (wrapping what is wrong,
// r's error included).
func UnmarshalSnapshot(r io.Reader) (*State, error) {
	d := &snapReader{r: r, h: sha256.New(), buf: make([]byte, snapshotChunk), size: -1}
	if sized, ok := r.(interface{ Len() int }); ok {
		d.size = int64(sized.Len())
	}
	if magic := d.bytes(len(snapshotMagic)); d.err == nil && string(magic) != snapshotMagic {
		return nil, fmt.Errorf("%w: not a snapshot", ErrSnapshotCorrupt)
	}
	version := d.uvarint()
	if d.err == nil && version >= 1 && version < SnapshotFormatVersionMin {
		return nil, fmt.Errorf("snapshot format %d: its id index holds 64-bit hashes, this build's keeps %d bits (format %d on): %w",
			version, idHashBits, SnapshotFormatVersionMin, ErrSnapshotVersion)
	}
	if d.err == nil && (version < SnapshotFormatVersionMin || version > SnapshotFormatVersion) {
		return nil, fmt.Errorf("snapshot format %d, this build reads %d..%d: %w", version, SnapshotFormatVersionMin, SnapshotFormatVersion, ErrSnapshotVersion)
	}
	s := &State{position: d.uvarint()}
	s.policy = Policy{EffectivePastMax: time.Duration(d.varint()), EffectiveFutureMax: time.Duration(d.varint())}
	s.key = idKey{d.u64(), d.u64()}
	assets := d.assets(s)
	d.accounts(s, assets)
	d.holds(s, assets)
	s.expirySeq = d.uvarint()
	d.reversed(s)
	d.index(s)
	d.period(s)
	s.categories = map[string]*Category{}
	d.categories(s)
	s.monitor = newMonitorState()
	d.monitoring(s, version)
	if err := d.finish(); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	for _, h := range s.holds {
		if !h.ExpiresAt.IsZero() {
			s.expiries = append(s.expiries, expiry{at: h.ExpiresAt, id: h.ID, seq: h.expirySeq})
		}
	}
	heap.Init(&s.expiries)
	return s, nil
}

// snapshotHint is a map's size hint from a count read, bounded.
func snapshotHint(n uint64) int { return int(min(n, snapshotHintMax)) }

func (d *snapReader) assets(s *State) []Asset {
	n := d.uvarint()
	s.assets = make(map[string]Asset, snapshotHint(n))
	var list []Asset
	for i := uint64(0); i < n && d.err == nil; i++ {
		a := Asset{Code: d.str(), Scale: d.byte1(), Position: d.uvarint()}
		if a.Scale > ScaleMax {
			d.fail("asset %s scale %d", a.Code, a.Scale)
		}
		s.assets[a.Code] = a
		list = append(list, a)
	}
	return list
}

func (d *snapReader) asset(assets []Asset) Asset {
	i := d.uvarint()
	if i >= uint64(len(assets)) {
		d.fail("asset %d of %d", i, len(assets))
		return Asset{}
	}
	return assets[i]
}

func (d *snapReader) accounts(s *State, assets []Asset) {
	n := d.uvarint()
	s.accounts = newAccountTable(snapshotHint(n))
	for i := uint64(0); i < n && d.err == nil; i++ {
		a := &Account{ID: d.str()}
		var t accountTerms
		asset := d.asset(assets)
		a.Asset, a.Scale = asset.Code, asset.Scale
		a.Normal = Side(d.byte1())
		flags := d.byte1()
		if a.Normal != SideCredit && a.Normal != SideDebit {
			d.fail("account %s normal side %d", a.ID, a.Normal)
		}
		if flags&flagMin != 0 {
			u := d.units()
			t.min = &u
		}
		if flags&flagMax != 0 {
			u := d.units()
			t.max = &u
		}
		a.Closed, a.Amended = flags&flagClosed != 0, flags&flagAmended != 0
		if m := d.uvarint(); m > 0 {
			if m-1 > snapshotListMax {
				d.fail("account %s has %d metadata keys", a.ID, m-1)
			}
			t.metadata = make(map[string]string, min(m-1, snapshotListMax))
			for j := uint64(1); j < m && d.err == nil; j++ {
				k := d.str()
				t.metadata[k] = d.str()
			}
		}
		a.Position, t.closedAt = d.uvarint(), d.uvarint()
		if flags&flagFreezes != 0 {
			t.frozenAt, t.unfrozenAt = d.uvarint(), d.uvarint()
		}
		a.setTerms(t)
		a.DebitsPosted, a.CreditsPosted, a.DebitsPending, a.CreditsPending = d.units(), d.units(), d.units(), d.units()
		if s.accounts.Add(*a) == nil {
			d.fail("account %s twice", a.ID)
		}
	}
	s.accounts.keepIDs()
}

func (d *snapReader) holds(s *State, assets []Asset) {
	n := d.uvarint()
	if n > HoldsMax {
		d.fail("%d holds", n)
	}
	s.holds = make(map[string]*Hold, snapshotHint(n))
	for i := uint64(0); i < n && d.err == nil; i++ {
		h := &Hold{ID: d.str(), Position: d.uvarint()}
		h.ExpiresAt, h.expirySeq = d.timeAnd("hold " + h.ID + " expiry")
		m := d.uvarint()
		if m > snapshotListMax {
			d.fail("hold %s has %d postings", h.ID, m)
			break
		}
		h.Postings = make([]Posting, 0, m)
		for j := uint64(0); j < m && d.err == nil; j++ {
			p := Posting{Debit: d.str(), Credit: d.str(), Asset: d.asset(assets).Code}
			p.Amount = Amount{Units: d.units(), Scale: d.byte1()}
			h.Postings = append(h.Postings, p)
		}
		s.holds[h.ID] = h
	}
}

func (d *snapReader) reversed(s *State) {
	n := d.uvarint()
	s.reversed = make(map[uint64][]Units, snapshotHint(n))
	for i := uint64(0); i < n && d.err == nil; i++ {
		pos, m := d.uvarint(), d.uvarint()
		if m > snapshotListMax {
			d.fail("reversal of %d has %d postings", pos, m)
			break
		}
		done := make([]Units, m)
		for j := range done {
			done[j] = d.units()
		}
		s.reversed[pos] = done
	}
}

func (d *snapReader) index(s *State) {
	n := d.uvarint()
	size := snapshotHint(n)
	if left := d.left(); left >= 0 {
		// An entry takes 2 bytes at least, a real one 5 or more: a quarter of
		// what is left bounds what a corrupt count makes the loader allocate.
		size = int(min(n, uint64(left)/4))
	}
	l := newIDIndexLoader(size)
	var h uint64
	for i := uint64(0); i < n && d.err == nil; i++ {
		step := d.uvarint()
		if step > (idHashMask-h)>>(64-idHashBits) {
			d.fail("index entry %d: its hash is beyond %d bits", i, idHashBits)
			return
		}
		h += step << (64 - idHashBits)
		// Each hash is above the last (a step of 0 after the first is a
		// hash twice): the loader refuses any other.
		if v := d.indexValue(); d.err == nil && !l.add(h, v) {
			d.fail("index entry %d: its hash is the previous one's", i)
			return
		}
	}
	if d.err != nil {
		return
	}
	s.ids = l.done()
	n = d.uvarint()
	s.collided = make(map[string]uint64, snapshotHint(n))
	for i := uint64(0); i < n && d.err == nil; i++ {
		id := d.str()
		s.collided[id] = d.indexValue()
	}
}

func (d *snapReader) period(s *State) {
	s.periodEnd, s.periodPos = d.timeAnd("period end")
	if !s.periodEnd.IsZero() && (s.periodPos == 0 || s.periodPos > s.position) {
		d.fail("period closed at %d, state at %d", s.periodPos, s.position)
	}
}

func (d *snapReader) categories(s *State) {
	n := d.uvarint()
	if n > CategoriesMax {
		d.fail("%d categories", n)
		return
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		c := &Category{Name: d.str(), Parent: d.str()}
		m := d.uvarint()
		if m > CategoryPatternsMax {
			d.fail("category %s has %d patterns", c.Name, m)
			return
		}
		for j := uint64(0); j < m && d.err == nil; j++ {
			c.Patterns = append(c.Patterns, d.str())
		}
		c.Description, c.Position = d.str(), d.uvarint()
		s.categories[c.Name] = c
	}
}

// timeAnd reads what snapWriter.timeAnd wrote: the zero time and 0 for a
// flag 0.
func (d *snapReader) timeAnd(what string) (time.Time, uint64) {
	switch d.uvarint() {
	case 0:
		return time.Time{}, 0
	case 1:
		sec, nsec := d.varint(), d.uvarint()
		if nsec >= uint64(time.Second) {
			d.fail("%s nanoseconds %d", what, nsec)
		}
		return time.Unix(sec, int64(nsec)).UTC(), d.uvarint()
	}
	d.fail("%s flag", what)
	return time.Time{}, 0
}

func (d *snapReader) indexValue() uint64 {
	v := d.uvarint()
	if pos := v >> 2; pos > posMask {
		d.fail("index position %d", pos)
	}
	return v>>2 | (v&3)<<56
}

// check asserts what a snapshot that passed its checksum must hold anyway:
// a mismatch is a bug in the encoder, refused rather than carried.
func (s *State) check() error {
	for a := range s.accounts.All() {
		if !sideInRange(a) {
			return fmt.Errorf("%w: account %s out of range", ErrSnapshotCorrupt, a.ID)
		}
	}
	if len(s.holds) > HoldsMax {
		return fmt.Errorf("%w: %d holds", ErrSnapshotCorrupt, len(s.holds))
	}
	if err := s.checkCategories(); err != nil {
		return fmt.Errorf("%w: %w", ErrSnapshotCorrupt, err)
	}
	for id, h := range s.holds {
		if _, status, _, ok := s.lookupID(id); !ok || status != idPending || h.Position > s.position {
			return fmt.Errorf("%w: hold %s is not indexed as open", ErrSnapshotCorrupt, id)
		}
		if !h.ExpiresAt.IsZero() && (h.expirySeq == 0 || h.expirySeq > s.expirySeq) {
			return fmt.Errorf("%w: hold %s expiry number %d of %d", ErrSnapshotCorrupt, id, h.expirySeq, s.expirySeq)
		}
		for _, p := range h.Postings {
			if _, ok := s.accounts.Lookup(p.Debit); !ok {
				return fmt.Errorf("%w: hold %s names missing account %s", ErrSnapshotCorrupt, id, p.Debit)
			}
			if _, ok := s.accounts.Lookup(p.Credit); !ok {
				return fmt.Errorf("%w: hold %s names missing account %s", ErrSnapshotCorrupt, id, p.Credit)
			}
		}
	}
	return nil
}

// snapWriter buffers the encoding, and hashes what it writes.
type snapWriter struct {
	w   io.Writer
	h   hash.Hash
	buf []byte
	err error
	// version is the format written.
	version uint64
}

func (e *snapWriter) flushFull() {
	if len(e.buf) >= snapshotChunk {
		e.flush()
	}
}

func (e *snapWriter) flush() {
	if e.err == nil && len(e.buf) > 0 {
		e.h.Write(e.buf)
		_, e.err = e.w.Write(e.buf)
	}
	e.buf = e.buf[:0]
}

// timeAnd writes an optional time and a number that goes with it: 0 for
// the zero time, else 1, seconds, nanoseconds and n.
func (e *snapWriter) timeAnd(t time.Time, n uint64) {
	if t.IsZero() {
		e.uvarint(0)
		return
	}
	e.uvarint(1)
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
	e.uvarint(n)
}

func (e *snapWriter) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *snapWriter) varint(v int64)   { e.buf = binary.AppendVarint(e.buf, v) }
func (e *snapWriter) u64(v uint64)     { e.buf = binary.LittleEndian.AppendUint64(e.buf, v) }

func (e *snapWriter) str(s string) {
	e.uvarint(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *snapWriter) units(u Units) {
	e.varint(u.hi)
	e.uvarint(u.lo)
}

// snapReader decodes from a window of buf, hashing each byte once it is
// consumed; errors stick, and every read after one returns zero.
type snapReader struct {
	r        io.Reader
	h        hash.Hash
	buf      []byte
	pos, end int   // buf[pos:end] is read and not yet consumed
	hashed   int   // buf[:hashed] is in h
	size     int64 // of the whole encoding; -1: unknown
	read     int64 // bytes read from r
	eof      bool
	err      error
}

func (d *snapReader) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrSnapshotCorrupt, fmt.Sprintf(format, args...))
	}
}

// left returns how many bytes are left to decode, or -1 when unknown.
func (d *snapReader) left() int64 {
	if d.size < 0 {
		return -1
	}
	return max(d.size-d.read+int64(d.end-d.pos), 0)
}

// need makes n bytes available at pos, reading more as needed; it reports
// false, without failing, when the data ends first.
func (d *snapReader) need(n int) bool {
	if d.end-d.pos >= n {
		return true
	}
	if d.err != nil {
		return false
	}
	d.h.Write(d.buf[d.hashed:d.pos])
	d.end = copy(d.buf, d.buf[d.pos:d.end])
	d.pos, d.hashed = 0, 0
	for d.end < n && !d.eof {
		m, err := d.r.Read(d.buf[d.end:])
		d.end += m
		d.read += int64(m)
		if errors.Is(err, io.EOF) {
			d.eof = true
		} else if err != nil {
			d.err = fmt.Errorf("%w: read: %w", ErrSnapshotCorrupt, err)
			return false
		}
	}
	return d.end >= n
}

func (d *snapReader) bytes(n int) []byte {
	if !d.need(n) {
		d.fail("truncated")
		return nil
	}
	b := d.buf[d.pos : d.pos+n]
	d.pos += n
	return b
}

func (d *snapReader) byte1() byte {
	if b := d.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *snapReader) u64() uint64 {
	if b := d.bytes(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (d *snapReader) uvarint() uint64 {
	d.need(binary.MaxVarintLen64) // or whatever is left
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.pos:d.end])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.pos += n
	return v
}

func (d *snapReader) varint() int64 {
	d.need(binary.MaxVarintLen64)
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf[d.pos:d.end])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.pos += n
	return v
}

func (d *snapReader) str() string {
	n := d.uvarint()
	if n > snapshotStringMax {
		d.fail("string of %d bytes", n)
		return ""
	}
	return string(d.bytes(int(n)))
}

func (d *snapReader) units() Units { return Units{hi: d.varint(), lo: d.uvarint()} }

// finish checks the checksum that follows the body, and that nothing follows it.
func (d *snapReader) finish() error {
	if d.err != nil {
		return d.err
	}
	d.h.Write(d.buf[d.hashed:d.pos])
	d.hashed = d.pos
	sum := d.h.Sum(nil)
	got := d.bytes(sha256.Size)
	if d.err != nil {
		return fmt.Errorf("%w: no checksum", ErrSnapshotCorrupt)
	}
	if string(got) != string(sum) {
		return fmt.Errorf("%w: checksum mismatch", ErrSnapshotCorrupt)
	}
	d.hashed = d.pos
	if d.need(1) {
		return fmt.Errorf("%w: data after the checksum", ErrSnapshotCorrupt)
	}
	return d.err
}

// idKey keys the id index's hash: SipHash-1-3 under a random 128-bit key.
// Unlike a hash/maphash seed, the key can be written to a snapshot, so a
// snapshot's index (hashes, not ids) stays valid in another process; SipHash
// keeps the property maphash gave: without the key, nobody can craft ids that
// collide. 1-3 rounds (as Rust's HashMap): about 15 ns for a short id, next to
// a map probe's cache misses.
type idKey [2]uint64

func newIDKey() idKey {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return idKey{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])}
}

// hash returns SipHash-1-3 of id under k.
func (k idKey) hash(id string) uint64 {
	return siphash(k, id, 1, 3)
}

// siphash is SipHash-c-d (Aumasson and Bernstein) of s under k.
func siphash(k idKey, s string, c, d int) uint64 {
	v0 := k[0] ^ 0x736f6d6570736575
	v1 := k[1] ^ 0x646f72616e646f6d
	v2 := k[0] ^ 0x6c7967656e657261
	v3 := k[1] ^ 0x7465646279746573
	n, i := len(s), 0
	for ; i+8 <= n; i += 8 {
		m := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		v3 ^= m
		for range c {
			v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		}
		v0 ^= m
	}
	m := uint64(n) << 56
	for j := n - 1; j >= i; j-- {
		m |= uint64(s[j]) << (8 * uint(j-i))
	}
	v3 ^= m
	for range c {
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	}
	v0 ^= m
	v2 ^= 0xff
	for range d {
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	}
	return v0 ^ v1 ^ v2 ^ v3
}

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13) ^ v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16) ^ v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21) ^ v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17) ^ v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}
