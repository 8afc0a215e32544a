package ctl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// nodesCmd lists the ledgerd processes sharing the database; its drain and
// undrain verbs move a node's ledgers away and let them come back.
func (c *client) nodesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:         "nodes",
		Short:       "ledgerd nodes (admin): list them, drain one, end a drain",
		Example:     "  ledgerctl nodes\n  ledgerctl nodes drain host-a:7070\n  ledgerctl nodes undrain host-a:7070",
		Annotations: map[string]string{overviewSelf: "List the ledgerd nodes sharing the database (admin): roles, state, what each writes and projects"},
		Args:        cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args)
			}
			return c.nodesList(cmd.Context())
		},
	}
	cmd.AddCommand(c.nodesDrainCmd(true), c.nodesDrainCmd(false))
	return cmd
}

func (c *client) nodesList(ctx context.Context) error {
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).ListNodes(ctx, &ledgerv1.ListNodesRequest{})
		if err != nil {
			return err
		}
		if !c.human() {
			return c.printJSON(resp)
		}
		tw := tabwriterLeft(c.out)
		fmt.Fprintln(tw, "NODE\tROLES\tSTATE\tWRITES\tPROJECTS\tGRPC\tSEEN\tVERSION")
		for _, n := range resp.GetNodes() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s ago\t%s\n", n.GetId(), strings.Join(n.GetRoles(), ","), nodeState(n),
				n.GetWriterLeases(), n.GetProjectorLeases(), n.GetGrpcAddr(), ago(n.GetSeenAt().AsTime()), n.GetVersion())
		}
		return tw.Flush()
	})
}

// nodeState is a node's state in a word.
func nodeState(n *ledgerv1.Node) string {
	switch {
	case !n.GetLive():
		return "gone"
	case n.GetDraining():
		return "draining"
	}
	return "live"
}

// ago is how long ago t was, to the second.
func ago(t time.Time) string { return time.Since(t).Round(time.Second).String() }

// nodesDrainCmd drains a node (drain) or ends its drain.
func (c *client) nodesDrainCmd(drain bool) *cobra.Command {
	verb, short := "drain", "Drain a node: its writers stop, its projections stop once caught up; other nodes take its ledgers"
	if !drain {
		verb, short = "undrain", "End a node's drain: it takes ledgers again"
	}
	return &cobra.Command{
		Use:     verb + " NODE",
		Short:   short,
		Example: "  ledgerctl nodes " + verb + " host-a:7070",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{"nodes " + verb + " takes one node id (ledgerctl nodes lists them)"}
			}
			return c.call(cmd.Context(), func(ctx context.Context) error {
				resp, err := ledgerv1.NewAdminServiceClient(c.conn).DrainNode(ctx, &ledgerv1.DrainNodeRequest{Node: args[0], Drain: drain})
				if err != nil {
					return err
				}
				if !c.human() {
					return c.printJSON(resp)
				}
				n := resp.GetNode()
				fmt.Fprintf(c.out, "%s  %s  writes %d  projects %d (the node acts on it within 2 s)\n", n.GetId(), nodeState(n),
					n.GetWriterLeases(), n.GetProjectorLeases())
				return nil
			})
		},
	}
}

// ledgersCmd shows where each ledger is written and projected.
func (c *client) ledgersCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ledgers [NAME]",
		Short:   "Where each ledger runs (admin): its writer's node, its projections' node, since when, their lag",
		Example: "  ledgerctl ledgers\n  ledgerctl ledgers payments -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{"ledgers takes at most one ledger name"}
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return c.placements(cmd.Context(), name)
		},
	}
}

func (c *client) placements(ctx context.Context, ledger string) error {
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).ListPlacements(ctx, &ledgerv1.ListPlacementsRequest{Ledger: ledger})
		if err != nil {
			return err
		}
		if !c.human() {
			return c.printJSON(resp)
		}
		tw := tabwriterLeft(c.out)
		fmt.Fprintln(tw, "LEDGER\tSTATUS\tHEAD\tWRITER\tLEASE AGE\tPROJECTOR\tLEASE AGE\tLAG")
		for _, p := range resp.GetPlacements() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\n", p.GetLedger(), statusWord(p.GetStatus()), p.GetHead(),
				or(p.GetWriterNode(), "-"), leaseAge(p.GetWriterNode(), p.GetWriterSince().AsTime()),
				or(p.GetProjectorNode(), "-"), leaseAge(p.GetProjectorNode(), p.GetProjectorSince().AsTime()), p.GetLagPositions())
		}
		return tw.Flush()
	})
}

func leaseAge(node string, since time.Time) string {
	if node == "" {
		return "-"
	}
	return ago(since)
}
