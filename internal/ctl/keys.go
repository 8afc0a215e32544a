package ctl

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// keysCreate makes an API key and prints it: its text first, alone on its
// line (ledgerd keeps only a hash: this is the one time it is shown).
// Its --ledger scopes the key and may be repeated; the global --ledger does
// not apply.
func keysCreate(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
	req := &ledgerv1.CreateApiKeyRequest{}
	fs.Func("role", "writer, reader, auditor or admin (repeatable)", func(v string) error {
		req.Roles = append(req.Roles, v)
		return nil
	})
	fs.Func("ledger", "a ledger the key may touch (repeatable); none: every ledger", func(v string) error {
		req.Ledgers = append(req.Ledgers, v)
		return nil
	})
	fs.StringVar(&req.Description, "description", "", "what the key is for")
	rest, err := c.parseBut(fs, args, "ledger")
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return usageError{"keys create takes no arguments, only flags"}
	}
	if len(req.Roles) == 0 {
		return usageError{"keys create needs --role (writer, reader, auditor or admin)"}
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).CreateApiKey(ctx, req)
		if err != nil {
			return err
		}
		if c.output == "json" {
			return c.printJSON(resp)
		}
		k := resp.GetApiKey()
		fmt.Fprintln(c.out, resp.GetKey())
		fmt.Fprintf(c.out, "id %s  roles %s  ledgers %s  (shown once: ledgerd keeps only its hash)\n",
			k.GetId(), strings.Join(k.GetRoles(), ","), ledgersOf(k))
		return nil
	})
}

// keysList prints the keys, never a secret.
func keysList(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("keys list", flag.ContinueOnError)
	all := fs.Bool("all", false, "revoked keys too")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return usageError{"keys list takes no arguments"}
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).ListApiKeys(ctx, &ledgerv1.ListApiKeysRequest{IncludeRevoked: *all})
		if err != nil {
			return err
		}
		if c.output == "json" {
			return c.printJSON(resp)
		}
		tw := tabwriterLeft(c.out)
		fmt.Fprintln(tw, "ID\tROLES\tLEDGERS\tCREATED\tREVOKED\tDESCRIPTION")
		for _, k := range resp.GetApiKeys() {
			revoked := "-"
			if k.GetRevokedAt() != nil {
				revoked = k.GetRevokedAt().AsTime().UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.GetId(), strings.Join(k.GetRoles(), ","), ledgersOf(k),
				k.GetCreatedAt().AsTime().UTC().Format(time.RFC3339), revoked, k.GetDescription())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if resp.GetTruncated() {
			fmt.Fprintln(c.out, "(more keys exist than were listed)")
		}
		return nil
	})
}

// keysRevoke revokes a key by its id.
func keysRevoke(ctx context.Context, c *client, args []string) error {
	rest, err := c.parse(flag.NewFlagSet("keys revoke", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError{"keys revoke takes one key id"}
	}
	id := rest[0]
	if k := apikeys.ID(id); k != "" {
		id = k // the whole key was given: revoke it by its id
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).RevokeApiKey(ctx, &ledgerv1.RevokeApiKeyRequest{Id: id})
		if err != nil {
			return err
		}
		if c.output == "json" {
			return c.printJSON(resp)
		}
		k := resp.GetApiKey()
		fmt.Fprintf(c.out, "REVOKED %s at %s\n", k.GetId(), k.GetRevokedAt().AsTime().UTC().Format(time.RFC3339))
		return nil
	})
}

func ledgersOf(k *ledgerv1.ApiKey) string {
	if len(k.GetLedgers()) == 0 {
		return "*"
	}
	return strings.Join(k.GetLedgers(), ",")
}
