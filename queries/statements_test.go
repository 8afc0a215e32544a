package queries

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStatementCursorRoundTrip(t *testing.T) {
	q := StatementQuery{Ledger: "main", Account: "users:42:wallet", FromPosition: 3, IncludePending: true}
	for _, c := range []statementCursor{
		{pin: 1, position: 1, seq: 0},
		{pin: 1 << 40, position: 1<<40 - 1, seq: 127},
		{pin: 1 << 62, position: 1 << 62, seq: 1 << 15},
	} {
		c.fingerprint = q.fingerprint()
		s := c.encode()
		if len(s) > statementCursorLenMax {
			t.Errorf("%+v: cursor %q has %d characters, over %d", c, s, len(s), statementCursorLenMax)
		}
		got, err := decodeStatementCursor(s, q.fingerprint())
		if err != nil || got != c {
			t.Errorf("decode(encode(%+v)) = %+v, %v", c, got, err)
		}
	}
}

func TestStatementCursorRefused(t *testing.T) {
	q := StatementQuery{Ledger: "main", Account: "alice"}
	fp := q.fingerprint()
	good := statementCursor{pin: 50, position: 40, seq: 1, fingerprint: fp}.encode()
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	encode := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	for name, s := range map[string]string{
		"not base64":         "!!!",
		"empty bytes":        encode(nil),
		"other version":      encode(append([]byte{2}, raw[1:]...)),
		"truncated":          encode(raw[:len(raw)-1]),
		"trailing bytes":     encode(append(raw, 0)),
		"too long":           strings.Repeat("A", statementCursorLenMax+1),
		"other fingerprint":  statementCursor{pin: 50, position: 40, seq: 1, fingerprint: fp + 1}.encode(),
		"position after pin": statementCursor{pin: 40, position: 50, fingerprint: fp}.encode(),
		"position zero":      statementCursor{pin: 40, position: 0, fingerprint: fp}.encode(),
		"seq out of range":   statementCursor{pin: 40, position: 40, seq: 1<<15 + 1, fingerprint: fp}.encode(),
		"pin out of range":   statementCursor{pin: 1<<62 + 1, position: 1, fingerprint: fp}.encode(),
	} {
		if _, err := decodeStatementCursor(s, fp); !errors.Is(err, ErrStatementCursor) {
			t.Errorf("%s: %v, want ErrStatementCursor", name, err)
		}
	}
}

// A cursor belongs to one statement: every field that shapes the lines is
// in its fingerprint; the page size and the wait are not.
func TestStatementCursorFingerprint(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	base := StatementQuery{Ledger: "main", Account: "alice", FromPosition: 1, ToPosition: 9, FromTime: at, ToTime: at.Add(time.Hour)}
	for name, change := range map[string]func(*StatementQuery){
		"ledger":          func(q *StatementQuery) { q.Ledger = "other" },
		"account":         func(q *StatementQuery) { q.Account = "bob" },
		"account prefix":  func(q *StatementQuery) { q.Ledger, q.Account = "mainalice", "" },
		"from_position":   func(q *StatementQuery) { q.FromPosition = 2 },
		"to_position":     func(q *StatementQuery) { q.ToPosition = 0 },
		"from_time":       func(q *StatementQuery) { q.FromTime = q.FromTime.Add(time.Microsecond) },
		"to_time":         func(q *StatementQuery) { q.ToTime = time.Time{} },
		"time_basis":      func(q *StatementQuery) { q.Effective = true },
		"include_pending": func(q *StatementQuery) { q.IncludePending = true },
	} {
		q := base
		change(&q)
		if q.fingerprint() == base.fingerprint() {
			t.Errorf("changing %s keeps the fingerprint", name)
		}
	}
	q := base
	q.Limit, q.MinPosition, q.Cursor = 7, 100, "x"
	if q.fingerprint() != base.fingerprint() {
		t.Error("limit, min_position or cursor change the fingerprint")
	}
}

func TestStatementQueryCheck(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		q     StatementQuery
		limit int
		err   error
	}{
		{"default limit", StatementQuery{}, StatementLimitDefault, nil},
		{"limit at the bound", StatementQuery{Limit: StatementLimitMax}, StatementLimitMax, nil},
		{"limit over the bound", StatementQuery{Limit: StatementLimitMax + 1}, 0, ErrStatementLimit},
		{"negative limit", StatementQuery{Limit: -1}, 0, ErrStatementLimit},
		{"one position", StatementQuery{FromPosition: 5, ToPosition: 5}, StatementLimitDefault, nil},
		{"positions reversed", StatementQuery{FromPosition: 6, ToPosition: 5}, 0, ErrStatementPositionRange},
		{"open end", StatementQuery{FromPosition: 6}, StatementLimitDefault, nil},
		{"from at the bound", StatementQuery{FromPosition: StatementPositionMax}, StatementLimitDefault, nil},
		{"from over the bound", StatementQuery{FromPosition: StatementPositionMax + 1}, 0, ErrStatementPositionMax},
		{"to over the bound", StatementQuery{ToPosition: 1 << 63}, 0, ErrStatementPositionMax},
		{"one instant", StatementQuery{FromTime: at, ToTime: at}, StatementLimitDefault, nil},
		{"times reversed", StatementQuery{FromTime: at.Add(time.Microsecond), ToTime: at}, 0, ErrStatementTimeRange},
		{"bad cursor", StatementQuery{Cursor: "nope"}, 0, ErrStatementCursor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limit, _, err := tc.q.check()
			if !errors.Is(err, tc.err) || (err == nil && limit != tc.limit) {
				t.Errorf("check: limit %d, %v; want %d, %v", limit, err, tc.limit, tc.err)
			}
		})
	}
}
