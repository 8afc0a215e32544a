package domain_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/domain"
)

func category(name, parent string, patterns ...string) *domain.DefineCategory {
	return &domain.DefineCategory{Name: name, Parent: parent, Patterns: patterns}
}

// chart is the chart of the end-to-end tests: assets > cash > bank:*;
// liabilities > users:*:wallet.
func chart(t *testing.T) *domain.State {
	t.Helper()
	s := domain.NewState()
	for _, c := range []*domain.DefineCategory{
		category("assets", ""), category("assets:cash", "assets", "bank:*"),
		category("liabilities", ""), category("liabilities:wallets", "liabilities", "users:*:wallet"),
	} {
		apply(t, s, c)
	}
	return s
}

func TestAccountPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		ok      bool
		prefix  string
		match   []string
		nomatch []string
	}{
		{"users:*:wallet", true, "users:", []string{"users:42:wallet", "users:a.b@c:wallet"},
			[]string{"users:42:wallet:x", "users::wallet", "users:wallet", "users:42:walle", "xusers:42:wallet"}},
		{"bank:*", true, "bank:", []string{"bank:acme", "bank:x-y"}, []string{"bank", "bank:", "bank:acme:usd", "banks:acme"}},
		{"*", true, "", []string{"alice", "a.b"}, []string{"a:b", ""}},
		{"*:fees", true, "", []string{"usd:fees"}, []string{"fees", "a:b:fees"}},
		{"equity", true, "equity", []string{"equity"}, []string{"equity:x", "equit"}},
		{"a:*:*", true, "a:", []string{"a:b:c"}, []string{"a:b", "a:b:c:d"}},
		{"a:b*", false, "", nil, nil},
		{"a::b", false, "", nil, nil},
		{":a", false, "", nil, nil},
		{"a:", false, "", nil, nil},
		{"", false, "", nil, nil},
		{"a b", false, "", nil, nil},
		{strings.Repeat("a", 129), false, "", nil, nil},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			err := domain.CheckAccountPattern(tc.pattern)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckAccountPattern = %v, want ok %v", err, tc.ok)
			}
			if !tc.ok {
				return
			}
			if got := domain.AccountPatternPrefix(tc.pattern); got != tc.prefix {
				t.Errorf("AccountPatternPrefix = %q, want %q", got, tc.prefix)
			}
			for _, id := range tc.match {
				if !domain.MatchAccountPattern(tc.pattern, id) {
					t.Errorf("%q does not match %q, want a match", tc.pattern, id)
				}
				if !strings.HasPrefix(id, tc.prefix) {
					t.Errorf("%q matches %q outside its prefix %q", tc.pattern, id, tc.prefix)
				}
			}
			for _, id := range tc.nomatch {
				if domain.MatchAccountPattern(tc.pattern, id) {
					t.Errorf("%q matches %q, want none", tc.pattern, id)
				}
			}
		})
	}
}

// TestDefineCategoryRefuses: each refusal names its field.
func TestDefineCategoryRefuses(t *testing.T) {
	many := make([]string, domain.CategoryPatternsMax+1)
	for i := range many {
		many[i] = fmt.Sprintf("p%d", i)
	}
	for _, tc := range []struct {
		name  string
		cmd   *domain.DefineCategory
		field string
	}{
		{"bad name", category("a b", ""), "name"},
		{"empty name", category("", ""), "name"},
		{"bad parent", category("x", "a b"), "parent"},
		{"own parent", category("x", "x"), "parent"},
		{"unknown parent", category("x", "nowhere"), "parent"},
		{"bad pattern", category("x", "", "bank:*", "bank:a*"), "patterns[1]"},
		{"too many patterns", category("x", "", many...), "patterns"},
		{"long description", &domain.DefineCategory{Name: "x", Description: strings.Repeat("d", 1025)}, "description"},
		{"NUL in description", &domain.DefineCategory{Name: "x", Description: "a\x00b"}, "description"},
		{"cycle", category("assets", "assets:cash"), "parent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := chart(t)
			_, err := decideAt(s, tc.cmd, now)
			checkErr(t, err, domain.ErrInvalidField, tc.field)
		})
	}
}

// TestDefineCategoryRedefines: the same definition is EXISTS at its first
// position; another replaces it and may move the category, descendants and
// all, under another parent.
func TestDefineCategoryRedefines(t *testing.T) {
	s := chart(t)
	c, _ := s.Category("assets:cash")
	_, err := decideAt(s, category("assets:cash", "assets", "bank:*"), now)
	var exists *domain.ExistsError
	if !errors.As(err, &exists) || exists.Position != c.Position {
		t.Fatalf("identical redefinition: %v, want EXISTS at %d", err, c.Position)
	}
	apply(t, s, category("assets:cash:eur", "assets:cash", "bank:*:eur"))
	pos := apply(t, s, category("assets:cash", "liabilities", "bank:*", "till"))
	got, _ := s.Category("assets:cash")
	want := domain.Category{Name: "assets:cash", Parent: "liabilities", Patterns: []string{"bank:*", "till"}, Position: pos}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("moved category (-want +got):\n%s", diff)
	}
	// A move under its own descendant is a cycle.
	_, err = decideAt(s, category("liabilities", "assets:cash:eur"), now)
	checkErr(t, err, domain.ErrInvalidField, "parent")
}

