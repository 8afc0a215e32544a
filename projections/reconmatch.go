package projections

import (
	"fmt"
	"slices"

	"github.com/ledgerd/ledger/domain"
)

// Limits of automatic matching. Every new item is tried against the items of
// the other side that are open (unmatched and not manual-only); these bound
// the work per item whatever the number of open items.
const (
	// splitPoolMax bounds the candidates a SPLIT rule combines: at most
	// Σ C(12, k) for k = 2..8, about 3,700 sums per anchor.
	splitPoolMax = 12
	// splitAnchorsMax bounds the items a new item may complete a split for.
	splitAnchorsMax = 12
	// windowScanMax bounds the items a rule with a tolerance scans.
	windowScanMax = 4096
)

const (
	sideLine = iota
	sideMovement
)

// reconItem is an external line (side sideLine) or a ledger movement of a
// reconciled account.
type reconItem struct {
	side               int
	source, externalID string // lines
	transferID         string // movements
	postingIndex       int
	position           uint64
	amount             domain.Units // signed: positive raises the balance
	day                int32        // days since 1970-01-01
	reference          string
	description        string
	matchID            string
	manualOnly         bool

	stored  bool // the row exists: changes are updates
	changed bool
}

func (it *reconItem) open() bool { return it.matchID == "" && !it.manualOnly }

// before is the items' canonical order: by position, then posting (two
// postings of one transfer share a position).
func before(x, y *reconItem) bool {
	if x.position != y.position {
		return x.position < y.position
	}
	return x.postingIndex < y.postingIndex
}

func cmpItems(x, y *reconItem) int {
	switch {
	case before(x, y):
		return -1
	case before(y, x):
		return 1
	}
	return 0
}

// itemKey names an item within an account.
type itemKey struct {
	side      int
	a, b      string
	postingIx int
}

func (it *reconItem) key() itemKey {
	if it.side == sideLine {
		return itemKey{side: sideLine, a: it.source, b: it.externalID}
	}
	return itemKey{side: sideMovement, a: it.transferID, postingIx: it.postingIndex}
}

// reconMatch is a set of lines and movements matched together.
type reconMatch struct {
	id, rule, reason string
	position         uint64
	items            []*reconItem
	dissolved        bool
	stored           bool
}

// openSet indexes one side's open items. Entries are removed lazily: a list
// may hold items matched since, which scans skip.
type openSet struct {
	byRef    map[string][]*reconItem
	byAmount map[domain.Units][]*reconItem
	byDay    map[int32][]*reconItem
}

func newOpenSet() *openSet {
	return &openSet{byRef: map[string][]*reconItem{}, byAmount: map[domain.Units][]*reconItem{}, byDay: map[int32][]*reconItem{}}
}

// add indexes a new item; items arrive in order, so every list stays sorted.
func (s *openSet) add(it *reconItem) {
	if it.reference != "" {
		s.byRef[it.reference] = appendLive(s.byRef[it.reference], it)
	}
	s.byAmount[it.amount] = appendLive(s.byAmount[it.amount], it)
	s.byDay[it.day] = appendLive(s.byDay[it.day], it)
}

// reopen indexes an item open again (its match dissolved). Its entries from
// before may still be in the lists, dead until now: an item is listed once.
func (s *openSet) reopen(it *reconItem) {
	if it.reference != "" {
		s.byRef[it.reference] = appendOnce(s.byRef[it.reference], it)
	}
	s.byAmount[it.amount] = appendOnce(s.byAmount[it.amount], it)
	s.byDay[it.day] = appendOnce(s.byDay[it.day], it)
}

func appendOnce(list []*reconItem, it *reconItem) []*reconItem {
	if slices.Contains(list, it) {
		return list
	}
	return appendLive(list, it)
}

// appendLive appends it, dropping the dead entries first when they are many,
// and keeps position order (an item reopened by a dissolved match is older
// than the newest entries).
func appendLive(list []*reconItem, it *reconItem) []*reconItem {
	if len(list) >= 8 && len(list)&(len(list)-1) == 0 {
		live := list[:0]
		for _, x := range list {
			if x.open() {
				live = append(live, x)
			}
		}
		clear(list[len(live):])
		list = live
	}
	i := len(list)
	for i > 0 && before(it, list[i-1]) {
		i--
	}
	return slices.Insert(list, i, it)
}

