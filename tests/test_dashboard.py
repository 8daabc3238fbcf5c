"""The Grafana dashboard and its provisioning: no dead panels, no stray datasource.

Every metric name in every panel query must exist in the service's exposition
(``generate_latest(stasis_app.metrics.REGISTRY)``), with the labels and label values the query
selects on. The PromQL reading here is a small lexer, not a regex over the whole text, so that
function names, keywords, label names and strings are never taken for metric names; its own
cases are tested first. ``tests/test_alerts.py`` uses the same helpers on the alert rules.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stasis_app.metrics import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "grafana" / "dashboards"
DASHBOARD_FILE = DASHBOARDS / "twoway-callback.json"
PROVISIONING = ROOT / "grafana" / "provisioning"
DASHBOARD_UID = "twoway-callback"
DATASOURCE_REF = "${datasource}"

# Labels Prometheus adds to every scraped series; they are not in the app's exposition.
TARGET_LABELS = frozenset({"instance", "job"})
NO_PROMTOOL = "promtool not installed (Debian: apt-get install --no-install-recommends prometheus)"

# --- PromQL, read just enough ----------------------------------------------------------------

FUNCTIONS = frozenset(
    {
        "abs",
        "absent",
        "absent_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "cos",
        "cosh",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "deg",
        "delta",
        "deriv",
        "double_exponential_smoothing",
        "end",
        "exp",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "info",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "mad_over_time",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "pi",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rad",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sin",
        "sinh",
        "sort",
        "sort_by_label",
        "sort_by_label_desc",
        "sort_desc",
        "sqrt",
        "start",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "tan",
        "tanh",
        "time",
        "timestamp",
        "vector",
        "year",
    }
)
AGGREGATIONS = frozenset(
    {
        "avg",
        "bottomk",
        "count",
        "count_values",
        "group",
        "limit_ratio",
        "limitk",
        "max",
        "min",
        "quantile",
        "stddev",
        "stdvar",
        "sum",
        "topk",
    }
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
OPERATOR_WORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2"})
NUMBER_WORDS = frozenset({"inf", "nan"})
MATCH_OPS = frozenset({"=", "!=", "=~", "!~"})

_TOKEN = re.compile(
    r"""
      (?P<space>\s+|\#[^\n]*)
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
    | (?P<range>\[[^\]]*\])
    | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
                 (?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>==|!=|=~|!~|>=|<=|[-+*/%^<>=(){},@])
""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, operator, value)


@dataclass
class Query:
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)  # by/without/on/ignoring/group_x labels
    functions: set[str] = field(default_factory=set)
    ranges: list[str] = field(default_factory=list)  # what stands in [...], as written

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors}


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"unexpected {expr[pos : pos + 20]!r} at {pos} in {expr!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _unquote(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    value = ast.literal_eval(token)
    assert isinstance(value, str)
    return value


def parse_promql(expr: str) -> Query:
    """Metric selectors, grouping labels, functions and ranges of one PromQL expression.

    Grafana's macros are allowed only inside ``[...]`` (``$__rate_interval``) and its variables
    only inside strings (``instance=~"$instance"``); a ``$`` anywhere else is an error.
    """
    toks = _tokens(expr)
    query = Query()
    i = 0

    def peek(j: int) -> tuple[str, str]:
        return toks[j] if j < len(toks) else ("end", "")

    while i < len(toks):
        kind, text = toks[i]
        if kind == "range":
            query.ranges.append(text[1:-1].strip())
            i += 1
            continue
        if kind == "op" and text == "{":
            raise ValueError(f"selector without a metric name in {expr!r}")
        if kind != "ident":
            i += 1
            continue
        word = text.lower()
        nxt = peek(i + 1)
        if word in GROUPING:
            if nxt == ("op", "("):
                i += 2
                while peek(i) != ("op", ")"):
                    k, t = peek(i)
                    if k == "ident":
                        query.grouping.add(t)
                    elif (k, t) != ("op", ","):
                        raise ValueError(f"bad label list after {text!r} in {expr!r}")
                    i += 1
                i += 1
            elif word in ("group_left", "group_right"):
                i += 1
            else:
                raise ValueError(f"{text!r} without a label list in {expr!r}")
            continue
        if word in OPERATOR_WORDS or word in NUMBER_WORDS:
            i += 1
            continue
        if nxt == ("op", "("):
            if text not in FUNCTIONS and word not in AGGREGATIONS:
                raise ValueError(f"unknown function {text!r} in {expr!r}")
            query.functions.add(word if word in AGGREGATIONS else text)
            i += 1
            continue
        if word in AGGREGATIONS and nxt[0] == "ident" and nxt[1].lower() in ("by", "without"):
            query.functions.add(word)
            i += 1
            continue
        # A metric name, maybe with label matchers.
        i += 1
        matchers: list[tuple[str, str, str]] = []
        if peek(i) == ("op", "{"):
            i += 1
            while peek(i) != ("op", "}"):
                (lk, label), (ok, op), (vk, value) = peek(i), peek(i + 1), peek(i + 2)
                if lk != "ident" or ok != "op" or op not in MATCH_OPS or vk != "string":
                    raise ValueError(f"bad label matcher after {text!r} in {expr!r}")
                matchers.append((label, op, _unquote(value)))
                i += 3
                if peek(i) == ("op", ","):
                    i += 1
                elif peek(i) != ("op", "}"):
                    raise ValueError(f"unclosed label matchers after {text!r} in {expr!r}")
            i += 1
        query.selectors.append(Selector(text, tuple(matchers)))
    return query


