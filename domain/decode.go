package domain

import (
	"errors"
	"time"
)

// errNotCanonical sends a payload the fast decoder does not recognise to
// encoding/json: the fast path only ever declines, never guesses.
var errNotCanonical = errors.New("not in canonical form")

// decodeTransferCommitted reads a TransferCommitted written by AppendEvent,
// without reflection: every projector and every replay decodes each transfer.
// It accepts only the canonical form (fields in contract order, no escapes in
// strings, no spaces) and declines anything else with errNotCanonical.
func decodeTransferCommitted(b []byte) (TransferCommitted, error) {
	p := parser{b: b}
	var e TransferCommitted
	p.lit(`{"id":`)
	e.ID = p.str()
	p.lit(`,"postings":[`)
	for p.ok() && p.peek() != ']' {
		if len(e.Postings) > 0 {
			p.lit(",")
		}
		var q Posting
		p.lit(`{"debit":`)
		q.Debit = p.str()
		p.lit(`,"credit":`)
		q.Credit = p.str()
		p.lit(`,"asset":`)
		q.Asset = p.str()
		p.lit(`,"amount":`)
		q.Amount = p.amount()
		p.lit("}")
		e.Postings = append(e.Postings, q)
		if len(e.Postings) > PostingsPerTransfer {
			return TransferCommitted{}, errNotCanonical
		}
	}
	p.lit("]")
	if p.has(`,"reference":`) {
		e.Reference = p.str()
	}
	if p.has(`,"metadata":{`) {
		e.Metadata = make(map[string]string)
		for p.ok() && p.peek() != '}' {
			if len(e.Metadata) > 0 {
				p.lit(",")
			}
			k := p.str()
			p.lit(":")
			e.Metadata[k] = p.str()
			if len(e.Metadata) > MetadataKeysMax {
				return TransferCommitted{}, errNotCanonical
			}
		}
		p.lit("}")
	}
	p.lit(`,"effective_at":`)
	e.EffectiveAt = p.time()
	p.lit("}")
	if p.bad || p.i != len(p.b) || len(e.Postings) == 0 {
		return TransferCommitted{}, errNotCanonical
	}
	return e, nil
}

// parser walks canonical JSON; after the first mismatch every step is a
// no-op and ok reports false.
type parser struct {
	b   []byte
	i   int
	bad bool
}

func (p *parser) ok() bool { return !p.bad && p.i < len(p.b) }

func (p *parser) peek() byte {
	if p.bad || p.i >= len(p.b) {
		p.bad = true
		return 0
	}
	return p.b[p.i]
}

func (p *parser) lit(s string) {
	if p.bad || len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		p.bad = true
		return
	}
	p.i += len(s)
}

// has consumes s if it comes next.
func (p *parser) has(s string) bool {
	if p.bad || len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// raw returns the bytes of a string with no escapes, between its quotes.
func (p *parser) raw() []byte {
	if p.peek() != '"' {
		p.bad = true
		return nil
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			p.i = j + 1
			return p.b[start:j]
		case c == '\\' || c < 0x20 || c >= 0x80:
			// Escapes and non-ASCII (which encoding/json validates and may
			// replace) are left to encoding/json.
			p.bad = true
			return nil
		}
	}
	p.bad = true
	return nil
}

func (p *parser) str() string { return string(p.raw()) }

func (p *parser) amount() Amount {
	r := p.raw()
	if p.bad {
		return Amount{}
	}
	d, err := ParseDecimal(string(r))
	if err != nil {
		p.bad = true
		return Amount{}
	}
	u, err := d.Units(d.frac)
	if err != nil {
		p.bad = true
		return Amount{}
	}
	return Amount{Units: u, Scale: d.frac}
}

func (p *parser) time() time.Time {
	r := p.raw()
	if p.bad {
		return time.Time{}
	}
	if t, ok := parseUTCTime(r); ok {
		return t
	}
	t, err := time.Parse(time.RFC3339Nano, string(r))
	// time.Parse is laxer than encoding/json's RFC 3339: accept only the text
	// AppendEvent writes, which formats back to itself.
	if err != nil || string(t.AppendFormat(make([]byte, 0, 40), time.RFC3339Nano)) != string(r) {
		p.bad = true
	}
	return t
}

// parseUTCTime reads the text time.RFC3339Nano gives a UTC time
// ("2006-01-02T15:04:05.999999999Z", the fraction without trailing zeros,
// none at all when zero) and declines everything else, which time.Parse
// and the round trip then judge: every event has a time, and parsing it and
// formatting it back cost a replay a tenth of its fold.
func parseUTCTime(r []byte) (time.Time, bool) {
	const whole = len("2006-01-02T15:04:05Z")
	if len(r) < whole || len(r) > whole+10 || r[4] != '-' || r[7] != '-' || r[10] != 'T' ||
		r[13] != ':' || r[16] != ':' || r[len(r)-1] != 'Z' {
		return time.Time{}, false
	}
	year, ok1 := digits(r[0:4])
	month, ok2 := digits(r[5:7])
	day, ok3 := digits(r[8:10])
	hour, ok4 := digits(r[11:13])
	minute, ok5 := digits(r[14:16])
	sec, ok6 := digits(r[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 ||
		day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := r[19 : len(r)-1]; len(frac) > 0 {
		// A dot, one to nine digits, the last not zero.
		n, ok := digits(frac[1:])
		if frac[0] != '.' || len(frac) < 2 || !ok || frac[len(frac)-1] == '0' {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nsec = n
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

// digits is the number b's decimal digits spell, false when b is empty or
// holds anything else.
func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(b) > 0
}

// daysIn is the number of days of month in year, by the Gregorian calendar
// as package time counts it (year 0 a leap year).
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
