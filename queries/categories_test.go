package queries

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
)

// The category queries on read models written directly: patterns of a
// subtree, the roll-up's matching and counting, its bound, and paging. That
// the roll-ups agree with a real log now and as of a position is tested end
// to end in internal/daemon.

// categoryLedger writes a chart and balances:
//
//	assets            (no pattern)
//	  assets:cash     bank:*
//	    assets:cash:a bank:a        (bank:a is in assets:cash twice: once)
//	  assets:fees     *:fees
//	liabilities       users:*:wallet, bank.x
//
// The accounts are USD at scale 2 but for usd:fees and jpy:fees (JPY, 0).
func categoryLedger(t *testing.T, pool *pgxpool.Pool, ledger string) {
	t.Helper()
	fakeLedger(t, pool, ledger, 20, 20, time.Now())
	checkpoint(t, pool, ledger, "balances", 20, nil)
	checkpoint(t, pool, ledger, "movements", 20, nil)
	for _, c := range []struct {
		name, parent string
		patterns     []string
	}{
		{"assets", "", []string{}},
		{"assets:cash", "assets", []string{"bank:*"}},
		{"assets:cash:a", "assets:cash", []string{"bank:a"}},
		{"assets:fees", "assets", []string{"*:fees"}},
		{"liabilities", "", []string{"users:*:wallet", "bank.x"}},
	} {
		var parent *string
		if c.parent != "" {
			parent = &c.parent
		}
		exec(t, pool, `INSERT INTO categories (ledger, name, parent, patterns, description, position)
			VALUES ($1, $2, $3, $4, '', 1)`, ledger, c.name, parent, c.patterns)
	}
	exec(t, pool, `INSERT INTO movement_ledgers (ledger) VALUES ($1)`, ledger)
	for i, b := range []struct {
		account, asset string
		scale          int16
		dp, cp         string
	}{
		{"bank:a", "USD", 2, "10.00", "1.00"},
		{"bank:b", "USD", 2, "5.50", "0.00"},
		{"bank:a:sub", "USD", 2, "99.00", "0.00"}, // three segments: not bank:*
		{"users:1:wallet", "USD", 2, "0.00", "7.25"},
		{"users:2:wallet", "USD", 2, "1.00", "3.00"},
		{"users:2:other", "USD", 2, "0.00", "50.00"},
		{"bank.x", "USD", 2, "0.00", "2.00"},
		{"bankYx", "USD", 2, "0.00", "1000.00"}, // "." is a literal dot
		{"usd:fees", "USD", 2, "0.00", "0.25"},
		{"jpy:fees", "JPY", 0, "0", "300"},
	} {
		// An account's totals are its last statement line's, keyed by the
		// ledger's number and the account's opening position.
		exec(t, pool, `INSERT INTO movement_heads (ledger, ledger_no, account, asset, scale, normal_balance, opened_position)
			SELECT $1, ledger_no, $2, $3, $4::smallint, 'debit', $5 FROM movement_ledgers WHERE ledger = $1`,
			ledger, b.account, b.asset, b.scale, i+1)
		exec(t, pool, `INSERT INTO movements (ledger_no, account_no, position, seq, posting_index, side, pending, kind,
			transfer_id, counter_accounts, amount, debits_posted, credits_posted, debits_pending, credits_pending,
			effective_at, recorded_at) SELECT ledger_no, opened_position, 15, 0, 0, 'debit', false, 'TransferCommitted', 't', '{x}',
			round(0, $3::int), $4::numeric, $5::numeric, round(0, $3::int), round(0, $3::int), now(), now()
			FROM movement_heads WHERE ledger = $1 AND account = $2`,
			ledger, b.account, b.scale, b.dp, b.cp)
	}
}

