package domain

import (
	"encoding/json"
	"maps"
	"slices"
)

// monitoring writes the snapshot's monitoring section: the alert freeze
// and raise marks, the rules in force and the velocity rings, each side's horizon
// after its entries (format 6 on).
func (e *snapWriter) monitoring(s *State) {
	e.uvarint(s.alertMark.Position)
	e.str(s.alertMark.ID)
	e.uvarint(s.alertMarkPos)
	if e.version >= 7 {
		e.uvarint(s.raiseMark.Position)
		e.str(s.raiseMark.ID)
		e.uvarint(s.raiseMarkPos)
	}
	m := &s.monitor
	e.uvarint(uint64(len(m.rules)))
	for _, id := range slices.Sorted(maps.Keys(m.rules)) {
		r := m.rules[id]
		b, err := json.Marshal(RuleDefined{Version: r.Version, Rule: r.Rule})
		if err != nil {
			panic("domain: a rule in force does not encode: " + err.Error())
		}
		e.str(string(b))
		e.uvarint(r.Position)
	}
	e.uvarint(uint64(len(m.rings)))
	for id, rings := range m.rings {
		e.str(id)
		for side, ring := range rings.sides {
			e.uvarint(uint64(len(ring)))
			for _, en := range ring {
				e.varint(en.at)
				e.uvarint(uint64(en.count))
				e.units(en.sum)
			}
			e.varint(rings.horizon[side])
		}
		e.flushFull()
	}
	if e.version >= 7 {
		e.uvarint(uint64(len(m.holds)))
		for _, id := range slices.Sorted(maps.Keys(m.holds)) {
			e.str(id)
			e.uvarint(uint64(len(m.holds[id])))
			for _, h := range m.holds[id] {
				e.uvarint(uint64(h.version))
				e.str(h.account)
			}
		}
	}
}

// alertMark reads an alert mark and the position of its event.
func (d *snapReader) alertMark(s *State, what string) (AlertMark, uint64) {
	m := AlertMark{Position: d.uvarint(), ID: d.str()}
	pos := d.uvarint()
	if pos > s.position || (pos == 0) != (m.Position == 0) || pos != 0 && m.Position >= pos {
		d.fail("%s at %d", what, pos)
	}
	return m, pos
}

// monitoring reads what monitoring wrote in format version. A format 5
// snapshot has no horizons: what its rings let go before it is not known.
// One before format 7 has no raise mark: none was raised.
func (d *snapReader) monitoring(s *State, version uint64) {
	s.alertMark, s.alertMarkPos = d.alertMark(s, "alert freeze mark")
	if version >= 7 {
		s.raiseMark, s.raiseMarkPos = d.alertMark(s, "alert raise mark")
	}
	n := d.uvarint()
	if n > RulesMax {
		d.fail("%d rules", n)
		return
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		text, pos := d.str(), d.uvarint()
		var e RuleDefined
		if err := json.Unmarshal([]byte(text), &e); err != nil {
			d.fail("rule %d: %v", i, err)
			return
		}
		if err := e.Rule.check(); err != nil || pos == 0 || pos > s.position || e.Version == 0 {
			d.fail("rule %s at %d: %v", e.Rule.ID, pos, err)
			return
		}
		s.monitor.rules[e.Rule.ID] = &RuleVersion{Rule: e.Rule, Version: e.Version, Position: pos}
	}
	s.monitor.reindex()
	n = d.uvarint()
	for i := uint64(0); i < n && d.err == nil; i++ {
		id := d.str()
		rings := &postingRings{}
		for side := range rings.sides {
			m := d.uvarint()
			if m > VelocityRingMax {
				d.fail("account %s: %d ring entries", id, m)
				return
			}
			for j := uint64(0); j < m && d.err == nil; j++ {
				at, count := d.varint(), d.uvarint()
				rings.sides[side] = append(rings.sides[side], ringEntry{at: at, count: uint32(count), sum: d.units()})
			}
			if version >= 6 {
				rings.horizon[side] = d.varint()
			}
		}
		s.monitor.rings[id] = rings
	}
	if version >= 7 { // before it, no rule held anything
		d.ruleHolds(s)
	}
}

// ruleHolds reads the rules' hold accounts by version (format 7 on): each
// rule once, its versions ascending and at most its version in force, the
// one in force there exactly when it holds, towards its hold account.
func (d *snapReader) ruleHolds(s *State) {
	n := d.uvarint()
	if n > RulesMax {
		d.fail("%d rules holding", n)
		return
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		id, m := d.str(), d.uvarint()
		r, ok := s.monitor.rules[id]
		if _, twice := s.monitor.holds[id]; !ok || twice || m == 0 || m > uint64(r.Version) {
			d.fail("rule %s: %d versions holding", id, m)
			return
		}
		var holds []ruleHold
		for j := uint64(0); j < m && d.err == nil; j++ {
			h := ruleHold{version: uint32(d.uvarint()), account: d.str()}
			if h.version == 0 || h.version > r.Version || h.account == "" || len(holds) > 0 && h.version <= holds[len(holds)-1].version {
				d.fail("rule %s: hold of version %d", id, h.version)
				return
			}
			holds = append(holds, h)
		}
		s.monitor.holds[id] = holds
	}
	for id, r := range s.monitor.rules {
		if d.err == nil && (s.monitor.holdAccount(id, r.Version) != r.Rule.HoldAccount || r.Rule.Holds() != (r.Rule.HoldAccount != "")) {
			d.fail("rule %s version %d: hold account %q, its definition's %q", id, r.Version, s.monitor.holdAccount(id, r.Version), r.Rule.HoldAccount)
		}
	}
}
