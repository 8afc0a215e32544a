package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrRoleMissing means a PostgreSQL login lacks the database role its pool is
// used for (eventstore's 0005_roles.sql makes the roles).
var ErrRoleMissing = errors.New("PostgreSQL login lacks a database role")

// rolePrivilege is what one of ledgerd's pools is used for: the database
// role its login must be in, and one privilege that role has and the others
// do not, which tells whether the login is in it.
type rolePrivilege struct {
	role  string
	check string // SQL, true when the login holds the role's privilege
}

var (
	needWriter = rolePrivilege{"ledger_writer",
		`has_function_privilege('append_events(text, bigint, text[], smallint[], timestamptz[], text[], json[], bytea[], bytea[])', 'EXECUTE')`}
	needProjector = rolePrivilege{"ledger_projector", `has_table_privilege('projection_checkpoints', 'UPDATE')`}
	needReader    = rolePrivilege{"ledger_reader", `has_table_privilege('projection_checkpoints', 'SELECT')`}
	needKeys      = rolePrivilege{"ledger_keys", `has_table_privilege('api_keys', 'INSERT')`}
)

// checkRole fails unless pool's login holds need's role (or the tables'
// owner's privileges), naming the login and flag.
//
// Errors: ErrRoleMissing, or a database error.
func checkRole(ctx context.Context, pool *pgxpool.Pool, flag string, need rolePrivilege) error {
	var user string
	var ok bool
	if err := pool.QueryRow(ctx, `SELECT current_user, `+need.check).Scan(&user, &ok); err != nil {
		return fmt.Errorf("%s: check role %s: %w", flag, need.role, err)
	}
	if !ok {
		return fmt.Errorf("%s: login %s is not in %s: give %s a login in %s (or one login in ledger_app for all): %w",
			flag, user, need.role, flag, need.role, ErrRoleMissing)
	}
	return nil
}
