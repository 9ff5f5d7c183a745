package main

import (
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var knownMetrics = map[string]bool{
	"iotinfer_infer_inferred_total": true, "iotinfer_infer_lag": true, "iotinfer_infer_latency_seconds_bucket": true,
}

const rule = `---
# Source: iotinfer/templates/prometheusrule.yaml
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: iotinfer}
spec:
  groups:
    - name: iotinfer
      rules:
        - alert: IotinferNoInferences
          expr: sum by (namespace) (increase(iotinfer_infer_inferred_total{namespace="iotinfer"}[5m])) == 0
          for: 1m
          labels: {severity: critical}
          annotations:
            summary: No image inferred
            description: 'lag {{ with query "sum(iotinfer_infer_lag)" }}{{ . | first | value }}{{ end }}'
        - record: iotinfer:lag
          expr: sum(iotinfer_infer_lag)
`

// A dashboard with one variable and one panel, in the ConfigMap the chart renders.
func dashboardManifest(t *testing.T, edit func(map[string]any)) string {
	t.Helper()
	ds := map[string]any{"type": "prometheus", "uid": "${datasource}"}
	d := map[string]any{
		"uid": "iotinfer", "title": "iotinfer", "schemaVersion": 39,
		"templating": map[string]any{"list": []any{
			map[string]any{"type": "datasource", "name": "datasource", "query": "prometheus"},
			map[string]any{"type": "query", "name": "namespace", "datasource": ds,
				"query": "label_values(iotinfer_infer_inferred_total, namespace)"},
		}},
		"annotations": map[string]any{"list": []any{}},
		"panels": []any{map[string]any{
			"type": "timeseries", "id": 1, "title": "Latency", "datasource": ds,
			"gridPos": map[string]any{"x": 0, "y": 0, "w": 12, "h": 8},
			"targets": []any{map[string]any{
				"datasource": ds, "refId": "A", "legendFormat": "p99",
				"expr": `histogram_quantile(0.99, sum by (le) (rate(iotinfer_infer_latency_seconds_bucket{namespace="$namespace"}[$__rate_interval])))`,
			}},
			"fieldConfig": map[string]any{"defaults": map[string]any{"unit": "s", "custom": map[string]any{"lineWidth": 1}}, "overrides": []any{}},
			"options": map[string]any{
				"legend":  map[string]any{"showLegend": true, "displayMode": "list", "placement": "bottom", "calcs": []any{}},
				"tooltip": map[string]any{"mode": "multi", "sort": "none"},
			},
		}},
	}
	if edit != nil {
		edit(d)
	}
	js, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	cm := map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "iotinfer-dashboard"},
		"data": map[string]any{"iotinfer-dashboard.json": string(js)},
	}
	out, err := yaml.Marshal(cm)
	if err != nil {
		t.Fatal(err)
	}
	return "---\n# Source: iotinfer/templates/grafana-dashboard.yaml\n" + string(out)
}

func checkMonitoring(t *testing.T, manifest string, known map[string]bool) string {
	t.Helper()
	objs, errs := Decode(strings.NewReader(manifest))
	if len(errs) > 0 {
		t.Fatalf("does not decode: %v", errs)
	}
	var msgs []string
	for _, e := range CheckMonitoring(objs, known) {
		msgs = append(msgs, e.Error())
	}
	return strings.Join(msgs, "\n")
}

func TestGoodRulesAndDashboardPass(t *testing.T) {
	if errs := checkMonitoring(t, rule+dashboardManifest(t, nil), knownMetrics); errs != "" {
		t.Fatalf("want no errors, got:\n%s", errs)
	}
}

func TestRuleDefectsAreReported(t *testing.T) {
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown metric", "increase(iotinfer_infer_inferred_total", "increase(iotinfer_infer_inferred_totl",
			`PrometheusRule/iotinfer (iotinfer/templates/prometheusrule.yaml): group "iotinfer" rule 0 (IotinferNoInferences): unknown metric iotinfer_infer_inferred_totl`},
		{"by its __name__", "sum(iotinfer_infer_lag)\n", "sum({__name__=\"iotinfer_infer_lagg\"})\n", "rule 1 (iotinfer:lag): unknown metric iotinfer_infer_lagg"},
		{"does not parse", "[5m])) == 0", "[5m]) == 0", "does not parse"},
		{"experimental function", "sum by (namespace) (increase", "sum by (namespace) (mad_over_time", "does not parse"},
		{"no severity", "labels: {severity: critical}", "labels: {team: iot}", "no severity label"},
		{"no summary", "summary: No image inferred", "title: x", "no summary annotation"},
		{"unknown metric in a template's query", `query "sum(iotinfer_infer_lag)"`, `query "sum(iotinfer_infer_lagg)"`,
			"annotation description: unknown metric iotinfer_infer_lagg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(rule, tc.old) {
				t.Fatalf("test case does not apply: %q not in the rule", tc.old)
			}
			if errs := checkMonitoring(t, strings.Replace(rule, tc.old, tc.new, 1), knownMetrics); !strings.Contains(errs, tc.want) {
				t.Errorf("want an error containing %q, got:\n%s", tc.want, errs)
			}
		})
	}
	// Without a list, names are not checked; parsing still is.
	if errs := checkMonitoring(t, strings.Replace(rule, "lag)", "lagg)", -1), nil); errs != "" {
		t.Errorf("want no errors without a list of metrics, got:\n%s", errs)
	}
}

