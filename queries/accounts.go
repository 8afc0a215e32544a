package queries

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
)

// Limits of account and asset listings.
const (
	// AccountsPageMax bounds a ListAccounts page; AccountsPageDefault is the
	// page of a request that gives no limit.
	AccountsPageMax     = 1000
	AccountsPageDefault = 100
	// AccountsScanMax bounds the accounts one ListAccounts page examines
	// past its cursor, in id order, for the filters no index serves (the
	// pattern beyond its literal prefix, a status or an asset beside the
	// index the page reads). A page that reaches it ends early, maybe
	// empty, with a cursor after the last account examined: the caller
	// goes on. So a page costs at most this many rows however rare its
	// matches.
	AccountsScanMax = 10_000
	// AccountsMetadataPairsMax bounds the metadata pairs of a filter.
	AccountsMetadataPairsMax = 8
	// AccountsCategoryPatternsMax bounds the patterns (the category's and
	// its descendants') a category filter tests on each row: one regular
	// expression of that many alternatives, whose cost per row grows with
	// them (2,000 cost seconds a page; PostgreSQL refuses far more).
	// GetCategoryBalances, which scans each pattern's range apart, has no
	// such bound.
	AccountsCategoryPatternsMax = 64
	// AssetsPageMax and AssetsPageDefault bound a ListAssets page.
	AssetsPageMax     = 1000
	AssetsPageDefault = 100
)

var (
	// ErrAccountsPageTooLarge means a ListAccounts limit over AccountsPageMax.
	ErrAccountsPageTooLarge error = domain.NewInvalid("limit", "page limit too large", fmt.Sprintf("at most %d", AccountsPageMax))
	// ErrCategoryTooWide means a category filter over more patterns than
	// AccountsCategoryPatternsMax: list a narrower category, or roll up.
	ErrCategoryTooWide error = domain.NewError(domain.KindExhausted, "category too wide to list",
		"list one of its subcategories, or use GetCategoryBalances")
	// ErrBadAccountsCursor means a cursor ListAccounts did not write for the
	// same ledger and filters.
	ErrBadAccountsCursor error = domain.NewInvalid("cursor", "malformed cursor", "not a cursor from ListAccounts with these filters")
	// ErrAssetsPageTooLarge means a ListAssets limit over AssetsPageMax.
	ErrAssetsPageTooLarge error = domain.NewInvalid("limit", "page limit too large", fmt.Sprintf("at most %d", AssetsPageMax))
	// ErrBadAssetsCursor means a cursor ListAssets did not write.
	ErrBadAssetsCursor error = domain.NewInvalid("cursor", "malformed cursor", "not a cursor from ListAssets")
)

// Account statuses of an AccountFilter.
const (
	AccountStatusAny    = ""
	AccountStatusOpen   = "open"
	AccountStatusClosed = "closed"
)

// AccountFilter selects accounts; zero fields select all. The caller
// validates the fields (adapters/grpcapi): ids and asset codes well formed,
// at most AccountsMetadataPairsMax metadata pairs, not both Prefix and
// Pattern.
type AccountFilter struct {
	Prefix string
	// Pattern, when set, is one domain.CheckAccountPattern accepts.
	Pattern  string
	Asset    string
	Status   string
	Metadata map[string]string
	// Category, when set, keeps the accounts of that category or of one of
	// its descendants: those matching one of their patterns.
	Category string
	// Balances asks for each account's balance with it.
	Balances bool
	// Frozen keeps the accounts frozen now.
	Frozen bool

	// categoryPatterns are Category's patterns, as ListAccounts read them.
	categoryPatterns []string
}

// AccountRow is one account of a listing: the accounts read model's row and,
// when asked, its balance now.
type AccountRow struct {
	ID, Asset, Normal      string
	MinBalance, MaxBalance *string
	Metadata               map[string]string
	Closed                 bool
	OpenedPosition         uint64
	OpenedAt               time.Time
	// FrozenPosition is the position of the freeze in force; 0: not frozen.
	FrozenPosition uint64
	Balance        *Balance
}

