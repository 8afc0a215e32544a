package projections

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Movements projects one line per movement of an account, each with the
// account's four totals just after it: statements with running balances, and
// balances as of any position or time, without replaying the log. Schema and
// sign conventions: migrations/0002_movements.sql; the lines' key of numbers:
// 0023_lines_keyed_by_numbers.sql.
//
// Between batches it keeps each ledger's running totals in memory, so that a
// batch reads from PostgreSQL only the accounts it has not seen (reading
// every moved account's last line cost about a third of the projector's
// database time). The cache is valid only for a batch that starts right
// after the last one it applied: anything else (a rolled-back batch, another
// runner, a rebuild's swap) reloads it. The totals at a position are a
// function of the log alone, so whoever wrote the rows, they agree.
type Movements struct {
	mu     sync.Mutex
	caches map[string]*movementCache
	// cached is the accounts held by caches, every ledger's together;
	// cachedMax bounds it (movementsCachedAccountsMax).
	cached, cachedMax int

	// servedMu guards served, each ledger's balances as its last committed
	// batch left them, which GetBalances answers from without a round trip
	// (served.go), and pending, the rows of the batch each ledger's
	// transaction in flight wrote.
	servedMu sync.RWMutex
	served   map[string]*servedTable
	pending  map[string]*servedRows
	// servedReadAt is when served was last read (Unix ns; 0 never):
	// batches keep it only within servedIdle of it (servedWanted).
	servedReadAt atomic.Int64
	servedIdle   time.Duration
}

// NewMovements returns the projector.
func NewMovements() *Movements {
	p := &Movements{caches: map[string]*movementCache{}, cachedMax: movementsCachedAccountsMax,
		served: map[string]*servedTable{}, pending: map[string]*servedRows{}, servedIdle: servedIdleAfter}
	return p
}

// MovementsName is the projector's name (checkpoint and upstream look-ups).
const MovementsName = "movements"

// movementsName is MovementsName within the package.
const movementsName = MovementsName

// movementsCachedAccountsMax bounds the accounts the caches hold between
// batches, every ledger's together (about 200 bytes each): a ledger whose
// cache does not fit reads its moved accounts' totals batch by batch, as
// without a cache, and a cache kept when others fill the bound evicts them.
const movementsCachedAccountsMax = 1 << 20

// movementCache is a ledger's state after position through: every account
// the projector has seen (heads), asset scales and the clock.
type movementCache struct {
	through uint64
	// ledgerNo is the number movement_ledgers gives the ledger key, which
	// keys its lines with the accounts' opening positions (0023); 0 until
	// read.
	ledgerNo int32
	heads    *headTable
	scales   map[string]uint8
	// clockAt is the grain (ClockGrain) of the running maximum of the
	// recorded times, clockMax that maximum exactly.
	clockAt, clockMax time.Time
	// clockKnown says clockAt was read (or set by a tick).
	clockKnown bool
	// dropped says a batch folded into the cache failed (drop): it is not
	// kept again, by whoever holds it. Guarded by Movements.mu.
	dropped bool
}

func (*Movements) Name() string { return movementsName }

// Version 2 writes the accounts table too (migration 0021); version 3 its
// freezes (migration 0025).
func (*Movements) Version() int { return 3 }

// take removes and returns the ledger's cache if it continues at from; else
// an empty one.
func (p *Movements) take(ledger string, from uint64) *movementCache {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.caches[ledger]
	if c != nil {
		delete(p.caches, ledger)
		p.cached -= c.heads.Len()
	}
	if c == nil || c.through+1 != from {
		return &movementCache{heads: newHeadTable(), scales: map[string]uint8{}}
	}
	return c
}

// keep holds c as the ledger's cache for its next batch, within cachedMax
// over every ledger: other ledgers' caches are dropped to make room (they
// reload from PostgreSQL), and a cache larger than the bound alone is not
// kept. A cache taken by a batch in flight is not counted: it left the
// bound's count when taken and comes back through keep.
func (p *Movements) keep(ledger string, c *movementCache) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.dropped {
		return
	}
	if old := p.caches[ledger]; old != nil { // another runner's, kept meanwhile
		delete(p.caches, ledger)
		p.cached -= old.heads.Len()
	}
	if c.heads.Len() > p.cachedMax {
		return
	}
	for other, oc := range p.caches {
		if p.cached+c.heads.Len() <= p.cachedMax {
			break
		}
		delete(p.caches, other)
		p.cached -= oc.heads.Len()
	}
	p.caches[ledger] = c
	p.cached += c.heads.Len()
}

