package projections

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Limits of the reconciliation projector.
const (
	// reconCachedItemsMax bounds the open items a ledger's cache holds
	// between batches; beyond it the books are reloaded batch by batch.
	reconCachedItemsMax = 4 << 20
	// upstreamWaitMax bounds how long a batch that enables an account waits
	// for the movements projection to reach it.
	upstreamWaitMax = 5 * time.Second
)

// errUpstreamBehind means the movements projection has not reached the
// position where an account's reconciliation starts: the runner retries.
var errUpstreamBehind = errors.New("the movements projection is behind")

// Reconciliation matches reconciled accounts' external lines to their ledger
// movements, and keeps the daily journal.
//
// An account is reconciled from its first statement line or rules on. Its
// movements before that are read, once, from the movements projection (which
// must have reached that position); later ones come from the events. Every
// new item is tried, in position order, against the open items of the other
// side by the account's rules: the matches are a function of the log alone.
//
// Between batches it keeps each ledger's open items in memory. The cache is
// valid only for a batch that starts right after the last one it applied;
// anything else (a rolled-back batch, another runner) reloads it.
type Reconciliation struct {
	mu     sync.Mutex
	caches map[string]*reconCache
}

// NewReconciliation returns the projector.
func NewReconciliation() *Reconciliation {
	return &Reconciliation{caches: map[string]*reconCache{}}
}

type reconCache struct {
	// generation is the read model's (recon_generations): a rebuild swaps
	// in rows of another generation, which the cache does not describe.
	generation string
	through    uint64          // the last position applied
	accounts   map[string]bool // every reconciled account of the ledger
	books      map[string]*reconBook
}

func (*Reconciliation) Name() string { return "reconciliation" }
func (*Reconciliation) Version() int { return 1 }

// Tables lists the projection's tables.
func (*Reconciliation) Tables() []string {
	return []string{"recon_accounts", "recon_lines", "recon_movements", "recon_matches", "recon_journal", "recon_generations"}
}

// take removes and returns the ledger's cache if it continues at from.
func (p *Reconciliation) take(ledger string, from uint64) *reconCache {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.caches[ledger]
	delete(p.caches, ledger)
	if c == nil || c.through+1 != from {
		return nil
	}
	return c
}

func (p *Reconciliation) keep(ledger string, c *reconCache) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.caches[ledger] = c
}

// Apply applies recs within tx.
//
// Errors: a malformed record; errUpstreamBehind; an item or match the read
// model lacks (it is corrupt); database errors.
func (p *Reconciliation) Apply(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record) error {
	return decodeAndApply(ctx, tx, ledger, recs, p)
}

// applyEvents is Apply of records whose events are decoded (eventsApplier).
func (p *Reconciliation) applyEvents(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record, events []domain.Event) error {
	if len(recs) == 0 {
		return nil
	}
	generation, err := reconGeneration(ctx, tx, ledger)
	if err != nil {
		return err
	}
	c := p.take(ledger, recs[0].Position)
	if c == nil || c.generation != generation {
		accounts, err := loadReconAccounts(ctx, tx, ledger)
		if err != nil {
			return err
		}
		c = &reconCache{generation: generation, accounts: accounts, books: map[string]*reconBook{}}
	}
	f := &reconFold{tx: tx, ledger: ledger, cache: c, journal: map[journalKey]*journalSum{}, touched: map[string]*reconBook{}}
	for i := range recs {
		if err := f.apply(ctx, recs[i].Position, events[i]); err != nil {
			return fmt.Errorf("record %d: %w", recs[i].Position, err)
		}
	}
	if err := f.write(ctx); err != nil {
		return err
	}
	cached := 0
	for _, b := range c.books {
		cached += len(b.Items)
	}
	if cached > reconCachedItemsMax {
		c.books = map[string]*reconBook{}
	}
	c.through = recs[len(recs)-1].Position
	p.keep(ledger, c)
	return nil
}