// AccountPage is ListAccounts' answer.
type AccountPage struct {
	Accounts []AccountRow
	// NextCursor continues the listing; empty when it is done at Position.
	// A page may be short, even empty, with a cursor: it examined
	// AccountsScanMax accounts.
	NextCursor string
	Position   uint64
}

// balancesCheckpoint selects the balances projection's checkpoint (which
// writes assets) as c, 0 before its first batch.
const balancesCheckpoint = `(SELECT COALESCE(max(position), 0) AS position FROM projection_checkpoints
	WHERE ledger = $1 AND projection = 'balances') c`

// accountsCheckpoint selects the movements projection's checkpoint (which
// writes the accounts and their statement lines, whose last gives an
// account's balance) as c, 0 before its first batch.
const accountsCheckpoint = `(SELECT COALESCE(max(position), 0) AS position FROM projection_checkpoints
	WHERE ledger = $1 AND projection = 'movements') c`

// ListAccounts returns up to limit (0: AccountsPageDefault) accounts that
// match f, in id (byte) order, after cursor (empty: from the start), once
// the movements projection has reached minPosition. A page examines at most
// AccountsScanMax accounts (see there).
//
// Errors: ErrAccountsPageTooLarge; ErrBadAccountsCursor;
// domain.ErrUnknownLedger; ErrMinPositionBeyondHead; ErrNotReached;
// database errors.
func (s *Service) ListAccounts(ctx context.Context, ledger string, f AccountFilter, cursor string, limit int,
	minPosition uint64) (AccountPage, error) {
	s = s.route()
	switch {
	case limit < 0 || limit > AccountsPageMax:
		return AccountPage{}, fmt.Errorf("limit %d, at most %d: %w", limit, AccountsPageMax, ErrAccountsPageTooLarge)
	case limit == 0:
		limit = AccountsPageDefault
	}
	fingerprint := accountsFingerprint(ledger, f)
	after, err := decodeAccountsCursor(cursor, fingerprint)
	if err != nil {
		return AccountPage{}, err
	}
	s, err = s.waitFor(ctx, ledger, movementsProjection, minPosition)
	if err != nil {
		return AccountPage{}, err
	}
	if f.Category != "" {
		if s, err = s.waitCategories(ctx, ledger, minPosition); err != nil {
			return AccountPage{}, err
		}
		if f.categoryPatterns, err = s.CategoryPatterns(ctx, ledger, f.Category); err != nil {
			return AccountPage{}, err
		}
		if n := len(f.categoryPatterns); n > AccountsCategoryPatternsMax {
			return AccountPage{}, fmt.Errorf("category %q has %d patterns with its descendants, a listing tests at most %d: %w",
				f.Category, n, AccountsCategoryPatternsMax, ErrCategoryTooWide)
		}
	}
	var (
		out      AccountPage
		boundary string
	)
	if len(f.Metadata) == 0 {
		// One statement, one snapshot.
		out, boundary, err = accountsPage(ctx, s.pool, ledger, f, after, limit+1, false)
	} else {
		err = pgx.BeginTxFunc(ctx, s.pool, movementSnapshot, func(tx pgx.Tx) error {
			return metadataPage(ctx, tx, ledger, f, after, limit, &out, &boundary)
		})
	}
	if err != nil {
		return AccountPage{}, fmt.Errorf("list accounts of %s: %w", ledger, err)
	}
	switch {
	case len(out.Accounts) > limit:
		out.Accounts = out.Accounts[:limit]
		out.NextCursor = encodeAccountsCursor(out.Accounts[limit-1].ID, fingerprint)
	case boundary != "":
		// The scan's budget ran out before the page filled: go on after
		// the last account it examined.
		out.NextCursor = encodeAccountsCursor(boundary, fingerprint)
	}
	if out.Position == 0 && len(out.Accounts) == 0 {
		if err := s.mustExistLedger(ctx, ledger); err != nil {
			return AccountPage{}, err
		}
	}
	return out, nil
}