// Tables lists the read-model tables Movements writes that are keyed by
// ledger. The lines (movements) are keyed by the ledger's number instead:
// dropRows retires it, and the view Views lists shows them by ledger.
func (*Movements) Tables() []string {
	return []string{"movement_ledgers", "movement_heads", "movement_assets", "movement_clock", "accounts"}
}

// Views lists the views of Movements' rows keyed by ledger over the tables
// Tables leaves out: the statement lines by ledger and account.
func (*Movements) Views() []string { return []string{"movement_lines"} }

// dropRows retires the number of the ledger key's statement lines (a
// rebuild's swap and a stale shadow's drop): SweepRetired deletes them.
func (*Movements) dropRows(ctx context.Context, tx pgx.Tx, key string) error {
	return retireNumber(ctx, tx, "movement_ledgers", key)
}

// movementLine is one row of movements.
type movementLine struct {
	// accountNo is the account's opening position: its lines' key.
	accountNo uint64
	// account and asset are the account's, for the balances served
	// (servedRows).
	account, asset string
	normal         domain.Side
	position       uint64
	seq            int
	postingIndex   int
	debit, pending bool
	counter        string
	amount         domain.Units
	scale          uint8
	dp, cp, dq, cq domain.Units
	event          *movementEvent
}

// movementEvent is what the lines of one event share.
type movementEvent struct {
	kind, transferID, reference string
	metadata                    map[string]string
	effectiveAt, recordedAt     time.Time
}

// movementTick is a point of the ledger's clock: position is the last one
// whose running maximum of the recorded times lies in the grain at, and max
// is that maximum exactly.
type movementTick struct {
	at, max  time.Time
	position uint64
}

// movementFold folds a batch into lines, heads, assets and clock ticks, over
// the ledger's cache, which it changes in place.
type movementFold struct {
	*movementCache
	// opened lists the accounts the batch opens: their movement_heads rows
	// are written with the batch.
	opened []string
	// accounts is what the batch changes of the accounts table.
	accounts accountChanges
	assets   []domain.AssetDefined
	lines    []movementLine
	ticks    []movementTick
	moves    []domain.Movement // one event's, reused
}

// Apply appends the batch's lines with COPY, in the runner's transaction. It
// reads, in one round trip, the totals the batch continues (each moved
// account's last line), the scales of the assets of the accounts it opens,
// and the ledger's clock; it writes a head row only for an account it opens.
//
// Errors: a malformed record; a movement of an account this read model does
// not know, or totals out of range (the read model is corrupt); database errors.
func (p *Movements) Apply(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record) error {
	return decodeAndApply(ctx, tx, ledger, recs, p)
}

// applyEvents is Apply of records whose events are decoded (eventsApplier).
func (p *Movements) applyEvents(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record, events []domain.Event) error {
	if len(recs) == 0 {
		return nil
	}
	// The cache is taken, not shared: a batch that fails leaves it half
	// applied, and it is dropped with the batch.
	f := newMovementFold(p.take(ledger, recs[0].Position), len(recs))
	if err := f.load(ctx, tx, ledger, events); err != nil {
		return err
	}
	b, err := p.fold(ledger, f, recs, events)
	if err != nil {
		return err
	}
	if err := b.write(ctx, tx, ledger); err != nil {
		b.discard()
		return err
	}
	return nil
}

// stage folds recs before their transaction (stager) when the ledger's
// cache continues right before them and holds all they need: the number,
// the clock, the heads of the accounts they move and the scales of the
// assets they open accounts in. Otherwise it returns nil, the cache kept
// as it was, and the batch loads what it needs in its transaction.
func (p *Movements) stage(ledger string, recs []eventstore.Record, events []domain.Event) (staged, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	c := p.take(ledger, recs[0].Position)
	if c.ledgerNo == 0 || !c.clockKnown {
		return nil, nil // a fresh cache: nothing to keep
	}
	if accounts, assets := (&movementFold{movementCache: c}).missing(events); len(accounts) > 0 || len(assets) > 0 {
		p.keep(ledger, c)
		return nil, nil
	}
	b, err := p.fold(ledger, newMovementFold(c, len(recs)), recs, events)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// fold applies recs to f and returns what the batch writes. The cache, now
// at the batch's last position, is kept for the next batch before the
// batch is written, so that the next can be folded while this one is
// (Runner.serve): if the write fails, the batch's discard drops it, and a
// cache kept at a position no checkpoint reaches is never taken.
func (p *Movements) fold(ledger string, f *movementFold, recs []eventstore.Record, events []domain.Event) (*movementBatch, error) {
	for i := range recs {
		if err := f.apply(&recs[i], events[i]); err != nil {
			return nil, fmt.Errorf("record %d: %w", recs[i].Position, err)
		}
	}
	b := f.batch(p.servedWanted())
	b.p, b.ledger = p, ledger
	f.through = recs[len(recs)-1].Position
	if b.served != nil {
		b.served.from, b.served.last = recs[0].Position-1, f.through
	}
	p.keep(ledger, f.movementCache)
	return b, nil
}

// drop forgets c, a cache a batch folded into and did not write: now if
// it is the ledger's, and when kept again by whoever holds it (a fold
// ahead that took it meanwhile).
func (p *Movements) drop(ledger string, c *movementCache) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.dropped = true
	if p.caches[ledger] == c {
		delete(p.caches, ledger)
		p.cached -= c.heads.Len()
	}
}