// TestCategoryDepth: a chain of CategoryDepthMax levels is the most; moving
// a subtree may not push its leaves deeper.
func TestCategoryDepth(t *testing.T) {
	s := domain.NewState()
	parent := ""
	for i := range domain.CategoryDepthMax {
		name := fmt.Sprintf("c%d", i)
		apply(t, s, category(name, parent))
		parent = name
	}
	_, err := decideAt(s, category("deeper", parent), now)
	checkErr(t, err, domain.ErrInvalidField, "parent")
	// c1's subtree has CategoryDepthMax-1 levels: under c0 it fits, under
	// another root's child it does not.
	apply(t, s, category("r", ""))
	apply(t, s, category("r:child", "r"))
	_, err = decideAt(s, category("c1", "r:child"), now)
	checkErr(t, err, domain.ErrInvalidField, "parent")
	apply(t, s, category("c1", "r")) // the same depth as under c0
}

// TestCategoriesAtomicUndo: a category defined and redefined in an atomic
// batch that fails is gone, or back as it was.
func TestCategoriesAtomicUndo(t *testing.T) {
	s := chart(t)
	before, _ := s.Category("assets:cash")
	// A move builds the children index; the rest of the test keeps it.
	apply(t, s, category("liabilities:wallets", "assets"))
	apply(t, s, category("liabilities:wallets", "liabilities", "users:*:wallet"))
	s.Begin()
	apply(t, s, category("assets:cash", "", "x"))
	apply(t, s, category("new", "assets:cash"))
	if err := domain.CategoryChildrenAgree(s); err != nil {
		t.Fatalf("before rollback: %v", err)
	}
	s.Rollback()
	if err := domain.CategoryChildrenAgree(s); err != nil {
		t.Errorf("after rollback: %v", err)
	}
	if got, _ := s.Category("assets:cash"); !cmp.Equal(got, before) {
		t.Errorf("after rollback %+v, want %+v", got, before)
	}
	if _, ok := s.Category("new"); ok || s.CategoryCount() != 4 {
		t.Errorf("after rollback: new is there, or %d categories, want 4", s.CategoryCount())
	}
}

// TestCategoryEventRefused: a log event that breaks the tree (an import, a
// forged event) is refused by Evolve, as every broken invariant is.
func TestCategoryEventRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    domain.CategoryDefined
	}{
		{"unknown parent", domain.CategoryDefined{Name: "x", Parent: "nowhere"}},
		{"cycle", domain.CategoryDefined{Name: "assets", Parent: "assets:cash"}},
		{"bad pattern", domain.CategoryDefined{Name: "x", Patterns: []string{"a:*b"}}},
		{"bad name", domain.CategoryDefined{Name: "x y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := chart(t)
			defer func() {
				if recover() == nil {
					t.Errorf("Evolve applied %+v, want a panic", tc.e)
				}
			}()
			s.Evolve(s.Position()+1, tc.e)
		})
	}
}

// TestSnapshotKeepsCategories: the tree comes back from a snapshot equal,
// and decides the same.
func TestSnapshotKeepsCategories(t *testing.T) {
	s := chart(t)
	apply(t, s, &domain.DefineCategory{Name: "equity", Patterns: []string{"equity", "*:capital"}, Description: "owners' equity"})
	got := unmarshalSnapshot(t, marshalSnapshot(t, s))
	if diff := cmp.Diff(s, got, stateEqual); diff != "" {
		t.Fatalf("state from the snapshot differs (-original +loaded):\n%s", diff)
	}
	for _, c := range []*domain.DefineCategory{category("assets:cash", "assets", "bank:*"), category("assets", "assets:cash")} {
		e1, err1 := decideAt(s, c, now)
		e2, err2 := decideAt(got, c, now)
		if !cmp.Equal(e1, e2) || fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Errorf("%s: original decides %v %v, loaded %v %v", c.Name, e1, err1, e2, err2)
		}
	}
}

// TestCategoriesAtTheBound: a ledger holds CategoriesMax categories; one
// more is refused naming name, while a redefinition of one of them is not.
func TestCategoriesAtTheBound(t *testing.T) {
	s := domain.NewState()
	for i := range domain.CategoriesMax {
		apply(t, s, category(fmt.Sprintf("c%d", i), ""))
	}
	_, err := decideAt(s, category("one-more", ""), now)
	checkErr(t, err, domain.ErrInvalidField, "name")
	apply(t, s, category("c7", "c8", "x:*"))
	if n := s.CategoryCount(); n != domain.CategoriesMax {
		t.Errorf("%d categories, want %d", n, domain.CategoriesMax)
	}
}
