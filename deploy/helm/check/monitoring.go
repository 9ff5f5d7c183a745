package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// dashboardSuffix names the ConfigMap keys that hold a Grafana dashboard (the sidecar takes any
// key; ours are named so that the checker knows what to decode them as).
const dashboardSuffix = "dashboard.json"

// The parser a Prometheus with default flags has: no experimental functions.
var promql = parser.NewParser(parser.Options{})

func init() {
	// The panel and query types the strict decoding dispatches on (timeseries, table, prometheus...).
	plugins.RegisterDefaultPlugins()
}

// grafanaBuiltins are the variables Grafana itself defines, with a value that parses where they
// stand in a query (a range, or a number of seconds or milliseconds).
var grafanaBuiltins = map[string]string{
	"__rate_interval": "1m", "__interval": "1m", "__range": "1h",
	"__interval_ms": "60000", "__range_s": "3600", "__range_ms": "3600000",
}

// $name, ${name} and ${name:format}.
var grafanaVariable = regexp.MustCompile(`\$(?:\{([A-Za-z0-9_]+)(?::[A-Za-z0-9_]+)?\}|([A-Za-z0-9_]+))`)

// The metric names a template names in a query of its own (`... | query`).
var metricInText = regexp.MustCompile(`\biotinfer_[a-z0-9_]+`)

// CheckMonitoring checks what the alerting rules and the dashboards of a render ask of
// Prometheus: every expression parses, and names only the metrics in known (all names when known
// is nil), so that a typo or a renamed metric fails here and not as an empty panel or an alert that
// can never fire. Dashboards are decoded strictly into the Grafana dashboard types.
func CheckMonitoring(objs []Object, known map[string]bool) []error {
	var errs []error
	for _, o := range objs {
		switch t := o.Obj.(type) {
		case *monitoringv1.PrometheusRule:
			for _, msg := range checkRules(t, known) {
				errs = append(errs, fmt.Errorf("%s: %s", o, msg))
			}
		case *corev1.ConfigMap:
			for _, key := range slices.Sorted(maps.Keys(t.Data)) {
				if !strings.HasSuffix(key, dashboardSuffix) {
					continue
				}
				for _, msg := range checkDashboard([]byte(t.Data[key]), known) {
					errs = append(errs, fmt.Errorf("%s: %s: %s", o, key, msg))
				}
			}
		}
	}
	return errs
}

func checkRules(pr *monitoringv1.PrometheusRule, known map[string]bool) []string {
	var msgs []string
	for _, g := range pr.Spec.Groups {
		for i, r := range g.Rules {
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			where := fmt.Sprintf("group %q rule %d (%s)", g.Name, i, name)
			for _, msg := range checkExpr(r.Expr.String(), known) {
				msgs = append(msgs, where+": "+msg)
			}
			if r.Alert == "" {
				continue
			}
			// What Alertmanager routes on, and what a person reads first.
			if r.Labels["severity"] == "" {
				msgs = append(msgs, where+": no severity label")
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					msgs = append(msgs, fmt.Sprintf("%s: no %s annotation", where, a))
				}
			}
			for _, a := range slices.Sorted(maps.Keys(r.Annotations)) {
				for _, m := range unknownMetrics(metricInText.FindAllString(r.Annotations[a], -1), known) {
					msgs = append(msgs, fmt.Sprintf("%s: annotation %s: unknown metric %s", where, a, m))
				}
			}
		}
	}
	return msgs
}

// checkExpr parses a PromQL expression and returns what is wrong with it.
func checkExpr(expr string, known map[string]bool) []string {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return []string{fmt.Sprintf("%q does not parse: %v", expr, err)}
	}
	var names []string
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			names = append(names, selectorNames(vs.Name, vs.LabelMatchers)...)
		}
		return nil
	})
	if unknown := unknownMetrics(names, known); len(unknown) > 0 {
		return []string{fmt.Sprintf("unknown metric %s in %q", strings.Join(unknown, ", "), expr)}
	}
	return nil
}

// selectorNames is the metric a selector names: its name, or its __name__="..." matcher. A
// selector by a regular expression on the name names nothing this check can hold to a list.
func selectorNames(name string, matchers []*labels.Matcher) []string {
	if name != "" {
		return []string{name}
	}
	for _, m := range matchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return []string{m.Value}
		}
	}
	return nil
}

