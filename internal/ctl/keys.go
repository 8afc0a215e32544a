package ctl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// keysCreate makes an API key and prints it: its text first, alone on its
// line (ledgerd keeps only a hash: this is the one time it is shown).
// Its --ledger scopes the key and may be repeated; the global --ledger does
// not apply.
func (c *client) keysCreateCmd() *cobra.Command {
	req := &ledgerv1.CreateApiKeyRequest{}
	cmd := &cobra.Command{
		Use:   "create --role ROLE",
		Short: "Make an API key (shown once) with roles, for some ledgers or all",
		Example: "  ledgerctl keys create --role writer --ledger payments --description checkout\n" +
			"  ledgerctl keys create --role reader --role auditor             (every ledger)",
		Args: noArgs("keys create"),
		RunE: func(cmd *cobra.Command, _ []string) error { return c.keysCreate(cmd.Context(), req) },
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&req.Roles, "role", nil, "writer, reader, auditor or admin (repeatable)")
	// Its own --ledger, repeatable, shadows the global one.
	fs.StringArrayVar(&req.Ledgers, "ledger", nil, "a ledger the key may touch (repeatable); none: every ledger")
	fs.StringVar(&req.Description, "description", "", "what the key is for")
	required(cmd, "role")
	_ = cmd.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"writer", "reader", "auditor", "admin"},
		cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (c *client) keysCreate(ctx context.Context, req *ledgerv1.CreateApiKeyRequest) error {
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).CreateApiKey(ctx, req)
		if err != nil {
			return err
		}
		if !c.human() {
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
func (c *client) keysListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the API keys, never a secret",
		Example: "  ledgerctl keys list\n  ledgerctl keys list --all -o json      (revoked keys too)",
		Args:    noArgs("keys list"),
	}
	all := cmd.Flags().Bool("all", false, "revoked keys too")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return c.keysList(cmd.Context(), *all) }
	return cmd
}

func (c *client) keysList(ctx context.Context, all bool) error {
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).ListApiKeys(ctx, &ledgerv1.ListApiKeysRequest{IncludeRevoked: all})
		if err != nil {
			return err
		}
		if !c.human() {
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
func (c *client) keysRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke an API key by its id (or the whole key)",
		Example: "  ledgerctl keys revoke lk_0123456789ab",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{"keys revoke takes one key id"}
			}
			return c.keysRevoke(cmd.Context(), args[0])
		},
	}
}

func (c *client) keysRevoke(ctx context.Context, id string) error {
	if k := apikeys.ID(id); k != "" {
		id = k // the whole key was given: revoke it by its id
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).RevokeApiKey(ctx, &ledgerv1.RevokeApiKeyRequest{Id: id})
		if err != nil {
			return err
		}
		if !c.human() {
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
