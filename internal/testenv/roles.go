package testenv

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
)

// LoginURL makes a login role that is a member of group only (a database
// role of eventstore's 0005_roles.sql, e.g. ledger_writer) and returns
// ownerURL as that login; the login is dropped after the test. Roles are
// per cluster, so the name is the test's with a random suffix. The test
// server trusts 127.0.0.1: no password.
func LoginURL(t testing.TB, ownerURL, group string) string {
	t.Helper()
	u, err := url.Parse(ownerURL)
	NoError(t, err)
	role := name(t, '_')
	ctx, cancel := context.WithTimeout(context.Background(), postgresAdminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, ownerURL)
	NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN IN ROLE "+pgx.Identifier{group}.Sanitize())
	NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), postgresAdminTimeout)
		defer cancel()
		c, err := pgx.Connect(ctx, ownerURL)
		if err != nil {
			t.Errorf("drop role %s: %v", role, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	u.User = url.User(role)
	return u.String()
}