// metadataPage reads a page of a metadata listing into out and boundary, in
// tx (one snapshot for its two reads): first in id order, the metadata
// tested on each row; when that scan met too few matches in
// AccountsScanMax rows, the metadata's GIN index finds the rest past what
// it examined (a common pair fills the page in the scan, a rare one here).
func metadataPage(ctx context.Context, tx pgx.Tx, ledger string, f AccountFilter, after string, limit int,
	out *AccountPage, boundary *string) error {
	var err error
	*out, *boundary, err = accountsPage(ctx, tx, ledger, f, after, limit+1, false)
	if err != nil || len(out.Accounts) > limit || *boundary == "" {
		return err
	}
	rest, restBoundary, err := accountsPage(ctx, tx, ledger, f, *boundary, limit+1-len(out.Accounts), true)
	if err != nil {
		return err
	}
	out.Accounts, *boundary = append(out.Accounts, rest.Accounts...), restBoundary
	return nil
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// accountsPage runs one listAccountsSQL statement.
func accountsPage(ctx context.Context, q querier, ledger string, f AccountFilter, after string, limit int,
	metadataIndex bool) (AccountPage, string, error) {
	sql, args, err := listAccountsSQL(ledger, f, after, limit, AccountsScanMax, metadataIndex)
	if err != nil {
		return AccountPage{}, "", err
	}
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return AccountPage{}, "", err
	}
	return collectAccounts(rows, f.Balances, limit)
}