# --- the exposition ----------------------------------------------------------------------------

Exposition = dict[str, list[dict[str, str]]]  # sample name -> label sets


def exposition() -> Exposition:
    """Every sample name of the app's exposition, with the label sets it is exposed with."""
    text = generate_latest(REGISTRY).decode()
    samples: Exposition = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append(dict(sample.labels))
    return dict(samples)


def _labels_of(samples: list[dict[str, str]]) -> set[str]:
    return {name for labels in samples for name in labels}


def query_problems(
    expr: str, expo: Exposition, external: dict[str, frozenset[str]] | None = None
) -> list[str]:
    """What in ``expr`` would select nothing: unknown metrics, labels or label values.

    ``external`` names series that are not the app's (``up``) with the labels they carry.
    Label values are checked only where they are literal (no Grafana variable in them).
    """
    external = external or {}
    try:
        query = parse_promql(expr)
    except ValueError as exc:
        return [str(exc)]
    problems: list[str] = []
    known_labels = set(TARGET_LABELS)
    for sel in query.selectors:
        if sel.metric in external:
            labels: set[str] = set(external[sel.metric])
            values: dict[str, set[str]] = {}
        elif sel.metric in expo:
            labels = _labels_of(expo[sel.metric])
            values = defaultdict(set)
            for label_set in expo[sel.metric]:
                for name, value in label_set.items():
                    values[name].add(value)
        else:
            problems.append(f"metric {sel.metric!r} is not in the exposition")
            continue
        known_labels |= labels
        for label, op, value in sel.matchers:
            if label not in labels | TARGET_LABELS:
                problems.append(f"{sel.metric} has no label {label!r}")
            elif label in values and "$" not in value:
                if op in ("=", "!=") and value not in values[label]:
                    problems.append(
                        f"{sel.metric}{{{label}{op}{value!r}}}: no such value "
                        f"(known: {sorted(values[label])})"
                    )
                if op in ("=~", "!~") and not any(re.fullmatch(value, v) for v in values[label]):
                    problems.append(f"{sel.metric}{{{label}{op}{value!r}}}: matches no value")
    for label in sorted(query.grouping - known_labels):
        problems.append(f"grouping label {label!r} is on none of {sorted(query.metrics)}")
    return problems


# --- the dashboard ---------------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return data


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels (collapsed rows) included."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in all_panels(dashboard) if p.get("type") != "row"]


def _targets() -> list[Any]:
    return [
        pytest.param(
            p["title"],
            t.get("refId"),
            t.get("expr", ""),
            id=f"{p['id']}:{p['title']}/{t.get('refId')}",
        )
        for p in query_panels(load_dashboard())
        for t in p.get("targets", [])
    ]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


@pytest.fixture(scope="module")
def expo() -> Exposition:
    return exposition()


