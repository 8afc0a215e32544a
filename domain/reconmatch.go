package domain

import (
	"fmt"
	"maps"
	"slices"
)

// The matcher of reconciliation: an account's external lines and ledger
// movements, matched by its rules (MatchingRule) as they arrive. It is the
// reconciliation projection's, which feeds it in position order and stores
// what it changed: the same log always makes the same matches, with the same
// ids.

// Limits of automatic matching. Every new item is tried against the items of
// the other side that are open (unmatched and not manual-only); these bound
// the work per item whatever the number of open items.
const (
	// reconSplitPoolMax bounds the candidates a SPLIT rule combines: at most
	// Σ C(12, k) for k = 2..8, about 3,700 sums per anchor.
	reconSplitPoolMax = 12
	// reconSplitAnchorsMax bounds the items a new item may complete a split for.
	reconSplitAnchorsMax = 12
	// reconWindowScanMax bounds the items a rule with a tolerance scans.
	reconWindowScanMax = 4096
)

// ReconSide is the side of a reconciled account an item is on.
type ReconSide int

// The two sides: the external statement's lines, the ledger's movements.
const (
	ReconLine ReconSide = iota
	ReconMovement
)

// ReconItem is an external line (side ReconLine) or a ledger movement of a
// reconciled account.
type ReconItem struct {
	Side               ReconSide
	Source, ExternalID string // lines
	TransferID         string // movements
	PostingIndex       int
	Position           uint64
	Amount             Units // signed: positive raises the balance
	Day                int32 // days since 1970-01-01
	Reference          string
	Description        string
	MatchID            string
	ManualOnly         bool
	// Changed says the matcher changed MatchID or ManualOnly since Settle.
	Changed bool
}

// Open says the item may still be matched automatically.
func (it *ReconItem) Open() bool { return it.MatchID == "" && !it.ManualOnly }

// reconBefore is the items' canonical order: by position, then posting (two
// postings of one transfer share a position).
func reconBefore(x, y *ReconItem) bool {
	if x.Position != y.Position {
		return x.Position < y.Position
	}
	return x.PostingIndex < y.PostingIndex
}

func cmpReconItems(x, y *ReconItem) int {
	switch {
	case reconBefore(x, y):
		return -1
	case reconBefore(y, x):
		return 1
	}
	return 0
}

// ReconKey names an item within an account: a line by source and external
// id (A, B), a movement by transfer id and posting (A, PostingIx).
type ReconKey struct {
	Side      ReconSide
	A, B      string
	PostingIx int
}

// Key is the item's key.
func (it *ReconItem) Key() ReconKey {
	if it.Side == ReconLine {
		return ReconKey{Side: ReconLine, A: it.Source, B: it.ExternalID}
	}
	return ReconKey{Side: ReconMovement, A: it.TransferID, PostingIx: it.PostingIndex}
}

// ReconMatch is a set of lines and movements matched together.
type ReconMatch struct {
	ID, Rule, Reason string
	Position         uint64
	Items            []*ReconItem
	Dissolved        bool
}

// reconOpenSet indexes one side's open items. Entries are removed lazily: a list
// may hold items matched since, which scans skip.
type reconOpenSet struct {
	byRef    map[string][]*ReconItem
	byAmount map[Units][]*ReconItem
	byDay    map[int32][]*ReconItem
}

func newReconOpenSet() *reconOpenSet {
	return &reconOpenSet{byRef: map[string][]*ReconItem{}, byAmount: map[Units][]*ReconItem{}, byDay: map[int32][]*ReconItem{}}
}

// add indexes a new item; items arrive in order, so every list stays sorted.
func (s *reconOpenSet) add(it *ReconItem) {
	if it.Reference != "" {
		s.byRef[it.Reference] = reconAppendLive(s.byRef[it.Reference], it)
	}
	s.byAmount[it.Amount] = reconAppendLive(s.byAmount[it.Amount], it)
	s.byDay[it.Day] = reconAppendLive(s.byDay[it.Day], it)
}

// reopen indexes an item open again (its match dissolved). Its entries from
// before may still be in the lists, dead until now: an item is listed once.
func (s *reconOpenSet) reopen(it *ReconItem) {
	if it.Reference != "" {
		s.byRef[it.Reference] = reconAppendOnce(s.byRef[it.Reference], it)
	}
	s.byAmount[it.Amount] = reconAppendOnce(s.byAmount[it.Amount], it)
	s.byDay[it.Day] = reconAppendOnce(s.byDay[it.Day], it)
}

func reconAppendOnce(list []*ReconItem, it *ReconItem) []*ReconItem {
	if slices.Contains(list, it) {
		return list
	}
	return reconAppendLive(list, it)
}