// newMovementFold returns a fold of a batch of records over c.
func newMovementFold(c *movementCache, records int) *movementFold {
	return &movementFold{movementCache: c, lines: make([]movementLine, 0, 2*records)}
}

// missing lists what the batch continues from that the cache does not hold:
// the accounts it moves but neither opens nor has a head of, in order, and
// the assets of the accounts it opens whose scales are neither cached nor
// defined by the batch.
func (f *movementFold) missing(events []domain.Event) (accounts, assets []string) {
	opened, defined := map[string]bool{}, map[string]bool{}
	moved, needAssets := map[string]bool{}, map[string]bool{}
	for _, e := range events {
		switch e := e.(type) {
		case domain.AssetDefined:
			defined[e.Code] = true
		case domain.AccountOpened:
			opened[e.ID] = true
			if _, known := f.scales[e.Asset]; !known && !defined[e.Asset] {
				needAssets[e.Asset] = true
			}
		default:
			f.moves = domain.AppendMovements(f.moves[:0], e)
			for i := range f.moves {
				if a := f.moves[i].Account; !opened[a] && f.heads.Get(a) == nil {
					moved[a] = true
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(moved)), slices.Collect(maps.Keys(needAssets))
}

// load reads what the batch continues from.
func (f *movementFold) load(ctx context.Context, tx pgx.Tx, ledger string, events []domain.Event) error {
	if f.ledgerNo == 0 { // a fresh cache; the clock statement checks a kept one
		no, err := ledgerNo(ctx, tx, "movement_ledgers", ledger)
		if err != nil {
			return err
		}
		f.ledgerNo = no
	}
	accounts, needAssets := f.missing(events)
	b := &pgx.Batch{}
	if len(accounts) > 0 {
		// Each account's totals are those of its last line: one backward
		// step on the primary key. (Keeping them in movement_heads cost an
		// update of every moved account's row in every batch: a third of
		// the projector's time.)
		b.Queue(`SELECT h.account, h.asset, h.scale, h.normal_balance,
				coalesce(l.debits_posted, 0)::text, coalesce(l.credits_posted, 0)::text,
				coalesce(l.debits_pending, 0)::text, coalesce(l.credits_pending, 0)::text,
				coalesce(l.position, h.opened_position), h.opened_position
			FROM movement_heads h
			LEFT JOIN LATERAL (
				SELECT m.debits_posted, m.credits_posted, m.debits_pending, m.credits_pending, m.position
				FROM movements m WHERE m.ledger_no = h.ledger_no AND m.account_no = h.opened_position
				ORDER BY m.position DESC, m.seq DESC LIMIT 1) l ON true
			WHERE h.ledger = $1 AND h.account = ANY($2)`, ledger, accounts).Query(f.scanHeads)
	}
	if len(needAssets) > 0 {
		b.Queue(`SELECT code, scale FROM movement_assets WHERE ledger = $1 AND code = ANY($2)`,
			ledger, needAssets).Query(f.scanScales)
	}
	if !f.clockKnown {
		// Points written before max_at have recorded_at exact.
		b.Queue(`SELECT max(recorded_at), max(coalesce(max_at, recorded_at)) FROM movement_clock WHERE ledger = $1`,
			ledger).QueryRow(func(row pgx.Row) error {
			var at, exact *time.Time
			if err := row.Scan(&at, &exact); err != nil {
				return err
			}
			if at != nil {
				f.clockAt, f.clockMax = at.UTC(), exact.UTC()
			}
			f.clockKnown = true
			return nil
		})
	}
	if b.Len() == 0 {
		return nil
	}
	known := f.heads.Len()
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("load %d movement heads: %w", len(accounts), err)
	}
	if loaded := f.heads.Len() - known; loaded != len(accounts) {
		// Every account a transfer names was opened by an earlier event.
		return fmt.Errorf("loaded %d of %d movement heads: the read model is missing accounts", loaded, len(accounts))
	}
	return nil
}

func (f *movementFold) scanHeads(rows pgx.Rows) error {
	var (
		account, asset, normal string
		scale                  int16
		totals                 [4]string
		position, opened       int64
	)
	_, err := pgx.ForEachRow(rows, []any{&account, &asset, &scale, &normal, &totals[0], &totals[1], &totals[2], &totals[3],
		&position, &opened}, func() error {
		var side domain.Side
		if err := side.UnmarshalText([]byte(normal)); err != nil {
			return fmt.Errorf("head of %s: %w", account, err)
		}
		var sums [4]domain.Units
		for i := range sums {
			u, err := unitsAt(totals[i], uint8(scale))
			if err != nil {
				return fmt.Errorf("head of %s: %w", account, err)
			}
			sums[i] = u
		}
		// A row twice is caught by the count in load: the table still holds
		// one head.
		h, _ := f.heads.Add(account, asset)
		// The next movement is at a later position: its lines start at 0.
		h.scale, h.normal, h.position, h.opened, h.seq = uint8(scale), side, uint64(position), uint64(opened), 0
		h.dp, h.cp, h.dq, h.cq = sums[0], sums[1], sums[2], sums[3]
		return nil
	})
	return err
}

func (f *movementFold) scanScales(rows pgx.Rows) error {
	var (
		code  string
		scale int16
	)
	_, err := pgx.ForEachRow(rows, []any{&code, &scale}, func() error {
		f.scales[code] = uint8(scale)
		return nil
	})
	return err
}

// unitsAt parses a NUMERIC's text in minor units of scale.
func unitsAt(s string, scale uint8) (domain.Units, error) {
	d, err := domain.ParseDecimal(s)
	if err != nil {
		return domain.Units{}, err
	}
	return d.Units(scale)
}

// apply folds one event: its lines are its movements (domain.AppendMovements).
func (f *movementFold) apply(rec *eventstore.Record, e domain.Event) error {
	f.tick(rec)
	f.accounts.add(e, rec.Position, rec.RecordedAt)
	switch e := e.(type) {
	case domain.AssetDefined:
		f.scales[e.Code] = e.Scale
		f.assets = append(f.assets, e)
		return nil
	case domain.AccountOpened:
		scale, ok := f.scales[e.Asset]
		if !ok {
			return fmt.Errorf("account %s of undefined asset %s", e.ID, e.Asset)
		}
		h, added := f.heads.Add(e.ID, e.Asset)
		if !added {
			return fmt.Errorf("account %s opened twice", e.ID)
		}
		h.scale, h.normal, h.position, h.opened = scale, e.Normal, rec.Position, rec.Position
		f.opened = append(f.opened, e.ID)
		return nil
	}
	h, ok := domain.HeaderOf(e)
	if !ok {
		return nil // moves no balance
	}
	ev := &movementEvent{kind: rec.Type, transferID: h.ID, reference: h.Reference, metadata: h.Metadata,
		effectiveAt: h.Effective(rec.RecordedAt), recordedAt: rec.RecordedAt}
	f.moves = domain.AppendMovements(f.moves[:0], e)
	for i := range f.moves {
		if err := f.line(rec.Position, ev, &f.moves[i]); err != nil {
			return err
		}
	}
	return nil
}

// ClockGrain is the grain of the ledger's clock: a point (recorded_at,
// max_at, position) says the running maximum of the recorded times at
// position is max_at, within the grain that starts at recorded_at, and
// position is the grain's last. A point per distinct recorded time cost
// single transfers, each recorded at its own microsecond, a row and 200
// bytes of WAL each; a look-up starts from the last point at or before the
// time asked and reads the log's recorded times after it, within a grain
// (queries.clockPosition). The points do not depend on how the log is cut
// into batches.
const ClockGrain = time.Millisecond

// tick advances the ledger's clock to rec.
func (f *movementFold) tick(rec *eventstore.Record) {
	if rec.RecordedAt.After(f.clockMax) {
		f.clockMax = rec.RecordedAt.UTC()
	}
	if at := f.clockMax.Truncate(ClockGrain); at.After(f.clockAt) {
		f.clockAt = at
	}
	if n := len(f.ticks); n > 0 && f.ticks[n-1].at.Equal(f.clockAt) {
		f.ticks[n-1].position, f.ticks[n-1].max = rec.Position, f.clockMax
		return
	}
	f.ticks = append(f.ticks, movementTick{at: f.clockAt, max: f.clockMax, position: rec.Position})
}

// line adds the line of one movement: the movement's total of its account
// moves by its signed amount. A post's release comes before its posting, so
// the posted line shows the available balance after the whole posting.
func (f *movementFold) line(pos uint64, ev *movementEvent, m *domain.Movement) error {
	h := f.heads.Get(m.Account)
	if h == nil {
		return fmt.Errorf("movement of unknown account %s: the read model is missing accounts", m.Account)
	}
	if asset := f.heads.Asset(h); asset != m.Asset || h.scale != m.Scale {
		return fmt.Errorf("amount of %s at scale %d on account %s of %s at scale %d: the read model is corrupt",
			m.Asset, m.Scale, m.Account, asset, h.scale)
	}
	debit := m.Side == domain.SideDebit
	var field *domain.Units
	switch {
	case debit && !m.Pending:
		field = &h.dp
	case !debit && !m.Pending:
		field = &h.cp
	case debit:
		field = &h.dq
	default:
		field = &h.cq
	}
	next, ok := field.CheckedAdd(m.Amount)
	if !ok || next.Sign() < 0 {
		return fmt.Errorf("account %s: a total goes out of range: the read model is corrupt", m.Account)
	}
	*field = next
	if h.position != pos {
		h.position, h.seq = pos, 0
	}
	f.lines = append(f.lines, movementLine{accountNo: h.opened, account: m.Account, asset: m.Asset, normal: h.normal, position: pos, seq: int(h.seq), postingIndex: m.Posting,
		debit: debit, pending: m.Pending, counter: m.Counterparty, amount: m.Amount, scale: m.Scale,
		dp: h.dp, cp: h.cp, dq: h.dq, cq: h.cq, event: ev})
	h.seq++
	return nil
}

// movementColumns are the columns of movements, in copyLines' order.
var movementColumns = []string{"ledger_no", "account_no", "position", "seq", "posting_index", "side", "pending", "kind",
	"transfer_id", "counter_accounts", "amount", "debits_posted", "credits_posted", "debits_pending", "credits_pending",
	"effective_at", "recorded_at", "reference", "metadata"}

// keyOrder returns the indexes of lines in the order of their primary key
// (account, position, seq). Copied in that order, a batch's entries go into
// the key's index leaf after leaf, an account's together, instead of at a
// random leaf each: the larger the batch, the more entries share a leaf. A
// rebuild's batches of 16,000 lines took 10-20 % less time to insert, the
// live projection's of 2,000 about 3 % (scripts/perf/copy-order.sql,
// docs/perf.md "Session 17").
func keyOrder(lines []movementLine) []int32 {
	order := make([]int32, len(lines))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		x, y := &lines[a], &lines[b]
		return cmp.Or(cmp.Compare(x.accountNo, y.accountNo), cmp.Compare(x.position, y.position), cmp.Compare(x.seq, y.seq))
	})
	return order
}

