package daemon_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"sigs.k8s.io/yaml"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"

	"github.com/ledgerd/ledger/internal/testenv"
)

// deployDir holds the dashboards and alert rules shipped with ledgerd.
const deployDir = "../../deploy"

// promQLMetric finds the metric names in a PromQL expression, with the
// label matchers that follow them: every metric ledgerd exports, and the Go
// and process collectors', has one of these prefixes.
var promQLMetric = regexp.MustCompile(`\b((?:ledger|process|go)_[a-z0-9_]+)(\{[^}]*\})?`)

// promQLLabel finds the label names of a matcher list or a by/without clause.
var (
	promQLMatcher = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	promQLGroupBy = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// labelsAddedByPrometheus are labels a scrape adds to every series.
var labelsAddedByPrometheus = []string{"instance", "job", "le"}

// TestDashboardsAndAlertsUseExportedMetrics holds every query of the
// Grafana dashboards and every Prometheus alert rule under deploy/ to the
// metrics a running ledgerd exports: each metric name (a histogram's
// _bucket, _sum and _count included) and each label its matchers name.
func TestDashboardsAndAlertsUseExportedMetrics(t *testing.T) {
	t.Parallel()
	exprs := deployedQueries(t)
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	pos := h.transferOK(t, ledger, transfer("metrics", "alice", "bob", "1.00", "USD"))
	h.waitProjections(t, ledger, pos)
	// A call refused for its key: a counter vector shows no family before
	// its first series.
	_, err := h.as(t, newKey(t)).query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{})
	wantCode(t, "an unknown key", err, codes.Unauthenticated)
	// A scrape leaves the projection lag gauges out when their query does
	// not answer in time (lagCollector): on a busy box, the next may have
	// them.
	var families families
	testenv.Eventually(t, 30*time.Second, func() error {
		families = scrapeFamilies(t, metricsText(t, h))
		if _, ok := families.lookup("ledger_projection_lag_positions"); !ok {
			return errors.New("the projection lag gauges were left out of the scrape")
		}
		return nil
	})

	checked := map[string]bool{}
	for _, e := range exprs {
		for _, m := range promQLMetric.FindAllStringSubmatch(e.expr, -1) {
			name, matchers := m[1], m[2]
			f, ok := families.lookup(name)
			if !ok {
				t.Errorf("%s: %s is not a metric ledgerd exports", e.where, name)
				continue
			}
			checked[f.name] = true
			for _, l := range promQLMatcher.FindAllStringSubmatch(matchers, -1) {
				if !f.hasLabel(l[1]) {
					t.Errorf("%s: %s has no label %q (its labels: %v)", e.where, name, l[1], f.labelNames())
				}
			}
		}
		// A by/without clause must name labels some metric of the query has.
		for _, g := range promQLGroupBy.FindAllStringSubmatch(e.expr, -1) {
			for l := range strings.SplitSeq(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !families.anyHasLabel(e.expr, l) {
					t.Errorf("%s: groups by %q, which no metric of the query has", e.where, l)
				}
			}
		}
	}
	// The checks above found something to check: the dashboards and rules
	// cover the ledger's own metrics, not only the runtime's.
	for _, want := range []string{"ledger_events_committed_total", "ledger_append_duration_seconds", "ledger_append_events",
		"ledger_projection_lag_positions", "ledger_projection_lag_seconds", "ledger_grpc_request_duration_seconds",
		"ledger_writer_writing", "ledger_nats_connected", "ledger_projection_chain_broken", "ledger_stream_diverged"} {
		if !checked[want] {
			t.Errorf("no dashboard panel or alert uses %s", want)
		}
	}
}

// deployedQuery is one PromQL expression and where it was found.
type deployedQuery struct{ where, expr string }