// reconBook is one reconciled account as the projector holds it: its rules,
// its open items by side, and every item and match it has touched.
type reconBook struct {
	account, asset string
	scale          uint8
	normal         domain.Side
	rules          []domain.MatchingRule // nil: the default
	enabledAt      uint64
	stored         bool // the recon_accounts row exists
	rulesChanged   bool

	open    [2]*openSet
	items   map[itemKey]*reconItem
	matches map[string]*reconMatch
	// added are the items created since the book was stored, in order.
	added []*reconItem
}

func newReconBook(account string) *reconBook {
	return &reconBook{account: account, open: [2]*openSet{newOpenSet(), newOpenSet()},
		items: map[itemKey]*reconItem{}, matches: map[string]*reconMatch{}}
}

func (b *reconBook) activeRules() []domain.MatchingRule {
	if b.rules == nil {
		return domain.DefaultMatchingRules
	}
	return b.rules
}

// track adds a loaded item: open ones are candidates.
func (b *reconBook) track(it *reconItem) {
	b.items[it.key()] = it
	if it.open() {
		b.open[it.side].add(it)
	}
}

// arrive adds a new item at pos and matches it by the account's rules.
func (b *reconBook) arrive(it *reconItem, pos uint64) {
	b.items[it.key()] = it
	b.added = append(b.added, it)
	for _, r := range b.activeRules() {
		if group := b.find(it, r); group != nil {
			b.match(pos, r.Kind, "", append(group, it))
			return
		}
	}
	b.open[it.side].add(it)
}

// find returns the items that match it by rule r (without it), or nil.
func (b *reconBook) find(it *reconItem, r domain.MatchingRule) []*reconItem {
	var tol domain.Units
	if r.AmountTolerance != nil {
		tol = r.AmountTolerance.Units
	}
	other := b.open[1-it.side]
	switch r.Kind {
	case domain.RuleReference:
		if it.reference == "" {
			return nil
		}
		seen := 0
		for _, c := range other.byRef[it.reference] {
			if !c.open() {
				continue
			}
			if within(c.amount, it.amount, tol) {
				return []*reconItem{c}
			}
			if seen++; seen == windowScanMax {
				break
			}
		}
	case domain.RuleAmountDate:
		if c := b.closest(it, other, int32(r.DateWindowDays), tol); c != nil {
			return []*reconItem{c}
		}
	case domain.RuleSplit:
		return b.split(it, int32(r.DateWindowDays), int(r.GroupMax), tol)
	}
	return nil
}