func TestDashboardDefectsAreReported(t *testing.T) {
	panel := func(d map[string]any) map[string]any { return d["panels"].([]any)[0].(map[string]any) }
	target := func(d map[string]any) map[string]any { return panel(d)["targets"].([]any)[0].(map[string]any) }
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"unknown dashboard field", func(d map[string]any) { d["graphTooltp"] = 1 }, "Dashboard: unexpected field 'graphTooltp'"},
		{"unknown query field", func(d map[string]any) { target(d)["legendFormt"] = "x" },
			"ConfigMap/iotinfer-dashboard (iotinfer/templates/grafana-dashboard.yaml): iotinfer-dashboard.json: panels[0].targets[0].Dataquery: unexpected field 'legendFormt'"},
		{"unknown panel option", func(d map[string]any) { panel(d)["options"].(map[string]any)["legnd"] = 1 }, "unexpected field 'legnd'"},
		{"unknown field of a field config", func(d map[string]any) {
			panel(d)["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["mappins"] = []any{}
		}, `panel "Latency": fieldConfig: defaults.FieldConfig: unexpected field 'mappins'`},
		{"unknown custom field config", func(d map[string]any) {
			panel(d)["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["custom"] = map[string]any{"lineWidht": 1}
		}, "unexpected field 'lineWidht'"},
		{"wrong type", func(d map[string]any) { panel(d)["gridPos"].(map[string]any)["w"] = "wide" }, "gridPos"},
		{"unknown metric", func(d map[string]any) {
			target(d)["expr"] = `sum(iotinfer_infer_lagg{namespace="$namespace"})`
		}, `panel "Latency" query A: unknown metric iotinfer_infer_lagg in "sum(iotinfer_infer_lagg{namespace=\"x\"})"`},
		{"does not parse", func(d map[string]any) { target(d)["expr"] = `sum(iotinfer_infer_lag` }, `panel "Latency" query A: "sum(iotinfer_infer_lag" does not parse`},
		{"unknown variable", func(d map[string]any) { target(d)["expr"] = `sum(iotinfer_infer_lag{namespace="${namespce}"})` }, "unknown variable $namespce"},
		{"variable naming an unknown metric", func(d map[string]any) {
			d["templating"].(map[string]any)["list"].([]any)[1].(map[string]any)["query"] = "label_values(up, namespace)"
		}, "variable namespace: unknown metric up"},
		{"a fixed data source", func(d map[string]any) {
			target(d)["datasource"] = map[string]any{"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
		}, `query A: datasource is not the $datasource variable`},
		{"not a Prometheus query", func(d map[string]any) {
			target(d)["datasource"] = map[string]any{"type": "some-plugin", "uid": "${datasource}"}
			panel(d)["datasource"] = target(d)["datasource"]
		}, "a query that is not a Prometheus one"},
		{"no query", func(d map[string]any) { delete(panel(d), "targets") }, `panel "Latency": no query`},
		{"panels that are no list", func(d map[string]any) { d["panels"] = "[" }, "iotinfer-dashboard.json: json: cannot unmarshal string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if errs := checkMonitoring(t, dashboardManifest(t, tc.edit), knownMetrics); !strings.Contains(errs, tc.want) {
				t.Errorf("want an error containing %q, got:\n%s", tc.want, errs)
			}
		})
	}
}

func TestRuleFile(t *testing.T) {
	objs, errs := Decode(strings.NewReader(good + rule))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	out, err := RuleFile(objs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"groups:\n- name: iotinfer\n  rules:\n", "  - alert: IotinferNoInferences\n", "    for: 1m\n", "  - expr: sum(iotinfer_infer_lag)\n    record: iotinfer:lag\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rule file lacks %q:\n%s", want, out)
		}
	}
	objs, _ = Decode(strings.NewReader(good))
	if out, err := RuleFile(objs); out != nil || err != nil {
		t.Errorf("a render without rules: want nothing, got %q, %v", out, err)
	}
}