// reconGeneration returns the generation of ledger's reconciliation rows,
// starting one if there is none: a read per batch, a write once.
func reconGeneration(ctx context.Context, tx pgx.Tx, ledger string) (string, error) {
	var generation string
	err := tx.QueryRow(ctx, `SELECT generation FROM recon_generations WHERE ledger = $1`, ledger).Scan(&generation)
	if err == nil {
		return generation, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("reconciliation generation: %w", err)
	}
	var g [16]byte
	_, _ = rand.Read(g[:]) // never fails (crypto/rand)
	generation = hex.EncodeToString(g[:])
	// Another runner of the ledger (another ledgerd) may start it first;
	// its batch or this one then fails on the checkpoint, and the rows
	// carry the generation that committed.
	err = tx.QueryRow(ctx, `WITH ins AS (INSERT INTO recon_generations (ledger, generation) VALUES ($1, $2)
			ON CONFLICT (ledger) DO NOTHING RETURNING generation)
		SELECT generation FROM ins UNION ALL SELECT generation FROM recon_generations WHERE ledger = $1`,
		ledger, generation).Scan(&generation)
	if err != nil {
		return "", fmt.Errorf("reconciliation generation: %w", err)
	}
	return generation, nil
}

func loadReconAccounts(ctx context.Context, tx pgx.Tx, ledger string) (map[string]bool, error) {
	rows, err := tx.Query(ctx, `SELECT account FROM recon_accounts WHERE ledger = $1`, ledger)
	if err != nil {
		return nil, fmt.Errorf("reconciled accounts: %w", err)
	}
	accounts := map[string]bool{}
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("reconciled accounts: %w", err)
		}
		accounts[a] = true
	}
	return accounts, rows.Err()
}

// reconFold is one batch being applied.
type reconFold struct {
	tx      pgx.Tx
	ledger  string
	cache   *reconCache
	journal map[journalKey]*journalSum
	touched map[string]*reconBook
	moves   []domain.Movement // one event's, reused
}

type journalKey struct {
	asset string
	day   int32
}

type journalSum struct {
	postings int64
	amount   domain.Units
	scale    uint8
}

func (f *reconFold) apply(ctx context.Context, pos uint64, e domain.Event) error {
	switch e := e.(type) {
	case domain.StatementImported:
		b, err := f.enable(ctx, e.Account, pos)
		if err != nil {
			return err
		}
		amount := e.Amount.Units
		if e.Direction == domain.SideDebit {
			amount = amount.Neg()
		}
		day, err := dayOf(e.ValueDate)
		if err != nil {
			return err
		}
		b.arrive(&reconItem{Side: sideLine, Source: e.Source, ExternalID: e.ExternalID, Position: pos, Amount: amount,
			Day: day, Reference: e.Reference, Description: e.Description}, pos)
	case domain.MatchingRulesSet:
		b, err := f.enable(ctx, e.Account, pos)
		if err != nil {
			return err
		}
		b.rules, b.rulesChanged = e.Rules, true
	case domain.MatchedManually:
		return f.manualMatch(ctx, pos, e)
	case domain.Unmatched:
		return f.unmatch(ctx, pos, e)
	default:
		if h, ok := domain.HeaderOf(e); ok {
			f.moves = domain.AppendMovements(f.moves[:0], e)
			return f.movements(ctx, pos, h, f.moves)
		}
	}
	return nil
}

// movements adds an event's posted movements to the journal (one posting
// each), and to the books of the reconciled accounts they move. Holds and
// releases are not movements of money.
func (f *reconFold) movements(ctx context.Context, pos uint64, h domain.TransferHeader, moves []domain.Movement) error {
	day := unixDay(h.EffectiveAt)
	for i := range moves {
		m := &moves[i]
		if m.Pending || m.Amount.IsZero() {
			continue // a hold, a release, a reversal of nothing of a posting: not a movement
		}
		if m.Side == domain.SideDebit { // a posting's first movement: count it once
			k := journalKey{asset: m.Asset, day: day}
			s := f.journal[k]
			if s == nil {
				s = &journalSum{scale: m.Scale}
				f.journal[k] = s
			}
			s.postings++
			s.amount = s.amount.Add(m.Amount)
		}
		if !f.cache.accounts[m.Account] {
			continue
		}
		b, err := f.book(ctx, m.Account)
		if err != nil {
			return err
		}
		amount := m.Amount
		if m.Side != b.normal {
			amount = amount.Neg()
		}
		b.arrive(&reconItem{Side: sideMovement, TransferID: h.ID, PostingIndex: m.Posting, Position: pos, Amount: amount,
			Day: day, Reference: h.Reference}, pos)
	}
	return nil
}