// closest returns the open item of set with it's amount (within tol) whose
// date is nearest it's, at most window days away; the oldest among equals.
func (b *reconBook) closest(it *reconItem, set *openSet, window int32, tol domain.Units) *reconItem {
	var best *reconItem
	var bestGap int32
	// Only open items count toward the scan's bound: how many dead entries
	// a list still holds depends on the cache's history, the matches must not.
	scanned := 0
	consider := func(c *reconItem) {
		if !c.open() {
			return
		}
		scanned++
		if !within(c.amount, it.amount, tol) {
			return
		}
		gap := abs32(c.day - it.day)
		if gap > window {
			return
		}
		if best == nil || gap < bestGap || gap == bestGap && before(c, best) {
			best, bestGap = c, gap
		}
	}
	if tol.IsZero() {
		for _, c := range set.byAmount[it.amount] {
			if consider(c); scanned >= windowScanMax {
				break
			}
		}
		return best
	}
	for d := it.day - window; d <= it.day+window && scanned < windowScanMax; d++ {
		for _, c := range set.byDay[d] {
			if consider(c); scanned >= windowScanMax {
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
func (b *reconBook) split(it *reconItem, window int32, max int, tol domain.Units) []*reconItem {
	if max < 2 {
		return nil
	}
	other, own := b.open[1-it.side], b.open[it.side]
	parts := func(c *reconItem) bool { return smaller(c.amount, it.amount) }
	pool := b.pool(other, it, window, splitPoolMax, it.reference != "", parts)
	if g := subsetSum(pool, nil, it.amount, tol, max); g != nil {
		return g
	}
	// As a part: of a one with its reference, or of a one with none within
	// the window.
	whole := func(c *reconItem) bool { return smaller(it.amount, c.amount) }
	var anchors []*reconItem
	if it.reference != "" {
		anchors = b.pool(other, it, window, splitAnchorsMax, true, whole)
	}
	anchors = append(anchors, b.pool(other, it, window, splitAnchorsMax, false,
		func(c *reconItem) bool { return c.reference == "" && whole(c) })...)
	for _, a := range anchors {
		mates := b.pool(own, a, window, splitPoolMax-1, a.reference != "",
			func(c *reconItem) bool { return c != it && smaller(c.amount, a.amount) })
		if g := subsetSum(mates, it, a.amount, tol, max); g != nil {
			// subsetSum put it last; the caller adds it.
			return append(g[:len(g)-1:len(g)-1], a)
		}
	}
	return nil
}

// pool lists up to n open items of set that may group with it, in order:
// byRef, those with its reference; else those within window days of it,
// nearest first. It keeps those ok accepts.
func (b *reconBook) pool(set *openSet, it *reconItem, window int32, n int, byRef bool, ok func(*reconItem) bool) []*reconItem {
	var out []*reconItem
	if byRef {
		for _, c := range set.byRef[it.reference] {
			if c.open() && ok(c) {
				if out = append(out, c); len(out) == n {
					break
				}
			}
		}
		return out
	}
	for gap := int32(0); gap <= window && len(out) < n; gap++ {
		days := []int32{it.day - gap, it.day + gap}
		if gap == 0 {
			days = days[:1]
		}
		var ring []*reconItem
		for _, d := range days {
			for _, c := range set.byDay[d] {
				if c.open() && ok(c) {
					ring = append(ring, c)
				}
			}
		}
		slices.SortFunc(ring, cmpItems)
		out = append(out, ring[:min(len(ring), n-len(out))]...)
	}
	return out
}

// subsetSum returns the first group of pool (with must, when given) of
// 2..max items whose amounts sum to target within tol, trying smaller groups
// first and, within a size, earlier items first; nil when none does.
func subsetSum(pool []*reconItem, must *reconItem, target, tol domain.Units, max int) []*reconItem {
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
			sum, ok := domain.Units{}, true
			if must != nil {
				sum = must.amount
			}
			for _, i := range idx {
				if sum, ok = sum.CheckedAdd(pool[i].amount); !ok {
					break
				}
			}
			if ok && within(sum, target, tol) {
				g := make([]*reconItem, 0, size)
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

// match records a match of items made at pos by rule.
func (b *reconBook) match(pos uint64, rule, id string, items []*reconItem) *reconMatch {
	if id == "" {
		n := 0
		for {
			id = fmt.Sprintf("#%d.%d", pos, n)
			if _, taken := b.matches[id]; !taken {
				break
			}
			n++
		}
	}
	m := &reconMatch{id: id, rule: rule, position: pos, items: items}
	// Sides in order, each by position: the stored order, whatever the rule.
	slices.SortStableFunc(m.items, func(x, y *reconItem) int {
		if x.side != y.side {
			return x.side - y.side
		}
		return cmpItems(x, y)
	})
	for _, it := range items {
		it.matchID, it.changed = id, true
	}
	b.matches[id] = m
	return m
}

// dissolve undoes m: its items are open again unless manualOnly says they
// are to be matched by hand only from now on.
func (b *reconBook) dissolve(m *reconMatch, manualOnly bool) {
	m.dissolved = true
	for _, it := range m.items {
		it.matchID, it.changed = "", true
		it.manualOnly = it.manualOnly || manualOnly
		if it.open() {
			b.open[it.side].reopen(it)
		}
	}
}

// difference is Σ lines - Σ movements of a match.
func (m *reconMatch) difference() domain.Units {
	var d domain.Units
	for _, it := range m.items {
		if it.side == sideLine {
			d = d.Add(it.amount)
		} else {
			d = d.Sub(it.amount)
		}
	}
	return d
}

// within reports |a - b| <= tol.
func within(a, b, tol domain.Units) bool {
	d, ok := a.CheckedAdd(b.Neg())
	if !ok {
		return false
	}
	if d.Sign() < 0 {
		d = d.Neg()
	}
	return d.Cmp(tol) <= 0
}

// smaller reports that part has a's sign and a smaller magnitude: it may be
// one of several parts of whole.
func smaller(part, whole domain.Units) bool {
	if part.Sign() != whole.Sign() || part.IsZero() {
		return false
	}
	if whole.Sign() < 0 {
		return part.Cmp(whole) > 0
	}
	return part.Cmp(whole) < 0
}

func abs32(x int32) int32 {
	if x < 0 {
		return -x
	}
	return x
}
