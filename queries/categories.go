package queries

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
)

// Categories are read from the balances projection's categories table
// (projections/migrations/0016_categories.sql), the chart as it stands now.
// A roll-up sums, per category and asset, the four totals of every account
// the category holds: those its patterns match and those of its
// descendants, each account once however many of the subtree's patterns
// match it. The totals are the movements projection's (an account's balance
// is its last statement line's), now or as of a position or a time, as
// GetBalances answers, but always under today's chart.

// Limits of category queries.
const (
	// CategoriesLimitMax bounds a page of ListCategories, and is its
	// default.
	CategoriesLimitMax = 1000
	// RollupAccountsMax bounds the accounts a roll-up examines: for each
	// distinct pattern of the categories rolled up, the accounts in the index
	// range of its literal prefix. Past it the roll-up is refused rather
	// than run for minutes: roll up one category, or give patterns longer
	// literal prefixes.
	RollupAccountsMax = 1_000_000
)

var (
	// ErrCategoriesLimit means a page size over CategoriesLimitMax.
	ErrCategoriesLimit error = domain.NewInvalid("limit", "limit over 1000", "at most 1000 categories")
	// ErrBadCategoriesCursor means a cursor ListCategories did not write.
	ErrBadCategoriesCursor error = domain.NewInvalid("cursor", "malformed cursor", "not a cursor from ListCategories")
	// ErrCategoryNotFound means no category has the name.
	ErrCategoryNotFound error = domain.NewError(domain.KindNotFound, "category not found", "")
	// ErrRollupTooLarge means a roll-up would examine more than
	// RollupAccountsMax accounts.
	ErrRollupTooLarge error = domain.NewError(domain.KindExhausted, "roll-up too large",
		"roll up one category (category), or use patterns with longer literal prefixes")
)

// CategoryView is a category as last defined, with that definition's position.
type CategoryView struct {
	Name, Parent string
	Patterns     []string
	Description  string
	Position     uint64
}

// CategoriesPage is ListCategories' answer.
type CategoriesPage struct {
	Categories []CategoryView
	// NextCursor continues the listing; empty on the last page.
	NextCursor string
	Position   uint64
}