// listAccountsSQL builds a ListAccounts statement: the checkpoint and, in
// one snapshot, up to limit matching rows after the id after. The inner scan
// reads one index (the metadata GIN index when metadataIndex, else the
// asset index, the closed accounts' or the primary key, in id order),
// bounded to the id range of the prefix (or of the pattern's literal
// prefix), and stops after scanMax rows; the filters that index does not
// serve are tested on those rows (hit). The scan's last row comes back even
// when it is no hit (n = scanMax), so that a page that found too few still
// moves its cursor past what it examined.
//
// The GIN index yields every match past the cursor, sorted for the page:
// cheap for a rare pair, not for one that a tenth of the ledger holds,
// which the id-ordered scan finds at once. So ListAccounts scans in id order
// first and turns to the index only when that scan met too few.
func listAccountsSQL(ledger string, f AccountFilter, after string, limit, scanMax int, metadataIndex bool) (string, []any, error) {
	args := []any{ledger, after, scanMax, limit}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	inner := []string{"a.ledger = $1", "a.account > $2"}
	var residual []string
	prefix := f.Prefix
	if f.Pattern != "" {
		// The literal part before the first "*" bounds the id range; the
		// rest is matched on the rows (as the categories' patterns are).
		prefix = domain.AccountPatternPrefix(f.Pattern)
		switch {
		case !slices.Contains(strings.Split(f.Pattern, ":"), "*"):
			inner = append(inner, "a.account = "+arg(f.Pattern))
		default:
			residual = append(residual, "a.account ~ "+arg(patternRegex(f.Pattern)))
		}
	}
	if f.Category != "" {
		var ok bool
		if prefix, ok = narrowPrefix(prefix, f.categoryPatterns); !ok {
			inner = append(inner, "false") // no account is in both
		}
		res := make([]string, len(f.categoryPatterns))
		for i, p := range f.categoryPatterns {
			res[i] = patternRegex(p)
		}
		if len(res) == 0 {
			inner = append(inner, "false") // a category without patterns holds no account
		} else {
			residual = append(residual, "a.account ~ "+arg(strings.Join(res, "|")))
		}
	}
	if prefix != "" {
		inner = append(inner, "a.account >= "+arg(prefix), "a.account < "+arg(prefixEnd(prefix)))
	}
	// One index serves the scan: the filter it answers goes in the scan,
	// the others are tested on the rows it yields.
	path := ""
	if len(f.Metadata) > 0 {
		kv, err := json.Marshal(f.Metadata)
		if err != nil {
			return "", nil, fmt.Errorf("metadata filter: %w", err)
		}
		contains := "a.metadata @> " + arg(string(kv)) + "::jsonb"
		if metadataIndex {
			// metadata <> '{}' is the predicate of the partial index
			// accounts_metadata (migration 0015).
			inner = append(inner, "a.metadata <> '{}'::jsonb", contains)
			path = "metadata"
		} else {
			residual = append(residual, contains)
		}
	}
	switch {
	case path == "metadata":
	case f.Frozen:
		// Frozen accounts are fewer than any asset's: the partial index
		// accounts_frozen (projections 0026) serves them.
		inner = append(inner, "a.frozen_position IS NOT NULL")
		path = "frozen"
	case f.Asset != "":
		inner = append(inner, "a.asset = "+arg(f.Asset))
		path = "asset"
	case f.Status == AccountStatusClosed:
		inner = append(inner, "a.closed")
		path = "closed"
	}
	if f.Frozen && path != "frozen" {
		residual = append(residual, "a.frozen_position IS NOT NULL")
	}
	if f.Asset != "" && path != "asset" {
		residual = append(residual, "a.asset = "+arg(f.Asset))
	}
	switch {
	case f.Status == AccountStatusClosed && path != "closed":
		residual = append(residual, "a.closed")
	case f.Status == AccountStatusOpen:
		residual = append(residual, "NOT a.closed")
	}
	hit := "true"
	if len(residual) > 0 {
		hit = strings.Join(residual, " AND ")
	}
	balanceCols, balanceJoin := "", ""
	if f.Balances {
		balanceCols = `, h.scale, l.debits_posted::text, l.credits_posted::text, l.debits_pending::text,
			l.credits_pending::text, COALESCE(l.position, h.opened_position)`
		// An account's totals are its last statement line's; its scale is
		// its head's. Both keys are COLLATE "C" (0018), as accounts' is.
		balanceJoin = `LEFT JOIN LATERAL (SELECT * FROM movement_heads h
				WHERE h.ledger = $1 AND h.account = x.account OFFSET 0) h ON true
			` + lastLine("")
	}
	sql := `SELECT c.position, x.account, x.asset, x.normal_balance, x.min_balance::text, x.max_balance::text,
			x.metadata::text, x.closed, x.opened_position, x.opened_at, x.frozen_position, x.hit, x.n = $3` + balanceCols + `
		FROM ` + accountsCheckpoint + `
		LEFT JOIN LATERAL (
			SELECT s.* FROM (
				SELECT a.*, ` + hit + ` AS hit, row_number() OVER (ORDER BY a.account) AS n
				FROM (SELECT a.* FROM accounts a WHERE ` + strings.Join(inner, " AND ") + `
					ORDER BY a.account LIMIT $3) a
			) s
			WHERE s.hit OR s.n = $3
			ORDER BY s.account LIMIT $4
		) x ON true
		` + balanceJoin + `
		ORDER BY x.account`
	return sql, args, nil
}