// reconAppendLive appends it, dropping the dead entries first when they are many,
// and keeps position order (an item reopened by a dissolved match is older
// than the newest entries).
func reconAppendLive(list []*ReconItem, it *ReconItem) []*ReconItem {
	if len(list) >= 8 && len(list)&(len(list)-1) == 0 {
		live := list[:0]
		for _, x := range list {
			if x.Open() {
				live = append(live, x)
			}
		}
		clear(list[len(live):])
		list = live
	}
	i := len(list)
	for i > 0 && reconBefore(it, list[i-1]) {
		i--
	}
	return slices.Insert(list, i, it)
}

// ReconMatcher matches one reconciled account's items: its open items by
// side, and every item and match it has touched since Settle. Its holder
// loads items (Track) and matches (Items, Matches) as it needs them, and
// stores what changed before calling Settle.
type ReconMatcher struct {
	open [2]*reconOpenSet
	// Items are the items the matcher holds, open or touched since Settle.
	Items map[ReconKey]*ReconItem
	// Matches are the matches made, loaded or dissolved since Settle.
	Matches map[string]*ReconMatch
	// Added are the items that arrived since Settle, in order.
	Added []*ReconItem
}

// NewReconMatcher returns a matcher that holds nothing.
func NewReconMatcher() *ReconMatcher {
	return &ReconMatcher{open: [2]*reconOpenSet{newReconOpenSet(), newReconOpenSet()},
		Items: map[ReconKey]*ReconItem{}, Matches: map[string]*ReconMatch{}}
}

// Track adds a loaded item: open ones are candidates.
func (b *ReconMatcher) Track(it *ReconItem) {
	b.Items[it.Key()] = it
	if it.Open() {
		b.open[it.Side].add(it)
	}
}

// Arrive adds a new item at pos and matches it by rules (nil:
// DefaultMatchingRules): the first rule that finds a group wins.
func (b *ReconMatcher) Arrive(it *ReconItem, pos uint64, rules []MatchingRule) {
	if rules == nil {
		rules = DefaultMatchingRules
	}
	b.Items[it.Key()] = it
	b.Added = append(b.Added, it)
	for _, r := range rules {
		if group := b.find(it, r); group != nil {
			b.Match(pos, r.Kind, "", append(group, it))
			return
		}
	}
	b.open[it.Side].add(it)
}

// find returns the items that match it by rule r (without it), or nil.
func (b *ReconMatcher) find(it *ReconItem, r MatchingRule) []*ReconItem {
	var tol Units
	if r.AmountTolerance != nil {
		tol = r.AmountTolerance.Units
	}
	other := b.open[1-it.Side]
	switch r.Kind {
	case RuleReference:
		if it.Reference == "" {
			return nil
		}
		seen := 0
		for _, c := range other.byRef[it.Reference] {
			if !c.Open() {
				continue
			}
			if reconWithin(c.Amount, it.Amount, tol) {
				return []*ReconItem{c}
			}
			if seen++; seen == reconWindowScanMax {
				break
			}
		}
	case RuleAmountDate:
		if c := b.closest(it, other, int32(r.DateWindowDays), tol); c != nil {
			return []*ReconItem{c}
		}
	case RuleSplit:
		return b.split(it, int32(r.DateWindowDays), int(r.GroupMax), tol)
	}
	return nil
}

// closest returns the open item of set with it's amount (within tol) whose
// date is nearest it's, at most window days away; the oldest among equals.
func (b *ReconMatcher) closest(it *ReconItem, set *reconOpenSet, window int32, tol Units) *ReconItem {
	var best *ReconItem
	var bestGap int32
	// Only open items count toward the scan's bound: how many dead entries
	// a list still holds depends on the cache's history, the matches must not.
	scanned := 0
	consider := func(c *ReconItem) {
		if !c.Open() {
			return
		}
		scanned++
		if !reconWithin(c.Amount, it.Amount, tol) {
			return
		}
		gap := abs32(c.Day - it.Day)
		if gap > window {
			return
		}
		if best == nil || gap < bestGap || gap == bestGap && reconBefore(c, best) {
			best, bestGap = c, gap
		}
	}
	// Without a tolerance, the items of its amount or those of the window's
	// days, whichever are fewer: by amount alone, thousands of old open
	// items of a recurring amount (an account's history, loaded when it is
	// first reconciled) used up the scan's bound before today's was seen.
	// Counted in open items only, up to the bound: how many dead entries
	// the lists still hold depends on the cache's history (a reloaded book
	// has none), and the choice, like the matches, must not.
	if tol.IsZero() {
		same := set.byAmount[it.Amount]
		nSame, days := reconOpenUpTo(same, reconWindowScanMax+1), 0
		for d := it.Day - window; d <= it.Day+window && days <= reconWindowScanMax; d++ {
			days += reconOpenUpTo(set.byDay[d], reconWindowScanMax+1-days)
		}
		if nSame <= days {
			for _, c := range same {
				if consider(c); scanned >= reconWindowScanMax {
					break
				}
			}
			return best
		}
	}
	for d := it.Day - window; d <= it.Day+window && scanned < reconWindowScanMax; d++ {
		for _, c := range set.byDay[d] {
			if consider(c); scanned >= reconWindowScanMax {
				break
			}
		}
	}
	return best
}