// ListCategories returns up to limit (0: CategoriesLimitMax) categories in
// name order after cursor (empty: from the first), once the balances
// projection has reached minPosition.
//
// Errors: ErrCategoriesLimit; ErrBadCategoriesCursor; domain.ErrUnknownLedger;
// ErrMinPositionBeyondHead; ErrNotReached; database errors.
func (s *Service) ListCategories(ctx context.Context, ledger, cursor string, limit int, minPosition uint64) (CategoriesPage, error) {
	s = s.route()
	switch {
	case limit < 0 || limit > CategoriesLimitMax:
		return CategoriesPage{}, fmt.Errorf("limit %d: %w", limit, ErrCategoriesLimit)
	case limit == 0:
		limit = CategoriesLimitMax
	}
	after, err := decodeKeyCursor(cursor, domain.IDLenMax, domain.ValidID, ErrBadCategoriesCursor)
	if err != nil {
		return CategoriesPage{}, err
	}
	s, err = s.waitFor(ctx, ledger, "balances", minPosition)
	if err != nil {
		return CategoriesPage{}, err
	}
	var out CategoriesPage
	err = pgx.BeginTxFunc(ctx, s.pool, movementSnapshot, func(tx pgx.Tx) error {
		if out.Position, err = checkpointOf(ctx, tx, ledger, "balances"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT name, coalesce(parent, ''), patterns, description, position
			FROM categories WHERE ledger = $1 AND name > $2 ORDER BY name LIMIT $3`, ledger, after, limit+1)
		if err != nil {
			return err
		}
		var (
			c   CategoryView
			pos int64
		)
		_, err = pgx.ForEachRow(rows, []any{&c.Name, &c.Parent, &c.Patterns, &c.Description, &pos}, func() error {
			c.Position = uint64(pos)
			out.Categories = append(out.Categories, c)
			c.Patterns = nil
			return nil
		})
		return err
	})
	if err != nil {
		return CategoriesPage{}, fmt.Errorf("categories of %s: %w", ledger, err)
	}
	if len(out.Categories) > limit {
		out.Categories = out.Categories[:limit]
		out.NextCursor = encodeKeyCursor(out.Categories[limit-1].Name)
	}
	if out.Position == 0 && len(out.Categories) == 0 {
		if err := s.mustExistLedger(ctx, ledger); err != nil {
			return CategoriesPage{}, err
		}
	}
	return out, nil
}

// checkpointOf is a projection's position in tx's snapshot; 0 before any.
func checkpointOf(ctx context.Context, tx pgx.Tx, ledger, projection string) (uint64, error) {
	var at int64
	err := tx.QueryRow(ctx, `SELECT COALESCE(max(position), 0) FROM projection_checkpoints
		WHERE ledger = $1 AND projection = $2`, ledger, projection).Scan(&at)
	if err != nil {
		return 0, fmt.Errorf("checkpoint of %s: %w", projection, err)
	}
	return uint64(at), nil
}

// categoryNode is a category of the tree a query loads.
type categoryNode struct {
	parent   string
	patterns []string
	children []string
}

// categoryTree is a ledger's categories by name.
type categoryTree map[string]*categoryNode

// loadCategoryTree reads every category of the ledger: at most
// domain.CategoriesMax.
func loadCategoryTree(ctx context.Context, tx pgx.Tx, ledger string) (categoryTree, error) {
	rows, err := tx.Query(ctx, `SELECT name, coalesce(parent, ''), patterns FROM categories WHERE ledger = $1 LIMIT $2`,
		ledger, domain.CategoriesMax+1)
	if err != nil {
		return nil, fmt.Errorf("categories of %s: %w", ledger, err)
	}
	tree := categoryTree{}
	var (
		name, parent string
		patterns     []string
	)
	_, err = pgx.ForEachRow(rows, []any{&name, &parent, &patterns}, func() error {
		tree[name] = &categoryNode{parent: parent, patterns: patterns}
		patterns = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("categories of %s: %w", ledger, err)
	}
	if len(tree) > domain.CategoriesMax {
		return nil, fmt.Errorf("categories of %s: more than %d", ledger, domain.CategoriesMax)
	}
	for n, c := range tree {
		if c.parent == "" {
			continue
		}
		p, ok := tree[c.parent]
		if !ok {
			return nil, fmt.Errorf("categories of %s: %s has no parent %s: the read model is corrupt", ledger, n, c.parent)
		}
		p.children = append(p.children, n)
	}
	return tree, nil
}

// subtree returns root and its descendants (every category for root "").
func (t categoryTree) subtree(root string) []string {
	if root == "" {
		out := make([]string, 0, len(t))
		for n := range t {
			out = append(out, n)
		}
		return out
	}
	out := []string{root}
	for i := 0; i < len(out) && i < len(t); i++ { // each name once in a tree: len(t) bounds it
		out = append(out, t[out[i]].children...)
	}
	return out
}

// ancestors calls f with name and each of its ancestors up to stop (itself
// included) or the root: at most domain.CategoryDepthMax.
func (t categoryTree) ancestors(name, stop string, f func(string)) {
	for at, steps := name, 0; at != "" && steps < domain.CategoryDepthMax; steps++ {
		f(at)
		if at == stop {
			return
		}
		at = t[at].parent
	}
}

// CategoryPatterns returns the patterns of a category and of all its
// descendants, sorted, each once: the accounts of the category are those
// that match one. It reads the categories as the balances projection
// holds them now. (ListAccounts' category filter.)
//
// Errors: ErrCategoryNotFound; domain.ErrUnknownLedger; database errors.
func (s *Service) CategoryPatterns(ctx context.Context, ledger, name string) ([]string, error) {
	s = s.route()
	var out []string
	err := pgx.BeginTxFunc(ctx, s.pool, movementSnapshot, func(tx pgx.Tx) error {
		tree, err := loadCategoryTree(ctx, tx, ledger)
		if err != nil {
			return err
		}
		if _, ok := tree[name]; !ok {
			return fmt.Errorf("category %q: %w", name, ErrCategoryNotFound)
		}
		for _, n := range tree.subtree(name) {
			out = append(out, tree[n].patterns...)
		}
		return nil
	})
	if err != nil {
		if err := s.mustExistLedger(ctx, ledger); err != nil {
			return nil, err
		}
		return nil, err
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// CategoryAsOf says which totals a roll-up sums: now (the zero value), just
// after Position, or at Time (inclusive) on effective time (Effective) or
// recorded time.
type CategoryAsOf struct {
	Position  uint64
	Time      time.Time
	Effective bool
}

// CategoryBalance is one category's and asset's sums over its accounts, as
// decimal strings in the asset's scale, and how many accounts (open and
// closed) it holds in the asset.
type CategoryBalance struct {
	Category, Asset                                            string
	DebitsPosted, CreditsPosted, DebitsPending, CreditsPending string
	Accounts                                                   uint64
}

// CategoryBalances is GetCategoryBalances' answer: a line per category and
// asset in which it holds accounts, by category then asset.
type CategoryBalances struct {
	Balances []CategoryBalance
	Position uint64
}

// GetCategoryBalances rolls up category (and each of its descendants; ""
// for every category) as asOf says, once the projection it reads has
// reached minPosition (and the as-of position).
//
// Errors: domain.ErrUnknownLedger; ErrCategoryNotFound; ErrBeyondHead;
// ErrMinPositionBeyondHead; ErrNotReached; ErrRollupTooLarge; database errors.
func (s *Service) GetCategoryBalances(ctx context.Context, ledger, category string, asOf CategoryAsOf, minPosition uint64) (CategoryBalances, error) {
	s = s.route()
	head, err := s.headAtLeast(ctx, ledger, asOf.Position)
	if err != nil {
		return CategoryBalances{}, err
	}
	if asOf.Position > head {
		return CategoryBalances{}, fmt.Errorf("as of position %d, head %d: %w", asOf.Position, head, ErrBeyondHead)
	}
	now := asOf.Position == 0 && asOf.Time.IsZero()
	// The totals are the statement lines' (an account's balance is its last
	// line's), now as well as as of a position or time.
	s, err = s.waitFor(ctx, ledger, movementsProjection, max(minPosition, asOf.Position))
	if err != nil {
		return CategoryBalances{}, err
	}
	s, err = s.waitCategories(ctx, ledger, minPosition)
	if err != nil {
		return CategoryBalances{}, err
	}
	var out CategoryBalances
	err = pgx.BeginTxFunc(ctx, s.pool, movementSnapshot, func(tx pgx.Tx) error {
		tree, err := loadCategoryTree(ctx, tx, ledger)
		if err != nil {
			return err
		}
		if _, ok := tree[category]; category != "" && !ok {
			return fmt.Errorf("category %q: %w", category, ErrCategoryNotFound)
		}
		r := newRollup(tree, category)
		switch {
		case asOf.Position != 0:
			out.Position = asOf.Position
		case now || asOf.Effective:
			out.Position, err = checkpointOf(ctx, tx, ledger, movementsProjection)
		default:
			out.Position, err = clockPosition(ctx, tx, ledger, asOf.Time, true)
		}
		if err != nil {
			return err
		}
		mode := rollupAsOfPosition // now: as of the checkpoint
		if !now && asOf.Position == 0 && asOf.Effective {
			mode = rollupAsOfEffective
		}
		out.Balances, err = r.run(ctx, tx, ledger, mode, out.Position, asOf.Time, s.rollupMax())
		return err
	})
	if err != nil {
		return CategoryBalances{}, fmt.Errorf("category balances of %s: %w", ledger, err)
	}
	return out, nil
}

// rollupMax is the bound of a roll-up's accounts examined.
func (s *Service) rollupMax() int {
	if s.rollupAccountsMax > 0 {
		return s.rollupAccountsMax
	}
	return RollupAccountsMax
}

// rollup is a roll-up's input: each distinct pattern of the categories
// rolled up, and for each the categories it counts its accounts in (the
// categories that have it and their ancestors within the roll-up).
type rollup struct {
	lo, hi, re []string
	// pairs: pattern index (1-based, as WITH ORDINALITY) and category.
	pairIndex []int64
	pairCat   []string
}

func newRollup(tree categoryTree, root string) *rollup {
	r := &rollup{}
	index := map[string]int64{}
	seen := map[struct {
		i int64
		c string
	}]bool{}
	for _, name := range tree.subtree(root) {
		for _, p := range tree[name].patterns {
			i, ok := index[p]
			if !ok {
				lo := domain.AccountPatternPrefix(p)
				r.lo, r.hi, r.re = append(r.lo, lo), append(r.hi, prefixEnd(lo)), append(r.re, patternRegex(p))
				i = int64(len(r.lo))
				index[p] = i
			}
			tree.ancestors(name, root, func(c string) {
				k := struct {
					i int64
					c string
				}{i, c}
				if !seen[k] {
					seen[k] = true
					r.pairIndex, r.pairCat = append(r.pairIndex, i), append(r.pairCat, c)
				}
			})
		}
	}
	return r
}

// prefixEnd is the least string above every string that starts with
// prefix, in byte order (the read models' collation is C): ids are ASCII,
// so every byte of an id is below 0x7f and one more is still ASCII.
func prefixEnd(prefix string) string {
	if prefix == "" {
		return "\x7f"
	}
	return prefix[:len(prefix)-1] + string(prefix[len(prefix)-1]+1)
}

// patternRegex is a pattern as a PostgreSQL regular expression, anchored:
// "*" is one non-empty segment; of the id bytes only "." means anything to
// a regular expression.
func patternRegex(p string) string {
	var b strings.Builder
	b.WriteByte('^')
	for i, seg := range strings.Split(p, ":") {
		if i > 0 {
			b.WriteByte(':')
		}
		if seg == "*" {
			b.WriteString("[^:]+")
			continue
		}
		b.WriteString(strings.ReplaceAll(seg, ".", `\.`))
	}
	b.WriteByte('$')
	return b.String()
}

// waitCategories waits until the balances projection, which holds the
// categories, has reached minPosition and the movements projection's
// checkpoint as it stands: a category defined at or before the position an
// answer read from the movements projection reports is then known (but for
// one defined while the movements projection moves on meanwhile).
//
// Errors: ErrNotReached; database errors.
func (s *Service) waitCategories(ctx context.Context, ledger string, minPosition uint64) (*Service, error) {
	var lines int64
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(max(position), 0) FROM projection_checkpoints
		WHERE ledger = $1 AND projection = $2`, ledger, movementsProjection).Scan(&lines); err != nil {
		return s, fmt.Errorf("checkpoint of %s: %w", movementsProjection, err)
	}
	return s.waitFor(ctx, ledger, "balances", max(minPosition, uint64(lines)))
}

// Where a roll-up's accounts and totals come from.
const (
	rollupAsOfPosition = iota
	rollupAsOfEffective
)

// rollupAccounts is, per mode, the table of the ledger's accounts a
// pattern's range is scanned in ($1 the ledger, {asof} the position): the
// movements projection's heads as of a position (the accounts opened by
// then) or an effective time (every one it holds).
var rollupAccounts = [...]string{
	rollupAsOfPosition:  `movement_heads b WHERE b.ledger = $1 AND b.opened_position <= {asof}::bigint`,
	rollupAsOfEffective: `movement_heads b WHERE b.ledger = $1`,
}

// rollupTotals is, per mode, each account's asset, scale and four totals
// (NULL: zero), for the accounts of acc; {asof} is the position or the
// effective time.
var rollupTotals = [...]string{
	rollupAsOfPosition: `SELECT h.account, h.asset, h.scale, l.debits_posted AS dp, l.credits_posted AS cp,
			l.debits_pending AS dq, l.credits_pending AS cq
		FROM acc JOIN movement_heads h ON h.ledger = $1 AND h.account = acc.account
		` + lastLine("{asof}::bigint"),
	rollupAsOfEffective: `SELECT h.account, h.asset, h.scale, s.dp, s.cp, s.dq, s.cq
		FROM acc JOIN movement_heads h ON h.ledger = $1 AND h.account = acc.account
		LEFT JOIN LATERAL (
			SELECT sum(m.amount) FILTER (WHERE m.side = 'debit' AND NOT m.pending) AS dp,
				sum(m.amount) FILTER (WHERE m.side = 'credit' AND NOT m.pending) AS cp,
				sum(m.amount) FILTER (WHERE m.side = 'debit' AND m.pending) AS dq,
				sum(m.amount) FILTER (WHERE m.side = 'credit' AND m.pending) AS cq
			FROM movements m WHERE m.ledger_no = h.ledger_no AND m.account_no = h.opened_position
				AND m.effective_at <= {asof}::timestamptz) s ON true`,
}

// rollupSQL is a fragment with its as-of parameter numbered n, and that
// parameter's value for the mode (nil for none).
func rollupSQL(fragment string, n int, mode int, pos uint64, at time.Time) (string, []any) {
	sql := strings.ReplaceAll(fragment, "{asof}", fmt.Sprintf("$%d", n))
	switch mode {
	case rollupAsOfPosition:
		return sql, []any{int64(pos)}
	case rollupAsOfEffective:
		return sql, []any{at}
	}
	return sql, nil
}

// run counts the accounts the roll-up would examine, refusing more than
// RollupAccountsMax, then rolls up in one statement: the accounts each
// pattern matches (an index range scan of its literal prefix, filtered by
// its regular expression), each counted once per category, their totals
// read once per account and summed per category and asset.
func (r *rollup) run(ctx context.Context, tx pgx.Tx, ledger string, mode int, pos uint64, at time.Time, bound int) ([]CategoryBalance, error) {
	if len(r.lo) == 0 {
		return nil, nil
	}
	accounts, extra := rollupSQL(rollupAccounts[mode], 5, mode, pos, at)
	var examined int64
	err := tx.QueryRow(ctx, `SELECT count(*) FROM (
			SELECT 1 FROM unnest($2::text[], $3::text[]) AS p(lo, hi)
			JOIN LATERAL (SELECT 1 FROM `+accounts+` AND b.account >= p.lo AND b.account < p.hi) x ON true
			LIMIT $4) n`, append([]any{ledger, r.lo, r.hi, bound + 1}, extra...)...).Scan(&examined)
	if err != nil {
		return nil, fmt.Errorf("count the accounts to roll up: %w", err)
	}
	if examined > int64(bound) {
		return nil, fmt.Errorf("the patterns' ranges hold more than %d accounts: %w", bound, ErrRollupTooLarge)
	}
	accounts, extra = rollupSQL(rollupAccounts[mode], 7, mode, pos, at)
	totals, _ := rollupSQL(rollupTotals[mode], 7, mode, pos, at)
	rows, err := tx.Query(ctx, `WITH p AS (
			SELECT * FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS p(lo, hi, re, i)
		), pc AS (
			SELECT * FROM unnest($5::bigint[], $6::text[]) AS pc(i, category)
		), matched AS (
			SELECT p.i, x.account FROM p
			JOIN LATERAL (SELECT b.account FROM `+accounts+` AND b.account >= p.lo AND b.account < p.hi
				AND b.account ~ p.re) x ON true
		), hit AS (
			SELECT DISTINCT pc.category, m.account FROM matched m JOIN pc ON pc.i = m.i
		), acc AS (
			SELECT DISTINCT account FROM hit
		), tot AS (`+totals+`)
		SELECT h.category, t.asset,
			round(coalesce(sum(t.dp), 0), max(t.scale))::text, round(coalesce(sum(t.cp), 0), max(t.scale))::text,
			round(coalesce(sum(t.dq), 0), max(t.scale))::text, round(coalesce(sum(t.cq), 0), max(t.scale))::text,
			count(*)
		FROM hit h JOIN tot t ON t.account = h.account
		GROUP BY h.category, t.asset`, append([]any{ledger, r.lo, r.hi, r.re, r.pairIndex, r.pairCat}, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("roll up: %w", err)
	}
	var (
		out []CategoryBalance
		l   CategoryBalance
		n   int64
	)
	_, err = pgx.ForEachRow(rows, []any{&l.Category, &l.Asset, &l.DebitsPosted, &l.CreditsPosted, &l.DebitsPending,
		&l.CreditsPending, &n}, func() error {
		l.Accounts = uint64(n)
		out = append(out, l)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("roll up: %w", err)
	}
	// Byte order, whatever the database's collation.
	slices.SortFunc(out, func(a, b CategoryBalance) int {
		if c := strings.Compare(a.Category, b.Category); c != 0 {
			return c
		}
		return strings.Compare(a.Asset, b.Asset)
	})
	return out, nil
}