// collectAccounts reads listAccountsSQL's rows: the hits (up to max) and the
// id of the scan's last row when it came back (the scan reached its bound).
func collectAccounts(rows pgx.Rows, balances bool, max int) (AccountPage, string, error) {
	defer rows.Close()
	var (
		out      AccountPage
		boundary string
	)
	for rows.Next() {
		var (
			checkpoint              int64
			id, asset, normal, meta *string
			minB, maxB              *string
			closed, hit, last       *bool
			opened, frozen          *int64
			openedAt                *time.Time
			scale                   *int16
			totals                  movementTexts
			balancePos              *int64
			dest                    = []any{&checkpoint, &id, &asset, &normal, &minB, &maxB, &meta, &closed, &opened, &openedAt, &frozen, &hit, &last}
			balanceDest             = []any{&scale, &totals[0], &totals[1], &totals[2], &totals[3], &balancePos}
		)
		if balances {
			dest = append(dest, balanceDest...)
		}
		if err := rows.Scan(dest...); err != nil {
			return AccountPage{}, "", err
		}
		out.Position = uint64(checkpoint)
		if id == nil {
			continue
		}
		if *last {
			boundary = *id
		}
		if !*hit || len(out.Accounts) == max {
			continue
		}
		a := AccountRow{ID: *id, Asset: *asset, Normal: *normal, MinBalance: minB, MaxBalance: maxB, Closed: *closed,
			OpenedPosition: uint64(*opened), OpenedAt: openedAt.UTC()}
		if frozen != nil {
			a.FrozenPosition = uint64(*frozen)
		}
		var err error
		if a.Metadata, err = parseMetadata([]byte(*meta)); err != nil {
			return AccountPage{}, "", fmt.Errorf("account %s: metadata: %w", a.ID, err)
		}
		if balances && scale != nil {
			t, err := parseMovementTotals(&totals, uint8(*scale), a.Normal)
			if err != nil {
				return AccountPage{}, "", fmt.Errorf("account %s: %w", a.ID, err)
			}
			b := t.balance(a.ID, a.Asset, a.Normal, uint64(*balancePos))
			a.Balance = &b
		}
		out.Accounts = append(out.Accounts, a)
	}
	if err := rows.Err(); err != nil {
		return AccountPage{}, "", err
	}
	return out, boundary, nil
}

// accountsCursorVersion is the first byte of every accounts cursor.
const accountsCursorVersion = 1

// encodeAccountsCursor writes the last id a page examined (the next page
// starts after it) and the fingerprint of the listing it belongs to.
func encodeAccountsCursor(id string, fingerprint uint32) string {
	b := make([]byte, 0, 5+len(id))
	b = append(b, accountsCursorVersion, byte(fingerprint>>24), byte(fingerprint>>16), byte(fingerprint>>8), byte(fingerprint))
	return base64.RawURLEncoding.EncodeToString(append(b, id...))
}