func (f *reconFold) manualMatch(ctx context.Context, pos uint64, e domain.MatchedManually) error {
	b, err := f.enable(ctx, e.Account, pos)
	if err != nil {
		return err
	}
	items := make([]*reconItem, 0, len(e.Lines)+len(e.Movements))
	for _, l := range e.Lines {
		it, err := f.item(ctx, b, itemKey{Side: sideLine, A: l.Source, B: l.ExternalID})
		if err != nil {
			return err
		}
		items = append(items, it)
	}
	for _, m := range e.Movements {
		it, err := f.item(ctx, b, itemKey{Side: sideMovement, A: m.TransferID, PostingIx: int(m.PostingIndex)})
		if nothing, nerr := f.postedNothing(ctx, err, m); nerr != nil {
			return nerr
		} else if nothing {
			continue
		}
		items = append(items, it)
	}
	for _, it := range items {
		if it.MatchID != "" {
			m, err := f.match(ctx, b, it.MatchID)
			if err != nil {
				return err
			}
			b.Dissolve(m, false)
		}
	}
	for _, it := range items {
		it.ManualOnly, it.Changed = false, true
	}
	m := b.Match(pos, domain.RuleManual, e.ID, items)
	m.Reason = e.Reason
	return nil
}

// unmatch dissolves an item's match. The writer accepts an unmatch of any
// movement of the account, reconciled or not: one not yet reconciled is
// reconciled from here on, like a first line would.
func (f *reconFold) unmatch(ctx context.Context, pos uint64, e domain.Unmatched) error {
	b, err := f.enable(ctx, e.Account, pos)
	if err != nil {
		return err
	}
	k := itemKey{Side: sideMovement}
	if e.Line != nil {
		k = itemKey{Side: sideLine, A: e.Line.Source, B: e.Line.ExternalID}
	} else {
		k.A, k.PostingIx = e.Movement.TransferID, int(e.Movement.PostingIndex)
	}
	it, err := f.item(ctx, b, k)
	if e.Movement != nil {
		if nothing, nerr := f.postedNothing(ctx, err, *e.Movement); nerr != nil || nothing {
			return nerr
		}
	} else if err != nil {
		return err
	}
	if it.MatchID == "" {
		it.ManualOnly, it.Changed = true, true
		return nil
	}
	m, err := f.match(ctx, b, it.MatchID)
	if err != nil {
		return err
	}
	b.Dissolve(m, true)
	return nil
}

// book returns a reconciled account's book, loading it on first use.
func (f *reconFold) book(ctx context.Context, account string) (*reconBook, error) {
	if b := f.cache.books[account]; b != nil {
		f.touched[account] = b
		return b, nil
	}
	b := newReconBook(account)
	var rules []byte
	var normal string
	var scale int16
	var enabled int64
	err := f.tx.QueryRow(ctx, `SELECT asset, scale, normal_balance, rules, enabled_position FROM recon_accounts
		WHERE ledger = $1 AND account = $2`, f.ledger, account).Scan(&b.asset, &scale, &normal, &rules, &enabled)
	if err != nil {
		return nil, fmt.Errorf("reconciled account %s: %w", account, err)
	}
	b.scale, b.enabledAt, b.stored = uint8(scale), uint64(enabled), true
	if err := b.normal.UnmarshalText([]byte(normal)); err != nil {
		return nil, fmt.Errorf("reconciled account %s: %w", account, err)
	}
	if rules != nil {
		if err := json.Unmarshal(rules, &b.rules); err != nil {
			return nil, fmt.Errorf("reconciled account %s rules: %w", account, err)
		}
	}
	for _, side := range []domain.ReconSide{sideLine, sideMovement} {
		items, err := f.loadItems(ctx, b, side, `match_id IS NULL AND NOT manual_only`, nil)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			b.Track(it)
		}
	}
	f.cache.books[account] = b
	f.touched[account] = b
	return b, nil
}

