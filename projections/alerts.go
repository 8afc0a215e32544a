package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Alerts projects the alerts of after-commit monitoring rules: each batch's
// events go through the ledger's domain.Evaluator, whose alerts become rows
// (migration 0017). The evaluator is a fold of the whole log, so the
// projection is a function of the log: a rebuild writes the same rows.
//
// A ledger that never defined a rule costs a look at each record's type and
// nothing else: no evaluator, no row. The first RuleDefined (or a restart
// of a ledger that has rules: alert_rules says so) builds the evaluator by
// folding the log from its start, read in pages within the batch's
// transaction; it is then kept in memory between batches, like the
// reconciliation's books, and dropped on any gap (another runner, a
// rolled-back batch) to be built again.
type Alerts struct {
	mu     sync.Mutex
	caches map[string]*alertCache
}

type alertCache struct {
	through uint64
	ev      *domain.Evaluator // nil: the ledger has no rule
}

// alertLogPage is how many records a build of the evaluator reads at once.
const alertLogPage = 10_000

// NewAlerts returns the projector.
func NewAlerts() *Alerts { return &Alerts{caches: map[string]*alertCache{}} }

func (*Alerts) Name() string { return "alerts" }
func (*Alerts) Version() int { return 2 }

// Tables lists the projection's tables.
func (*Alerts) Tables() []string { return []string{"alerts", "alert_rules"} }

func (p *Alerts) take(key string, from uint64) *alertCache {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.caches[key]
	delete(p.caches, key)
	if c == nil || c.through+1 != from {
		return nil
	}
	return c
}

func (p *Alerts) keep(key string, c *alertCache) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.caches[key] = c
}

// Apply applies recs within tx.
//
// Errors: a malformed record; database errors.
func (p *Alerts) Apply(ctx context.Context, tx pgx.Tx, key string, recs []eventstore.Record) error {
	if len(recs) == 0 {
		return nil
	}
	ledger := logLedgerOf(key)
	c := p.take(key, recs[0].Position)
	if c == nil {
		c = &alertCache{}
		var has bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM alert_rules WHERE ledger = $1)`, key).Scan(&has); err != nil {
			return fmt.Errorf("alerts of %s: rules: %w", ledger, err)
		}
		if has {
			ev, err := buildEvaluator(ctx, tx, ledger, nil, recs[0].Position-1)
			if err != nil {
				return err
			}
			c.ev = ev
		}
	}
	var (
		rows [][]any
		// byID finds this batch's alerts: an AlertRaised of one of them
		// (a rebuild meets both in one batch) sets its row's raised;
		// others are updated after the rows are written (raisedLater).
		byID        = map[string]int{}
		raisedLater raisedMarks
	)
	for i := range recs {
		r := &recs[i]
		if c.ev == nil {
			if r.Type != domain.TypeRuleDefined {
				continue
			}
			ev, err := buildEvaluator(ctx, tx, ledger, nil, r.Position-1)
			if err != nil {
				return err
			}
			c.ev = ev
		}
		e, err := domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload)
		if err != nil {
			return fmt.Errorf("record %d: %w", r.Position, err)
		}
		for _, a := range c.ev.Apply(r.Position, r.RecordedAt, e) {
			row, err := alertRow(key, &a)
			if err != nil {
				return err
			}
			byID[a.ID] = len(rows)
			rows = append(rows, row)
		}
		if raised, ok := e.(domain.AlertRaised); ok {
			// By its key: a log imported under another name raises its
			// alerts under the source's (docs/monitoring.md).
			id := ledger + ":" + domain.AlertKey(raised.ID)
			if k, ok := byID[id]; ok {
				rows[k][alertRaisedColumn] = int64(r.Position)
			} else {
				raisedLater.add(raised.Position, id, r.Position)
			}
		}
		if d, ok := e.(domain.RuleDefined); ok {
			if _, err := tx.Exec(ctx, `INSERT INTO alert_rules (ledger, rule_id, version, position) VALUES ($1, $2, $3, $4)
				ON CONFLICT (ledger, rule_id) DO UPDATE SET version = excluded.version, position = excluded.position`,
				key, d.Rule.ID, int64(d.Version), int64(r.Position)); err != nil {
				return fmt.Errorf("alerts of %s: rule %s: %w", ledger, d.Rule.ID, err)
			}
		}
	}
	if len(rows) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"alerts"}, []string{"ledger", "position", "id", "rule_id", "rule_version",
			"transfer_id", "account", "counterparties", "asset", "figures", "freezes", "recorded_at", "effective_at", "hold_account",
			"raised"}, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("alerts of %s: write: %w", ledger, err)
		}
	}
	if len(raisedLater.ids) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE alerts SET raised = u.at
			FROM unnest($2::bigint[], $3::text[], $4::bigint[]) AS u(position, id, at)
			WHERE alerts.ledger = $1 AND alerts.position = u.position AND alerts.id = u.id`,
			key, raisedLater.positions, raisedLater.ids, raisedLater.at); err != nil {
			return fmt.Errorf("alerts of %s: raised: %w", ledger, err)
		}
	}
	c.through = recs[len(recs)-1].Position
	p.keep(key, c)
	return nil
}