// split finds a group for it. A group is one item and 2..max items of the
// other side whose amounts sum to its amount (within tol): the parts share
// the one's reference when it has one, else lie within window days of it.
// Either it is the one, or it completes a group as a part; the first group
// in (size, then item order) wins.
func (b *ReconMatcher) split(it *ReconItem, window int32, max int, tol Units) []*ReconItem {
	if max < 2 {
		return nil
	}
	other, own := b.open[1-it.Side], b.open[it.Side]
	parts := func(c *ReconItem) bool { return reconSmaller(c.Amount, it.Amount) }
	pool := b.pool(other, it, window, reconSplitPoolMax, it.Reference != "", parts)
	if g := reconSubsetSum(pool, nil, it.Amount, tol, max); g != nil {
		return g
	}
	// As a part: of a one with its reference, or of a one with none reconWithin
	// the window.
	whole := func(c *ReconItem) bool { return reconSmaller(it.Amount, c.Amount) }
	var anchors []*ReconItem
	if it.Reference != "" {
		anchors = b.pool(other, it, window, reconSplitAnchorsMax, true, whole)
	}
	anchors = append(anchors, b.pool(other, it, window, reconSplitAnchorsMax, false,
		func(c *ReconItem) bool { return c.Reference == "" && whole(c) })...)
	for _, a := range anchors {
		mates := b.pool(own, a, window, reconSplitPoolMax-1, a.Reference != "",
			func(c *ReconItem) bool { return c != it && reconSmaller(c.Amount, a.Amount) })
		if g := reconSubsetSum(mates, it, a.Amount, tol, max); g != nil {
			// reconSubsetSum put it last; the caller adds it.
			return append(g[:len(g)-1:len(g)-1], a)
		}
	}
	return nil
}

// pool lists up to n open items of set that may group with it, in order:
// byRef, those with its reference; else those within window days of it,
// nearest first. It keeps those ok accepts.
func (b *ReconMatcher) pool(set *reconOpenSet, it *ReconItem, window int32, n int, byRef bool, ok func(*ReconItem) bool) []*ReconItem {
	var out []*ReconItem
	if byRef {
		for _, c := range set.byRef[it.Reference] {
			if c.Open() && ok(c) {
				if out = append(out, c); len(out) == n {
					break
				}
			}
		}
		return out
	}
	for gap := int32(0); gap <= window && len(out) < n; gap++ {
		days := []int32{it.Day - gap, it.Day + gap}
		if gap == 0 {
			days = days[:1]
		}
		var ring []*ReconItem
		for _, d := range days {
			for _, c := range set.byDay[d] {
				if c.Open() && ok(c) {
					ring = append(ring, c)
				}
			}
		}
		slices.SortFunc(ring, cmpReconItems)
		out = append(out, ring[:min(len(ring), n-len(out))]...)
	}
	return out
}

// reconSubsetSum returns the first group of pool (with must, when given) of
// 2..max items whose amounts sum to target within tol, trying reconSmaller groups
// first and, within a size, earlier items first; nil when none does.
func reconSubsetSum(pool []*ReconItem, must *ReconItem, target, tol Units, max int) []*ReconItem {
	fixed := 0
	if must != nil {
		fixed = 1
	}
	idx := make([]int, 0, max)
	for size := 2; size <= max; size++ {
		k := size - fixed
		if k < 1 || k > len(pool) {
			continue
		}
		idx = idx[:k]
		for i := range idx {
			idx[i] = i
		}
		for {
			sum, ok := Units{}, true
			if must != nil {
				sum = must.Amount
			}
			for _, i := range idx {
				if sum, ok = sum.CheckedAdd(pool[i].Amount); !ok {
					break
				}
			}
			if ok && reconWithin(sum, target, tol) {
				g := make([]*ReconItem, 0, size)
				for _, i := range idx {
					g = append(g, pool[i])
				}
				if must != nil {
					g = append(g, must)
				}
				return g
			}
			if !nextCombination(idx, len(pool)) {
				break
			}
		}
	}
	return nil
}

