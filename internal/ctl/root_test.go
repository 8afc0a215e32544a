package ctl

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasHelp: every command that does something says what it
// does and shows an example of itself, which its --help prints.
func TestEveryCommandHasHelp(t *testing.T) {
	root := (&client{getenv: func(string) string { return "" }}).newRoot()
	var walk func(*cobra.Command)
	n := 0
	walk = func(cmd *cobra.Command) {
		for _, sub := range cmd.Commands() {
			if sub.HasSubCommands() {
				walk(sub)
				continue
			}
			n++
			if sub.Short == "" || !strings.Contains(sub.Example, sub.CommandPath()) {
				t.Errorf("%s: short %q, example %q: want both, the example running the command", sub.CommandPath(), sub.Short, sub.Example)
			}
		}
	}
	walk(root)
	if n < 30 {
		t.Errorf("%d commands found, want the 30 and more ledgerctl has", n)
	}
}