func TestCategoryPatterns(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	ledger := testenv.Name(t)
	categoryLedger(t, pool, ledger)
	for _, tc := range []struct {
		category string
		want     []string
		err      error
	}{
		{"assets", []string{"*:fees", "bank:*", "bank:a"}, nil},
		{"assets:cash", []string{"bank:*", "bank:a"}, nil},
		{"assets:cash:a", []string{"bank:a"}, nil},
		{"liabilities", []string{"bank.x", "users:*:wallet"}, nil},
		{"nowhere", nil, ErrCategoryNotFound},
	} {
		got, err := q.CategoryPatterns(t.Context(), ledger, tc.category)
		if !errors.Is(err, tc.err) {
			t.Errorf("CategoryPatterns(%s): %v, want %v", tc.category, err, tc.err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("CategoryPatterns(%s) (-want +got):\n%s", tc.category, diff)
		}
	}
	if _, err := q.CategoryPatterns(t.Context(), "no-such-ledger", "assets"); !errors.Is(err, domain.ErrUnknownLedger) {
		t.Errorf("CategoryPatterns of an unknown ledger: %v, want ErrUnknownLedger", err)
	}
}

func TestCategoryRollupNow(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	ledger := testenv.Name(t)
	categoryLedger(t, pool, ledger)
	got, err := q.GetCategoryBalances(t.Context(), ledger, "", CategoryAsOf{}, 0)
	testenv.NoError(t, err)
	line := func(c, asset, dp, cp string, n uint64) CategoryBalance {
		zero := "0.00"
		if asset == "JPY" {
			zero = "0"
		}
		return CategoryBalance{Category: c, Asset: asset, DebitsPosted: dp, CreditsPosted: cp, DebitsPending: zero,
			CreditsPending: zero, Accounts: n}
	}
	want := CategoryBalances{Position: 20, Balances: []CategoryBalance{
		line("assets", "JPY", "0", "300", 1),
		line("assets", "USD", "15.50", "1.25", 3), // bank:a once, bank:b, usd:fees
		line("assets:cash", "USD", "15.50", "1.00", 2),
		line("assets:cash:a", "USD", "10.00", "1.00", 1),
		line("assets:fees", "JPY", "0", "300", 1),
		line("assets:fees", "USD", "0.00", "0.25", 1),
		line("liabilities", "USD", "1.00", "12.25", 3),
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("roll-up of every category (-want +got):\n%s", diff)
	}

	got, err = q.GetCategoryBalances(t.Context(), ledger, "assets:cash", CategoryAsOf{}, 0)
	testenv.NoError(t, err)
	if diff := cmp.Diff(want.Balances[2:4], got.Balances); diff != "" {
		t.Errorf("roll-up of assets:cash (-want +got):\n%s", diff)
	}
	_, err = q.GetCategoryBalances(t.Context(), ledger, "nowhere", CategoryAsOf{}, 0)
	if !errors.Is(err, ErrCategoryNotFound) {
		t.Errorf("roll-up of an unknown category: %v, want ErrCategoryNotFound", err)
	}
}

// TestCategoryRollupBound: a roll-up examining exactly the bound runs; one
// more account in a pattern's range and it is refused.
func TestCategoryRollupBound(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	ledger := testenv.Name(t)
	categoryLedger(t, pool, ledger)
	q := New(pool, nil)
	// assets:cash's one distinct pattern range, "bank:", holds bank:a,
	// bank:b and bank:a:sub; with assets:cash:a's "bank:a" range (bank:a,
	// bank:a:sub) that is 5 accounts examined.
	q.rollupAccountsMax = 5
	if _, err := q.GetCategoryBalances(t.Context(), ledger, "assets:cash", CategoryAsOf{}, 0); err != nil {
		t.Fatalf("roll-up at the bound: %v", err)
	}
	q.rollupAccountsMax = 4
	_, err := q.GetCategoryBalances(t.Context(), ledger, "assets:cash", CategoryAsOf{}, 0)
	var de *domain.Error
	if !errors.Is(err, ErrRollupTooLarge) || !errors.As(err, &de) || de.Kind() != domain.KindExhausted {
		t.Errorf("roll-up over the bound: %v, want ErrRollupTooLarge (exhausted)", err)
	}
}

func TestListCategoriesPages(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	ledger := testenv.Name(t)
	categoryLedger(t, pool, ledger)
	var names []string
	cursor := ""
	for range 10 {
		page, err := q.ListCategories(t.Context(), ledger, cursor, 2, 0)
		testenv.NoError(t, err)
		for _, c := range page.Categories {
			names = append(names, c.Name)
		}
		if page.Position != 20 {
			t.Errorf("page at position %d, want 20", page.Position)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	want := []string{"assets", "assets:cash", "assets:cash:a", "assets:fees", "liabilities"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("categories by pages of 2 (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		cursor string
		limit  int
		err    error
	}{
		{"", CategoriesLimitMax + 1, ErrCategoriesLimit},
		{"!!", 0, ErrBadCategoriesCursor},
		{encodeTransfersCursor(5, 1), 0, ErrBadCategoriesCursor},
	} {
		if _, err := q.ListCategories(t.Context(), ledger, tc.cursor, tc.limit, 0); !errors.Is(err, tc.err) {
			t.Errorf("ListCategories(%q, %d): %v, want %v", tc.cursor, tc.limit, err, tc.err)
		}
	}
	page, err := q.ListCategories(t.Context(), ledger, "", CategoriesLimitMax, 0)
	testenv.NoError(t, err)
	if len(page.Categories) != 5 || page.NextCursor != "" {
		t.Errorf("ListCategories at the limit: %d categories, cursor %q; want 5 and none", len(page.Categories), page.NextCursor)
	}
}