// movementLineBytes is about what a statement line takes in a binary COPY
// (a line without reference or metadata: 250-270 bytes).
const movementLineBytes = 288

// copyLines writes lines as movements rows, in movementColumns' order, in
// the order order gives.
func copyLines(w *copyRows, ledgerNo int32, lines []movementLine, order []int32) {
	for _, i := range order {
		l := &lines[i]
		w.row(len(movementColumns))
		w.int4(ledgerNo)
		w.int8(int64(l.accountNo))
		w.int8(int64(l.position))
		w.int2(int16(l.seq))
		w.int4(int32(l.postingIndex))
		if l.debit {
			w.text("debit")
		} else {
			w.text("credit")
		}
		w.bool(l.pending)
		w.text(l.event.kind)
		w.text(l.event.transferID)
		w.textArray(l.counter)
		w.numeric(l.amount, l.scale)
		w.numeric(l.dp, l.scale)
		w.numeric(l.cp, l.scale)
		w.numeric(l.dq, l.scale)
		w.numeric(l.cq, l.scale)
		w.timestamptz(l.event.effectiveAt)
		w.timestamptz(l.event.recordedAt)
		w.textOrNull(l.event.reference)
		if len(l.event.metadata) > 0 {
			w.jsonbMap(l.event.metadata)
		} else {
			w.null()
		}
	}
}

// numericOf is u minor units at scale as a NUMERIC that prints with exactly
// scale fractional digits ("0.00", not "0").
func numericOf(u domain.Units, scale uint8) pgtype.Numeric {
	n, ok := new(big.Int).SetString(u.String(), 10)
	if !ok {
		panic("projections: units print as a non-integer: " + u.String())
	}
	return pgtype.Numeric{Int: n, Exp: -int32(scale), Valid: true}
}