// decodeAccountsCursor reads a cursor of the listing with fingerprint; ""
// is the start.
//
// Errors: ErrBadAccountsCursor, also for another listing's cursor.
func decodeAccountsCursor(cursor string, fingerprint uint32) (string, error) {
	if cursor == "" {
		return "", nil
	}
	if len(cursor) > base64.RawURLEncoding.EncodedLen(5+domain.IDLenMax) {
		return "", fmt.Errorf("cursor of %d bytes: %w", len(cursor), ErrBadAccountsCursor)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(cursor)
	if err != nil || len(b) < 6 || b[0] != accountsCursorVersion || !domain.ValidID(string(b[5:])) ||
		base64.RawURLEncoding.EncodeToString(b) != cursor {
		return "", fmt.Errorf("cursor %.40q: %w", cursor, ErrBadAccountsCursor)
	}
	if uint32(b[1])<<24|uint32(b[2])<<16|uint32(b[3])<<8|uint32(b[4]) != fingerprint {
		return "", fmt.Errorf("cursor %.40q: from another listing: %w", cursor, ErrBadAccountsCursor)
	}
	return string(b[5:]), nil
}

// accountsFingerprint identifies a listing (ledger and filters), so that a
// cursor is refused by any other.
// narrowPrefix is the id prefix every account matching prefix and one of
// patterns starts with: the longer of prefix and the patterns' common
// literal prefix when one extends the other; false when they exclude each
// other (no account can match both).
func narrowPrefix(prefix string, patterns []string) (string, bool) {
	common := ""
	for i, p := range patterns {
		lit := domain.AccountPatternPrefix(p)
		if i == 0 {
			common = lit
			continue
		}
		n := 0
		for n < len(common) && n < len(lit) && common[n] == lit[n] {
			n++
		}
		common = common[:n]
	}
	switch {
	case strings.HasPrefix(common, prefix):
		return common, true
	case strings.HasPrefix(prefix, common):
		return prefix, true
	}
	return prefix, false
}

func accountsFingerprint(ledger string, f AccountFilter) uint32 {
	h := fnv.New32a()
	status := f.Status
	if f.Frozen {
		status += "\x01frozen" // beside the status: the cursors of listings without it are as they were
	}
	fields := []string{ledger, f.Prefix, f.Pattern, f.Asset, status, f.Category}
	for _, k := range slices.Sorted(maps.Keys(f.Metadata)) {
		fields = append(fields, k, f.Metadata[k])
	}
	for _, s := range fields {
		h.Write([]byte(s))
		h.Write([]byte{0}) // no field holds a NUL
	}
	return h.Sum32()
}

// AssetRow is one asset of a listing.
type AssetRow struct {
	Code     string
	Scale    uint8
	Position uint64
}

// AssetPage is ListAssets' answer.
type AssetPage struct {
	Assets     []AssetRow
	NextCursor string
	Position   uint64
}

// ListAssets returns up to limit (0: AssetsPageDefault) of the ledger's
// assets in code (byte) order after cursor, once the balances projection
// has reached minPosition.
//
// Errors: ErrAssetsPageTooLarge; ErrBadAssetsCursor; domain.ErrUnknownLedger;
// ErrMinPositionBeyondHead; ErrNotReached; database errors.
func (s *Service) ListAssets(ctx context.Context, ledger, cursor string, limit int, minPosition uint64) (AssetPage, error) {
	s = s.route()
	switch {
	case limit < 0 || limit > AssetsPageMax:
		return AssetPage{}, fmt.Errorf("limit %d, at most %d: %w", limit, AssetsPageMax, ErrAssetsPageTooLarge)
	case limit == 0:
		limit = AssetsPageDefault
	}
	after, err := decodeKeyCursor(cursor, domain.AssetCodeLenMax, domain.ValidAssetCode, ErrBadAssetsCursor)
	if err != nil {
		return AssetPage{}, err
	}
	s, err = s.waitFor(ctx, ledger, "balances", minPosition)
	if err != nil {
		return AssetPage{}, err
	}
	// A ledger holds at most domain.AssetsMaxDefault assets: the byte order
	// (COLLATE "C", whatever the database's locale) sorts at most that many.
	rows, err := s.pool.Query(ctx, `SELECT c.position, a.code, a.scale, a.position FROM `+balancesCheckpoint+`
		LEFT JOIN LATERAL (SELECT code, scale, position FROM assets
			WHERE ledger = $1 AND code COLLATE "C" > $2 ORDER BY code COLLATE "C" LIMIT $3) a ON true
		ORDER BY a.code COLLATE "C"`, ledger, after, limit+1)
	if err != nil {
		return AssetPage{}, fmt.Errorf("list assets of %s: %w", ledger, err)
	}
	var (
		out        AssetPage
		checkpoint int64
		code       *string
		scale      *int16
		pos        *int64
	)
	_, err = pgx.ForEachRow(rows, []any{&checkpoint, &code, &scale, &pos}, func() error {
		out.Position = uint64(checkpoint)
		if code != nil {
			out.Assets = append(out.Assets, AssetRow{Code: *code, Scale: uint8(*scale), Position: uint64(*pos)})
		}
		return nil
	})
	if err != nil {
		return AssetPage{}, fmt.Errorf("list assets of %s: %w", ledger, err)
	}
	if len(out.Assets) > limit {
		out.Assets = out.Assets[:limit]
		out.NextCursor = encodeKeyCursor(out.Assets[limit-1].Code)
	}
	if out.Position == 0 && len(out.Assets) == 0 {
		if err := s.mustExistLedger(ctx, ledger); err != nil {
			return AssetPage{}, err
		}
	}
	return out, nil
}
