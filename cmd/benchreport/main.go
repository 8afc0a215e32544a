// Command benchreport rewrites one generated section of BENCHMARKS.md from
// ledgerbench's JSON reports and facts files: `make bench` and `make
// bench-scale` run it (scripts/bench.sh, scripts/bench-scale.sh).
//
//	benchreport -doc BENCHMARKS.md -section bench -machine machine.txt [-figures figures.txt] [-note TEXT] NAME=REPORT.json...
//
// It exits 0 when the section was rewritten, 1 when a file could not be
// read or written or the markers are wrong, 2 on bad arguments.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/ledgerd/ledger/internal/bench"
)

func main() {
	err := run(os.Args[1:])
	var usage usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// usageError is a bad argument.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(args []string) error {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	doc := fs.String("doc", "BENCHMARKS.md", "the document to rewrite")
	section := fs.String("section", "bench", "the section: what lies between <!-- NAME:begin --> and <!-- NAME:end -->")
	generator := fs.String("generator", "make bench", "what generated the section, said in it")
	machine := fs.String("machine", "", "file of key: value lines: the machine, the commit, the durability settings")
	figures := fs.String("figures", "", "file of key: value lines: figures measured outside ledgerbench (optional)")
	note := fs.String("note", "", "a line printed first, in bold (e.g. that this is a smoke run)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	md := bench.Markdown{Generator: *generator, Note: *note}
	var err error
	if md.Machine, err = readFacts(*machine); err != nil {
		return err
	}
	if md.Figures, err = readFacts(*figures); err != nil {
		return err
	}
	for _, arg := range fs.Args() {
		s, err := readScenario(arg)
		if err != nil {
			return err
		}
		md.Scenarios = append(md.Scenarios, s)
	}
	old, err := os.ReadFile(*doc)
	if err != nil {
		return err
	}
	out, err := bench.ReplaceSection(string(old), *section, md.String())
	if err != nil {
		return fmt.Errorf("%s: %w", *doc, err)
	}
	return os.WriteFile(*doc, []byte(out), 0o644)
}

// readFacts reads a facts file; no name, no facts.
func readFacts(name string) ([]bench.Fact, error) {
	if name == "" {
		return nil, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	facts, err := bench.ReadFacts(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return facts, nil
}

// readScenario reads NAME=REPORT.json.
func readScenario(arg string) (bench.Scenario, error) {
	name, file, ok := strings.Cut(arg, "=")
	if !ok || name == "" || file == "" {
		return bench.Scenario{}, usageError{fmt.Sprintf("%q: want NAME=REPORT.json", arg)}
	}
	f, err := os.Open(file)
	if err != nil {
		return bench.Scenario{}, err
	}
	defer f.Close()
	r, err := bench.ReadReport(f)
	if err != nil {
		return bench.Scenario{}, fmt.Errorf("%s: %w", file, err)
	}
	return bench.Scenario{Name: name, Report: r}, nil
}