def _variable(dashboard: dict[str, Any], name: str) -> dict[str, Any]:
    found = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    assert len(found) == 1, f"one template variable named {name!r}"
    return found[0]


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# --- the reader's own cases ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "metrics", "grouping"),
    [
        ("up", {"up"}, set()),
        ('sum by (le, op) (rate(a_bucket{op="get", le!="+Inf"}[5m]))', {"a_bucket"}, {"le", "op"}),
        ("sum(rate(a_total[5m])) by (status)", {"a_total"}, {"status"}),
        ("SUM WITHOUT (instance) (a)", {"a"}, {"instance"}),
        ("a / on (instance) group_left (version) b_info", {"a", "b_info"}, {"instance", "version"}),
        ("a * ignoring (leg) group_right b", {"a", "b"}, {"leg"}),
        (
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))",
            {"x_bucket"},
            {"le"},
        ),
        ('label_replace(up, "dst", "$1", "instance", "(.*):rate(x)")', {"up"}, set()),
        ("a > bool 0 and b or c unless d", {"a", "b", "c", "d"}, set()),
        ("rate(a[5m] offset 1h) > Inf or b < -NaN", {"a", "b"}, set()),
        ('topk(3, a) + count_values("v", b) + quantile(0.9, c)', {"a", "b", "c"}, set()),
        ("max_over_time(a[1h:5m]) # rate(commented_out[5m])", {"a"}, set()),
        ("a:recorded:rate5m * 1e3 + 0x10 - 1h30m", {"a:recorded:rate5m"}, set()),
        ("time() - timestamp(a) @ end()", {"a"}, set()),
        ("absent(a{job='x'}) + absent(b{job=`y`})", {"a", "b"}, set()),
    ],
)
def test_promql_reader_finds_exactly_the_metric_names(
    expr: str, metrics: set[str], grouping: set[str]
) -> None:
    query = parse_promql(expr)
    assert query.metrics == metrics
    assert query.grouping == grouping


def test_promql_reader_keeps_matchers_and_ranges() -> None:
    query = parse_promql(
        'rate(a_total{instance=~"$instance", result="answered", s!="x\\"y"}[$__rate_interval])'
    )
    assert query.selectors == [
        Selector(
            "a_total",
            (("instance", "=~", "$instance"), ("result", "=", "answered"), ("s", "!=", 'x"y')),
        )
    ]
    assert query.ranges == ["$__rate_interval"]
    assert query.functions == {"rate"}


@pytest.mark.parametrize(
    "expr",
    [
        "rat(a[5m])",  # unknown function
        '{__name__="a"}',  # no metric name to check
        "rate(a[5m]) * $factor",  # a Grafana variable outside a string
        "sum by a (b)",  # grouping without parentheses
        "a{job}",  # matcher without an operator and value
    ],
)
def test_promql_reader_rejects(expr: str) -> None:
    with pytest.raises(ValueError):
        parse_promql(expr)


def test_query_problems_catches_typos(expo: Exposition) -> None:
    assert query_problems("twoway_ari_connected", expo) == []
    assert query_problems("twoway_ari_conected", expo)
    assert query_problems("twoway_talk_time_seconds", expo)  # a histogram has no bare sample
    assert query_problems('twoway_callbacks_finished_total{status!="canceled"}', expo)
    assert query_problems('twoway_callbacks_finished_total{reason="x"}', expo)
    assert query_problems('twoway_leg_outcomes_total{result=~"answer"}', expo)
    assert query_problems("sum by (op) (twoway_live_requests)", expo)
    assert query_problems('twoway_live_requests{status=~"$status", instance="x"}', expo) == []


# --- the dashboard itself --------------------------------------------------------------------


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == DASHBOARD_UID
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["title"]
    assert dashboard.get("id") is None, "an exported id would clash on import"
    assert "__inputs" not in dashboard, "provisioning cannot fill __inputs: use $datasource"


def test_datasource_variable(dashboard: dict[str, Any]) -> None:
    var = _variable(dashboard, "datasource")
    assert var["type"] == "datasource"
    assert var["query"] == "prometheus"


def test_every_panel_and_target_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    wrong = []
    for panel in query_panels(dashboard):
        refs = [("panel", panel.get("datasource"))]
        refs += [(f"target {t.get('refId')}", t.get("datasource")) for t in panel["targets"]]
        for where, ref in refs:
            if ref != {"type": "prometheus", "uid": DATASOURCE_REF}:
                wrong.append(f"{panel['title']} {where}: {ref}")
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query" and var.get("datasource", {}).get("uid") != DATASOURCE_REF:
            wrong.append(f"variable {var['name']}: {var.get('datasource')}")
    assert not wrong


def test_panel_types(dashboard: dict[str, Any]) -> None:
    types = {p["type"] for p in all_panels(dashboard)}
    assert types <= {"row", "timeseries", "stat"}, "no deprecated (graph, singlestat) panels"
    assert {"timeseries", "stat"} <= types