// nextCombination moves idx to the next k-combination of 0..n-1 in
// lexicographic order; false after the last.
func nextCombination(idx []int, n int) bool {
	k := len(idx)
	i := k - 1
	for i >= 0 && idx[i] == n-k+i {
		i--
	}
	if i < 0 {
		return false
	}
	idx[i]++
	for j := i + 1; j < k; j++ {
		idx[j] = idx[j-1] + 1
	}
	return true
}

// Match records a match of items made at pos by rule, with id ("": the
// next free "#<pos>.<n>"), and returns it.
func (b *ReconMatcher) Match(pos uint64, rule, id string, items []*ReconItem) *ReconMatch {
	if id == "" {
		n := 0
		for {
			id = fmt.Sprintf("#%d.%d", pos, n)
			if _, taken := b.Matches[id]; !taken {
				break
			}
			n++
		}
	}
	m := &ReconMatch{ID: id, Rule: rule, Position: pos, Items: items}
	// Sides in order, each by position: the stored order, whatever the rule.
	slices.SortStableFunc(m.Items, func(x, y *ReconItem) int {
		if x.Side != y.Side {
			return int(x.Side - y.Side)
		}
		return cmpReconItems(x, y)
	})
	for _, it := range items {
		it.MatchID, it.Changed = id, true
	}
	b.Matches[id] = m
	return m
}

// Settle marks everything unchanged and forgets what is no longer open,
// once the holder has stored what changed: the matcher then holds open items
// only, and the holder loads the rest when a manual match or an unmatch names
// it.
func (b *ReconMatcher) Settle() {
	b.Added = nil
	live := 0
	for k, it := range b.Items {
		it.Changed = false
		if !it.Open() {
			delete(b.Items, k)
			continue
		}
		live++
	}
	clear(b.Matches)
	// Lazily removed entries pile up in the indexes: rebuild them when the
	// dead outnumber the live.
	entries := 0
	for _, list := range b.open[ReconLine].byDay {
		entries += len(list)
	}
	for _, list := range b.open[ReconMovement].byDay {
		entries += len(list)
	}
	if entries > 2*live+1024 {
		b.open = [2]*reconOpenSet{newReconOpenSet(), newReconOpenSet()}
		items := slices.Collect(maps.Values(b.Items))
		slices.SortFunc(items, cmpReconItems)
		for _, it := range items {
			b.open[it.Side].add(it)
		}
	}
}

// Dissolve undoes m: its items are open again unless manualOnly says they
// are to be matched by hand only from now on.
func (b *ReconMatcher) Dissolve(m *ReconMatch, manualOnly bool) {
	m.Dissolved = true
	for _, it := range m.Items {
		it.MatchID, it.Changed = "", true
		it.ManualOnly = it.ManualOnly || manualOnly
		if it.Open() {
			b.open[it.Side].reopen(it)
		}
	}
}

// Difference is Σ lines - Σ movements of a match.
func (m *ReconMatch) Difference() Units {
	var d Units
	for _, it := range m.Items {
		if it.Side == ReconLine {
			d = d.Add(it.Amount)
		} else {
			d = d.Sub(it.Amount)
		}
	}
	return d
}

// reconWithin reports that a and b have one sign and |a - b| <= tol: a
// tolerance pairs amounts that differ a little, never money in with money
// out (a fee of -0.02 with interest of +0.02).
func reconWithin(a, b, tol Units) bool {
	if a.Sign() != b.Sign() {
		return false
	}
	d, ok := a.CheckedAdd(b.Neg())
	if !ok {
		return false
	}
	if d.Sign() < 0 {
		d = d.Neg()
	}
	return d.Cmp(tol) <= 0
}

// reconSmaller reports that part has a's sign and a smaller magnitude: it may be
// one of several parts of whole.
func reconSmaller(part, whole Units) bool {
	if part.Sign() != whole.Sign() || part.IsZero() {
		return false
	}
	if whole.Sign() < 0 {
		return part.Cmp(whole) > 0
	}
	return part.Cmp(whole) < 0
}

// reconOpenUpTo counts the open items of list, at most n.
func reconOpenUpTo(list []*ReconItem, n int) int {
	c := 0
	for _, it := range list {
		if c >= n {
			break
		}
		if it.Open() {
			c++
		}
	}
	return c
}

func abs32(x int32) int32 {
	if x < 0 {
		return -x
	}
	return x
}