func unknownMetrics(names []string, known map[string]bool) []string {
	if known == nil {
		return nil
	}
	var out []string
	for _, n := range names {
		if !known[n] && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// checkDashboard decodes a dashboard strictly and checks its queries.
func checkDashboard(raw []byte, known map[string]bool) []string {
	// The strict decoding finds what is wrong, but its result cannot be walked: in v0.0.22 every
	// UnmarshalJSONStrict returns its empty list of errors as a non-nil error, and the code that
	// dispatches on a type (a panel or a row, a panel's options, a query) takes that for a
	// failure and drops what it decoded. The lenient decoding keeps it all.
	var d dashboard.Dashboard
	if err := strict(d.UnmarshalJSONStrict(raw)); err != nil {
		return strings.Split(err.Error(), "\n")
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return []string{err.Error()}
	}
	var msgs []string
	bad := func(format string, args ...any) { msgs = append(msgs, fmt.Sprintf(format, args...)) }
	if d.Uid == nil || *d.Uid == "" || d.Title == nil || *d.Title == "" {
		bad("a dashboard needs a uid and a title")
	}

	// The dashboard's own variables stand for a label value: "x" parses wherever one does.
	vars := maps.Clone(grafanaBuiltins)
	for _, v := range d.Templating.List {
		vars[v.Name] = "x"
		if v.Type != dashboard.VariableTypeQuery || v.Query == nil {
			continue
		}
		query := ""
		if v.Query.String != nil {
			query = *v.Query.String
		} else if q, ok := v.Query.Map["query"].(string); ok {
			query = q
		}
		// label_values(SELECTOR, LABEL), the Prometheus data source's own syntax.
		if inner, ok := strings.CutPrefix(query, "label_values("); ok {
			if i := strings.LastIndex(inner, ","); i >= 0 {
				query = inner[:i]
			}
		}
		matchers, err := promql.ParseMetricSelector(query)
		if err != nil {
			bad("variable %s: %q does not parse: %v", v.Name, query, err)
			continue
		}
		for _, m := range unknownMetrics(selectorNames("", matchers), known) {
			bad("variable %s: unknown metric %s", v.Name, m)
		}
	}

	// A panel's fieldConfig is decoded leniently even by UnmarshalJSONStrict (all but its custom
	// part): decoded again here, strictly, from the panel's own JSON.
	type rawPanel struct {
		FieldConfig json.RawMessage `json:"fieldConfig"`
		Panels      []rawPanel      `json:"panels"`
	}
	var top rawPanel
	if err := json.Unmarshal(raw, &top); err != nil {
		return append(msgs, err.Error())
	}
	var panels []*dashboard.Panel
	var fieldConfigs []json.RawMessage
	for i, p := range d.Panels {
		switch {
		case p.Panel != nil:
			panels = append(panels, p.Panel)
			fieldConfigs = append(fieldConfigs, top.Panels[i].FieldConfig)
		case p.RowPanel != nil:
			for j := range p.RowPanel.Panels {
				panels = append(panels, &p.RowPanel.Panels[j])
				fieldConfigs = append(fieldConfigs, top.Panels[i].Panels[j].FieldConfig)
			}
		default:
			bad("panel %d: neither a panel nor a row", i)
		}
	}
	for i, p := range panels {
		title := fmt.Sprintf("panel %q", deref(p.Title))
		if fieldConfigs[i] != nil {
			var fc dashboard.FieldConfigSource
			if err := strict(fc.UnmarshalJSONStrict(fieldConfigs[i])); err != nil {
				bad("%s: fieldConfig: %v", title, err)
			}
		}
		if len(p.Targets) == 0 {
			bad("%s: no query", title)
		}
		// Imported into any Grafana, a panel must ask the data source the variable names.
		if !isDatasourceVariable(p.Datasource) {
			bad("%s: datasource is not the $datasource variable", title)
		}
		for _, t := range p.Targets {
			q, ok := t.(*prometheus.Dataquery)
			if !ok {
				// An unknown query type is decoded leniently, and its expression not at all.
				bad("%s: a query that is not a Prometheus one (%T)", title, t)
				continue
			}
			where := fmt.Sprintf("%s query %s", title, deref(q.RefId))
			if !isDatasourceVariable(q.Datasource) {
				bad("%s: datasource is not the $datasource variable", where)
			}
			expr, unknownVars := expandVariables(q.Expr, vars)
			for _, v := range unknownVars {
				bad("%s: unknown variable $%s", where, v)
			}
			for _, msg := range checkExpr(expr, known) {
				bad("%s: %s", where, msg)
			}
		}
	}
	return msgs
}

func isDatasourceVariable(ref *common.DataSourceRef) bool {
	if ref == nil {
		return false
	}
	uid := deref(ref.Uid)
	return (uid == "${datasource}" || uid == "$datasource") && deref(ref.Type) == "prometheus"
}

// expandVariables replaces Grafana's variables in a query by values that parse, and returns the
// names it does not know.
func expandVariables(expr string, vars map[string]string) (string, []string) {
	var unknown []string
	out := grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		m := grafanaVariable.FindStringSubmatch(v)
		name := m[1] + m[2]
		if value, ok := vars[name]; ok {
			return value
		}
		unknown = append(unknown, name)
		return v
	})
	return out, unknown
}

// strict is the error of an UnmarshalJSONStrict: the generated code returns its list of errors
// as an error even when the list is empty.
func strict(err error) error {
	var errs cog.BuildErrors
	if errors.As(err, &errs) && len(errs) == 0 {
		return nil
	}
	return err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// RuleFile is the rule groups of every PrometheusRule of a render, as a Prometheus rule file
// (what the Prometheus Operator hands its Prometheus), for promtool to check and test; nil when
// the render has none.
func RuleFile(objs []Object) ([]byte, error) {
	var spec monitoringv1.PrometheusRuleSpec
	for _, o := range objs {
		if pr, ok := o.Obj.(*monitoringv1.PrometheusRule); ok {
			spec.Groups = append(spec.Groups, pr.Spec.Groups...)
		}
	}
	if len(spec.Groups) == 0 {
		return nil, nil
	}
	return yaml.Marshal(spec)
}