def test_panel_ids_and_layout(dashboard: dict[str, Any]) -> None:
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_no_dead_panels(dashboard: dict[str, Any]) -> None:
    for panel in query_panels(dashboard):
        targets = panel.get("targets", [])
        assert targets, f"{panel['title']}: no query"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), f"{panel['title']}: duplicate refId"
        for t in targets:
            assert t.get("expr", "").strip(), f"{panel['title']}/{t['refId']}: empty query"
            assert not t.get("hide"), f"{panel['title']}/{t['refId']}: hidden query"


@pytest.mark.parametrize(("title", "ref", "expr"), _targets())
def test_panel_query_metrics_exist_in_exposition(
    title: str, ref: str, expr: str, expo: Exposition
) -> None:
    assert parse_promql(expr).metrics, "a query without any metric"
    assert query_problems(expr, expo) == []


@pytest.mark.parametrize(("title", "ref", "expr"), _targets())
def test_panel_query_ranges_use_rate_interval(title: str, ref: str, expr: str) -> None:
    query = parse_promql(expr)
    assert all(r == "$__rate_interval" for r in query.ranges), query.ranges
    # The same, read the plain way: no rate()/increase() without $__rate_interval.
    calls = len(re.findall(r"\b(?:rate|irate|increase)\s*\(", expr))
    assert expr.count("[$__rate_interval]") >= calls


@pytest.mark.parametrize(("title", "ref", "expr"), _targets())
def test_panel_queries_follow_the_instance_variable(title: str, ref: str, expr: str) -> None:
    for sel in parse_promql(expr).selectors:
        assert ("instance", "=~", "$instance") in sel.matchers, sel.metric


def test_instance_variable_reads_an_existing_series(
    dashboard: dict[str, Any], expo: Exposition
) -> None:
    var = _variable(dashboard, "instance")
    query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
    assert m, query
    assert query_problems(m.group(1), expo) == []
    (selector,) = parse_promql(m.group(1)).selectors
    assert m.group(2) in TARGET_LABELS | _labels_of(expo[selector.metric])
    assert var["includeAll"] and var["allValue"] == ".*"


def test_dashboard_covers_every_metric_family(dashboard: dict[str, Any], expo: Exposition) -> None:
    """A metric added to metrics.py gets a panel (or this test is told why not)."""
    used = {
        m
        for p in query_panels(dashboard)
        for t in p["targets"]
        for m in parse_promql(t["expr"]).metrics
    }
    families = {name for name in expo if not name.endswith("_created")}
    histograms = {n.removesuffix("_bucket") for n in families if n.endswith("_bucket")}
    families -= {h + suffix for h in histograms for suffix in ("_bucket", "_sum", "_count")}
    families |= histograms
    used_families = used | {
        n.removesuffix(s) for n in used for s in ("_bucket", "_sum", "_count") if n.endswith(s)
    }
    assert families - used_families == set()


@pytest.mark.skipif(shutil.which("promtool") is None, reason=NO_PROMTOOL)
def test_panel_queries_parse_as_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses every query, Grafana's $__rate_interval put as a plain duration."""
    rules = [
        {
            "record": f"dashboard:panel_{p['id']}_{t['refId']}",
            "expr": t["expr"].replace("$__rate_interval", "1m"),
        }
        for p in query_panels(dashboard)
        for t in p["targets"]
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- provisioning ------------------------------------------------------------------------------


def test_datasource_provisioning_matches_the_dashboard_default(dashboard: dict[str, Any]) -> None:
    files = sorted((PROVISIONING / "datasources").glob("*.y*ml"))
    assert files
    provisioned = [ds for f in files for ds in _load_yaml(f).get("datasources", [])]
    default = _variable(dashboard, "datasource")["current"]["value"]
    matching = [ds for ds in provisioned if ds.get("uid") == default]
    assert len(matching) == 1, f"one provisioned datasource with uid {default!r}"
    ds = matching[0]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    assert ds["access"] == "proxy"


def test_dashboard_provisioning_points_at_the_dashboards_folder() -> None:
    files = sorted((PROVISIONING / "dashboards").glob("*.y*ml"))
    assert files
    for f in files:
        config = _load_yaml(f)
        assert config["apiVersion"] == 1
        providers = config["providers"]
        assert providers, f
        for provider in providers:
            assert provider["type"] == "file"
            path = PurePosixPath(provider["options"]["path"])
            # The repo's grafana/dashboards is mounted there (docs/monitoring.md).
            assert path.is_absolute() and path.name == DASHBOARDS.name, path
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == [DASHBOARD_FILE.name]
