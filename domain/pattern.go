package domain

import (
	"regexp"
	"slices"
	"strings"
)

// AccountPattern selects account ids by segments: the id split at ':', each
// segment matched by a literal or by "*", which matches any one segment
// (empty included). "users:*:wallet" matches "users:42:wallet", never
// "users:42:x:wallet"; a pattern without "*" matches its own text only.
// ListAccounts' pattern filter and the categories' patterns are these.
type AccountPattern struct {
	segments []string
}

// patternWildcard is the segment that matches any one segment.
const patternWildcard = "*"

// ParseAccountPattern reads a pattern: at most IDLenMax bytes, each segment
// "*" or made of id characters ([A-Za-z0-9_.@-]).
//
// Errors: ErrInvalidField naming field.
func ParseAccountPattern(field, s string) (AccountPattern, error) {
	if len(s) == 0 || len(s) > IDLenMax {
		return AccountPattern{}, fieldErrf(field, ErrInvalidField, "%d bytes, want 1..%d", len(s), IDLenMax)
	}
	segments := strings.Split(s, ":")
	for _, seg := range segments {
		if seg == patternWildcard {
			continue
		}
		for i := 0; i < len(seg); i++ {
			if !idByte(seg[i]) {
				return AccountPattern{}, fieldErrf(field, ErrInvalidField,
					"%q: a segment is \"*\" or [A-Za-z0-9_.@-]*", truncate(s))
			}
		}
	}
	return AccountPattern{segments: segments}, nil
}

// Exact reports whether the pattern has no wildcard: it matches one id.
func (p AccountPattern) Exact() bool { return !slices.Contains(p.segments, patternWildcard) }

// LiteralPrefix is the text every id the pattern matches starts with: the
// segments before the first "*", each followed by ':' (the whole pattern
// when it is exact). A listing scans that range of ids.
func (p AccountPattern) LiteralPrefix() string {
	var b strings.Builder
	for i, seg := range p.segments {
		if seg == patternWildcard {
			return b.String()
		}
		b.WriteString(seg)
		if i < len(p.segments)-1 {
			b.WriteByte(':')
		}
	}
	return b.String()
}

// Regexp is the pattern as an anchored regular expression that Go's regexp
// and PostgreSQL's (~, advanced) read alike: literals quoted, "*" as
// [^:]*.
func (p AccountPattern) Regexp() string {
	var b strings.Builder
	b.WriteByte('^')
	for i, seg := range p.segments {
		if i > 0 {
			b.WriteByte(':')
		}
		if seg == patternWildcard {
			b.WriteString("[^:]*")
			continue
		}
		b.WriteString(regexp.QuoteMeta(seg))
	}
	b.WriteByte('$')
	return b.String()
}

// Match reports whether id matches the pattern.
func (p AccountPattern) Match(id string) bool {
	segs := strings.Split(id, ":")
	if len(segs) != len(p.segments) {
		return false
	}
	for i, seg := range p.segments {
		if seg != patternWildcard && seg != segs[i] {
			return false
		}
	}
	return true
}

// String is the pattern as written.
func (p AccountPattern) String() string { return strings.Join(p.segments, ":") }
