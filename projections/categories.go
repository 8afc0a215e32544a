package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
)

// categoryChanges gathers a batch's category definitions: the last one of
// each name wins, as it does in the domain, and one statement writes them
// (an INSERT cannot touch the same row twice).
type categoryChanges struct {
	byName map[string]int // index into defs
	defs   []domain.CategoryDefined
	at     []int64
}

// add records a definition at pos.
func (c *categoryChanges) add(e domain.CategoryDefined, pos uint64) {
	if c.byName == nil {
		c.byName = map[string]int{}
	}
	if i, ok := c.byName[e.Name]; ok {
		c.defs[i], c.at[i] = e, int64(pos)
		return
	}
	c.byName[e.Name] = len(c.defs)
	c.defs, c.at = append(c.defs, e), append(c.at, int64(pos))
}

// upsertCategories writes the batch's definitions: a new row, or the
// category's replaced whole.
func upsertCategories(ctx context.Context, tx pgx.Tx, ledger string, c *categoryChanges) error {
	n := len(c.defs)
	if n == 0 {
		return nil
	}
	names, parents, descriptions := make([]string, n), make([]*string, n), make([]string, n)
	// Patterns as one text each, split in SQL: a text[][] must be
	// rectangular, and categories have different numbers of patterns. An id
	// byte is never a newline.
	patterns := make([]string, n)
	for i, d := range c.defs {
		names[i], descriptions[i] = d.Name, d.Description
		if d.Parent != "" {
			parents[i] = &c.defs[i].Parent
		}
		for k, p := range d.Patterns {
			if k > 0 {
				patterns[i] += "\n"
			}
			patterns[i] += p
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO categories (ledger, name, parent, patterns, description, position)
		SELECT $1, d.name, d.parent, CASE d.patterns WHEN '' THEN '{}'::text[] ELSE string_to_array(d.patterns, E'\n') END,
			d.description, d.position
		FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) AS d(name, parent, patterns, description, position)
		ON CONFLICT (ledger, name) DO UPDATE SET parent = excluded.parent, patterns = excluded.patterns,
			description = excluded.description, position = excluded.position`,
		ledger, names, parents, patterns, descriptions, c.at)
	if err != nil {
		return fmt.Errorf("upsert %d categories: %w", n, err)
	}
	return nil
}