// deployedQueries reads every panel target of deploy/grafana/*.json and
// every rule of deploy/prometheus/*.yaml.
func deployedQueries(t *testing.T) []deployedQuery {
	t.Helper()
	var out []deployedQuery
	dashboards, err := filepath.Glob(filepath.Join(deployDir, "grafana", "*.json"))
	testenv.NoError(t, err)
	for _, path := range dashboards {
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		readDeployed(t, path, &d, json.Unmarshal)
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				out = append(out, deployedQuery{filepath.Base(path) + ": panel " + p.Title, tg.Expr})
			}
		}
	}
	rules, err := filepath.Glob(filepath.Join(deployDir, "prometheus", "*.yaml"))
	testenv.NoError(t, err)
	for _, path := range rules {
		var r struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Alert       string            `json:"alert"`
					Expr        string            `json:"expr"`
					For         string            `json:"for"`
					Labels      map[string]string `json:"labels"`
					Annotations map[string]string `json:"annotations"`
				} `json:"rules"`
			} `json:"groups"`
		}
		readDeployed(t, path, &r, func(b []byte, v any) error { return yaml.UnmarshalStrict(b, v) })
		for _, g := range r.Groups {
			for _, rule := range g.Rules {
				if rule.Alert == "" || rule.Annotations["summary"] == "" {
					t.Errorf("%s: a rule without a name or a summary: %+v", path, rule)
				}
				out = append(out, deployedQuery{filepath.Base(path) + ": alert " + rule.Alert, rule.Expr})
			}
		}
	}
	if len(dashboards) == 0 || len(rules) == 0 || len(out) < 10 {
		t.Fatalf("%d dashboards, %d rule files, %d queries under %s: the deploy files are missing", len(dashboards), len(rules), len(out), deployDir)
	}
	for _, q := range out {
		if strings.TrimSpace(q.expr) == "" {
			t.Errorf("%s: an empty query", q.where)
		}
	}
	return out
}

func readDeployed(t *testing.T, path string, v any, unmarshal func([]byte, any) error) {
	t.Helper()
	b, err := os.ReadFile(path)
	testenv.NoError(t, err)
	if err := unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// family is a metric family of a scrape: its type and the label names of
// its series.
type family struct {
	name   string
	typ    string
	labels map[string]bool
}

func (f *family) hasLabel(l string) bool {
	return f.labels[l] || slices.Contains(labelsAddedByPrometheus, l)
}

func (f *family) labelNames() []string {
	var out []string
	for l := range f.labels {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

type families map[string]*family

// lookup finds the family of a series name: the name itself, or a
// histogram's or summary's _bucket, _sum or _count.
func (fs families) lookup(name string) (*family, bool) {
	if f, ok := fs[name]; ok {
		return f, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := fs[strings.TrimSuffix(name, suffix)]; ok && strings.HasSuffix(name, suffix) &&
			(f.typ == "histogram" || (f.typ == "summary" && suffix != "_bucket")) {
			return f, true
		}
	}
	return nil, false
}

// anyHasLabel says whether a metric named in expr has label l.
func (fs families) anyHasLabel(expr, l string) bool {
	for _, m := range promQLMetric.FindAllStringSubmatch(expr, -1) {
		if f, ok := fs.lookup(m[1]); ok && f.hasLabel(l) {
			return true
		}
	}
	return false
}

// scrapeFamilies reads the families of a Prometheus text exposition: their
// types from the # TYPE lines, their label names from the series.
func scrapeFamilies(t *testing.T, text string) families {
	t.Helper()
	fs := families{}
	seriesName := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
	labelName := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	for line := range strings.SplitSeq(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			fs[name] = &family{name: name, typ: typ, labels: map[string]bool{}}
			continue
		}
		m := seriesName.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f, ok := fs.lookup(m[1])
		if !ok {
			t.Fatalf("series %s before its # TYPE line", m[1])
		}
		for _, l := range labelName.FindAllStringSubmatch(m[2], -1) {
			f.labels[l[1]] = true
		}
	}
	if len(fs) < 10 {
		t.Fatalf("%d metric families in /metrics", len(fs))
	}
	return fs
}