func alertRow(key string, a *domain.Alert) ([]any, error) {
	figures, err := json.Marshal(a.Figures)
	if err != nil {
		return nil, fmt.Errorf("alert %s: %w", a.ID, err)
	}
	var effective *time.Time
	if !a.EffectiveAt.IsZero() {
		effective = &a.EffectiveAt
	}
	cps := a.Counterparties
	if cps == nil {
		cps = []string{}
	}
	return []any{key, int64(a.Position), a.ID, a.RuleID, int64(a.RuleVersion), a.TransferID, a.Account, cps, a.Asset,
		string(figures), a.Freeze, a.RecordedAt, effective, a.HoldAccount, nil}, nil
}

// alertRaisedColumn is the index of raised in alertRow's row: the position
// of the alert's AlertRaised, nil until then.
const alertRaisedColumn = 14

// raisedMarks are the AlertRaised events of a batch whose alerts an earlier
// batch wrote: each alert's position and id, and where it was raised.
type raisedMarks struct {
	positions, at []int64
	ids           []string
}

func (m *raisedMarks) add(position uint64, id string, at uint64) {
	m.positions, m.ids, m.at = append(m.positions, int64(position)), append(m.ids, id), append(m.at, int64(at))
}

// LogReader reads a ledger's records from the log in position order.
type LogReader interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// buildEvaluator folds ledger's log from its start through position
// through into an evaluator (of only, when not nil).
//
// Errors: database errors; a record that does not decode.
func buildEvaluator(ctx context.Context, db LogReader, ledger string, only *domain.Rule, through uint64) (*domain.Evaluator, error) {
	ev := domain.NewEvaluator(ledger, only)
	if through == 0 {
		return ev, nil // FoldLog's 0 is the end: here, nothing to fold
	}
	_, err := FoldLog(ctx, db, ledger, 1, through, func(r *eventstore.Record, e domain.Event) error {
		ev.Apply(r.Position, r.RecordedAt, e)
		return nil
	})
	return ev, err
}

// FoldLog calls fn with each record of ledger's log from from through
// through (0: the end), read in pages of alertLogPage, and returns the
// last position read.
//
// Errors: database errors; a record that does not decode; fn's.
func FoldLog(ctx context.Context, db LogReader, ledger string, from, through uint64, fn func(*eventstore.Record, domain.Event) error) (uint64, error) {
	last := from - 1
	for through == 0 || last < through {
		upper := int64(through)
		if through == 0 {
			upper = 1<<63 - 1
		}
		rows, err := db.Query(ctx, `SELECT position, type, schema_version, recorded_at, payload FROM events
			WHERE ledger = $1 AND position > $2 AND position <= $3 ORDER BY position LIMIT $4`,
			ledger, int64(last), upper, alertLogPage)
		if err != nil {
			return last, fmt.Errorf("read %s's log from %d: %w", ledger, last+1, err)
		}
		n := 0
		for rows.Next() {
			var (
				r   = eventstore.Record{Ledger: ledger}
				pos int64
				ver int16
			)
			if err := rows.Scan(&pos, &r.Type, &ver, &r.RecordedAt, &r.Payload); err != nil {
				rows.Close()
				return last, fmt.Errorf("read %s's log: %w", ledger, err)
			}
			r.Position, r.SchemaVersion = uint64(pos), int(ver)
			if r.Position != last+1 {
				rows.Close()
				return last, fmt.Errorf("%s's log has %d after %d", ledger, r.Position, last)
			}
			e, err := domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload)
			if err != nil {
				rows.Close()
				return last, fmt.Errorf("record %d: %w", r.Position, err)
			}
			if err := fn(&r, e); err != nil {
				rows.Close()
				return last, err
			}
			last = r.Position
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return last, fmt.Errorf("read %s's log: %w", ledger, err)
		}
		if n < alertLogPage {
			break
		}
	}
	return last, nil
}
