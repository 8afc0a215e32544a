package domain_test

import (
	"errors"
	"regexp"
	"testing"

	"github.com/ledgerd/ledger/domain"
)

func TestAccountPattern(t *testing.T) {
	for _, c := range []struct {
		pattern, prefix string
		match, miss     []string
	}{
		{"users:*:wallet", "users:", []string{"users:42:wallet", "users::wallet", "users:a.b@c-d_e:wallet"},
			[]string{"users:42:x:wallet", "users:42:wallet2", "users:42", "xusers:42:wallet", "users:42:wallet:x"}},
		{"users:*", "users:", []string{"users:42", "users:"}, []string{"users", "users:42:wallet", "users2:42"}},
		{"*:wallet", "", []string{"a:wallet", ":wallet"}, []string{"a:b:wallet", "wallet"}},
		{"a.b", "a.b", []string{"a.b"}, []string{"axb", "a.bc"}},
		{"*", "", []string{"x", ""}, []string{"x:y"}},
		{"a:*:*", "a:", []string{"a:b:c"}, []string{"a:b", "a:b:c:d"}},
	} {
		p, err := domain.ParseAccountPattern("pattern", c.pattern)
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		if got := p.LiteralPrefix(); got != c.prefix {
			t.Errorf("%q: literal prefix %q, want %q", c.pattern, got, c.prefix)
		}
		re := regexp.MustCompile(p.Regexp())
		for _, id := range c.match {
			if !p.Match(id) || !re.MatchString(id) {
				t.Errorf("%q does not match %q (Match %t, regexp %s %t)", c.pattern, id, p.Match(id), p.Regexp(), re.MatchString(id))
			}
		}
		for _, id := range c.miss {
			if p.Match(id) || re.MatchString(id) {
				t.Errorf("%q matches %q (Match %t, regexp %s %t)", c.pattern, id, p.Match(id), p.Regexp(), re.MatchString(id))
			}
		}
		for _, id := range append(c.match, c.miss...) {
			if p.Match(id) && len(id) < len(c.prefix) || p.Match(id) && id[:len(c.prefix)] != c.prefix {
				t.Errorf("%q matches %q outside its literal prefix %q", c.pattern, id, c.prefix)
			}
		}
	}
}

func TestAccountPatternRefused(t *testing.T) {
	long := make([]byte, domain.IDLenMax+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, s := range []string{"", "users:4*:wallet", "users:**", "a b", "users:%", string(long), "a\x00"} {
		_, err := domain.ParseAccountPattern("pattern", s)
		if !errors.Is(err, domain.ErrInvalidField) || domain.FieldOf(err) != "pattern" {
			t.Errorf("%q: %v (field %q), want ErrInvalidField naming pattern", s, err, domain.FieldOf(err))
		}
	}
}