// enable returns the book of account, reconciling it from pos on if it was
// not: its earlier movements come from the movements projection.
func (f *reconFold) enable(ctx context.Context, account string, pos uint64) (*reconBook, error) {
	if f.cache.accounts[account] {
		return f.book(ctx, account)
	}
	live := strings.TrimSuffix(f.ledger, ShadowSuffix)
	if err := f.awaitMovements(ctx, live, pos-1); err != nil {
		return nil, err
	}
	b := newReconBook(account)
	var normal string
	var scale int16
	err := f.tx.QueryRow(ctx, `SELECT asset, scale, normal_balance FROM movement_heads WHERE ledger = $1 AND account = $2`,
		live, account).Scan(&b.asset, &scale, &normal)
	if err != nil {
		return nil, fmt.Errorf("account %s in the movements projection: %w", account, err)
	}
	b.scale, b.enabledAt = uint8(scale), pos
	if err := b.normal.UnmarshalText([]byte(normal)); err != nil {
		return nil, fmt.Errorf("account %s: %w", account, err)
	}
	// The lines' numbers are read with them, in one snapshot: a movements
	// rebuild's swap committing between two statements (this transaction
	// is READ COMMITTED, and the group goes on without the movements
	// member while a swap holds its checkpoint) would leave numbers whose
	// lines it deleted.
	rows, err := f.tx.Query(ctx, `SELECT m.transfer_id, m.posting_index, m.position, m.side, m.amount::text,
			(m.effective_at AT TIME ZONE 'UTC')::date, coalesce(m.reference, '')
		FROM movement_heads h JOIN movements m ON m.ledger_no = h.ledger_no AND m.account_no = h.opened_position
		WHERE h.ledger = $1 AND h.account = $2 AND m.position < $3 AND NOT m.pending AND m.amount <> 0
		ORDER BY m.position, m.seq`, live, account, int64(pos))
	if err != nil {
		return nil, fmt.Errorf("movements of %s before %d: %w", account, pos, err)
	}
	var earlier []*reconItem
	for rows.Next() {
		it := &reconItem{Side: sideMovement}
		var position int64
		var side, amount string
		var date time.Time
		if err := rows.Scan(&it.TransferID, &it.PostingIndex, &position, &side, &amount, &date, &it.Reference); err != nil {
			return nil, fmt.Errorf("movements of %s: %w", account, err)
		}
		it.Position, it.Day = uint64(position), unixDay(date)
		if it.Amount, err = unitsAt(amount, b.scale); err != nil {
			return nil, fmt.Errorf("movement %s of %s: %w", it.TransferID, account, err)
		}
		if (side == "debit") != (b.normal == domain.SideDebit) {
			it.Amount = it.Amount.Neg()
		}
		earlier = append(earlier, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("movements of %s: %w", account, err)
	}
	for _, it := range earlier {
		b.arrive(it, it.Position)
	}
	f.cache.accounts[account] = true
	f.cache.books[account] = b
	f.touched[account] = b
	return b, nil
}

// awaitMovements waits, bounded, until the movements projection of ledger
// has applied pos.
func (f *reconFold) awaitMovements(ctx context.Context, ledger string, pos uint64) error {
	deadline := time.Now().Add(upstreamWaitMax)
	for {
		var at int64
		err := f.tx.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE ledger = $1 AND projection = $2`,
			ledger, movementsName).Scan(&at)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("movements checkpoint: %w", err)
		}
		if uint64(at) >= pos {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("at %d of %d: %w", at, pos, errUpstreamBehind)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// item returns an item of b, loading it if the book does not hold it.
func (f *reconFold) item(ctx context.Context, b *reconBook, k itemKey) (*reconItem, error) {
	if it := b.Items[k]; it != nil {
		return it, nil
	}
	var where string
	var args []any
	if k.Side == sideLine {
		where, args = `source = $3 AND external_id = $4`, []any{k.A, k.B}
	} else {
		where, args = `transfer_id = $3 AND posting_index = $4`, []any{k.A, k.PostingIx}
	}
	items, err := f.loadItems(ctx, b, k.Side, where, args)
	if err != nil {
		return nil, err
	}
	if len(items) != 1 {
		return nil, fmt.Errorf("account %s has no item %v in the read model: %w", b.account, k, errNoItem)
	}
	b.Items[k] = items[0]
	return items[0], nil
}

// errNoItem: the read model has no item for a line or movement an event
// names.
var errNoItem = errors.New("no such item")

// postedNothing sorts out err, item's error for movement m: true when m is
// a posting that moved nothing (a partial reversal's posting reversed by
// 0), which has no item and is passed over. A writer before the domain
// refused them let a match or an unmatch name one, and the projection
// stopped on it for good. Only then is the log read (the reversal by its
// id); any other missing item stays an error.
func (f *reconFold) postedNothing(ctx context.Context, err error, m domain.MovementRef) (bool, error) {
	if !errors.Is(err, errNoItem) {
		return false, err
	}
	var (
		typ     string
		version int
		payload []byte
	)
	qerr := f.tx.QueryRow(ctx, `SELECT type, schema_version, payload FROM events
		WHERE ledger = $1 AND command_id = $2 AND type = $3 LIMIT 1`,
		logLedgerOf(f.ledger), m.TransferID, domain.TypeTransferReversed).Scan(&typ, &version, &payload)
	if errors.Is(qerr, pgx.ErrNoRows) {
		return false, err
	}
	if qerr != nil {
		return false, fmt.Errorf("reversal %s in the log: %w", m.TransferID, qerr)
	}
	e, derr := domain.UnmarshalEvent(typ, version, payload)
	if derr != nil {
		return false, fmt.Errorf("reversal %s in the log: %w", m.TransferID, derr)
	}
	r, ok := e.(domain.TransferReversed)
	i := int(m.PostingIndex)
	if !ok || r.ID != m.TransferID || i >= len(r.Postings) || !r.Postings[i].Amount.Units.IsZero() {
		return false, err
	}
	return true, nil
}

// match returns a match of b, loading it with its items if the book does not
// hold it.
func (f *reconFold) match(ctx context.Context, b *reconBook, id string) (*reconMatch, error) {
	if m := b.Matches[id]; m != nil {
		return m, nil
	}
	m := &reconMatch{ID: id}
	b.storedMatches[m] = true
	var position int64
	err := f.tx.QueryRow(ctx, `SELECT rule, reason, position FROM recon_matches WHERE ledger = $1 AND account = $2 AND match_id = $3`,
		f.ledger, b.account, id).Scan(&m.Rule, &m.Reason, &position)
	if err != nil {
		return nil, fmt.Errorf("match %s of %s: %w", id, b.account, err)
	}
	m.Position = uint64(position)
	for _, side := range []domain.ReconSide{sideLine, sideMovement} {
		items, err := f.loadItems(ctx, b, side, `match_id = $3`, []any{id})
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if held := b.Items[it.Key()]; held != nil {
				it = held
			} else {
				b.Items[it.Key()] = it
			}
			m.Items = append(m.Items, it)
		}
	}
	b.Matches[id] = m
	return m, nil
}

// loadItems reads items of one side of b's account; where may use $3 and on.
func (f *reconFold) loadItems(ctx context.Context, b *reconBook, side domain.ReconSide, where string, args []any) ([]*reconItem, error) {
	var q string
	if side == sideLine {
		q = `SELECT source, external_id, 0, position, amount::text, value_date, reference, description, coalesce(match_id, ''), manual_only
			FROM recon_lines WHERE ledger = $1 AND account = $2 AND ` + where + ` ORDER BY position`
	} else {
		q = `SELECT '', transfer_id, posting_index, position, amount::text, effective_date, reference, '', coalesce(match_id, ''), manual_only
			FROM recon_movements WHERE ledger = $1 AND account = $2 AND ` + where + ` ORDER BY position, posting_index`
	}
	rows, err := f.tx.Query(ctx, q, append([]any{f.ledger, b.account}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("items of %s: %w", b.account, err)
	}
	defer rows.Close()
	var out []*reconItem
	for rows.Next() {
		it := &reconItem{Side: side}
		var id, amount string
		var position int64
		var date time.Time
		if err := rows.Scan(&it.Source, &id, &it.PostingIndex, &position, &amount, &date, &it.Reference, &it.Description,
			&it.MatchID, &it.ManualOnly); err != nil {
			return nil, fmt.Errorf("items of %s: %w", b.account, err)
		}
		if side == sideLine {
			it.ExternalID = id
		} else {
			it.TransferID = id
		}
		it.Position, it.Day = uint64(position), unixDay(date)
		if it.Amount, err = unitsAt(amount, b.scale); err != nil {
			return nil, fmt.Errorf("item of %s: %w", b.account, err)
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// dayOf is a YYYY-MM-DD date as days since 1970-01-01.
func dayOf(date string) (int32, error) {
	t, err := domain.ParseValueDate(date)
	if err != nil {
		return 0, err
	}
	return unixDay(t), nil
}

// unixDay is t's UTC date as days since 1970-01-01, rounded down: a time
// before 1970 is on the day it falls in, not the next (division rounds
// toward zero).
func unixDay(t time.Time) int32 {
	const day = 24 * 60 * 60
	s := t.Unix()
	d := s / day
	if s%day < 0 {
		d--
	}
	return int32(d)
}

// dateOf is the inverse of dayOf, as a Postgres date.
func dateOf(day int32) time.Time { return time.Unix(int64(day)*86400, 0).UTC() }
