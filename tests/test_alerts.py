"""prometheus/alerts.yml: well formed, selecting series that exist, firing when it should.

``promtool`` (Debian package ``prometheus``) checks the file and runs unit tests generated
here from the scenarios below; without it those two tests skip and the Python checks remain.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_dashboard import (
    NO_PROMTOOL,
    ROOT,
    Exposition,
    exposition,
    parse_promql,
    query_problems,
)

ALERTS_FILE = ROOT / "prometheus" / "alerts.yml"
JOB = "twoway-callback"
SEVERITIES = frozenset({"critical", "warning"})
RULE_KEYS = frozenset({"alert", "expr", "for", "keep_firing_for", "labels", "annotations"})
DURATION = re.compile(r"(?:\d+(?:ms|[smhdwy]))+")
LABEL_REF = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")
# Series that are not the app's own, with the labels they carry.
EXTERNAL = {"up": frozenset({"instance", "job"})}
# What the issue asks for, by name.
REQUIRED = frozenset(
    {
        "TwowayInstanceDown",
        "TwowayAriWebsocketDown",
        "TwowayDbListenDown",
        "TwowaySuccessRatioLow",
        "TwowayQueueBacklog",
        "TwowayAriErrorRateHigh",
        "TwowayInboundSpike",
        "TwowayPolicyRefusals",
    }
)

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason=NO_PROMTOOL)


def load_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS_FILE.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _rule_params() -> list[Any]:
    return [pytest.param(r, id=r.get("alert", "?")) for r in load_rules()]


@pytest.fixture(scope="module")
def expo() -> Exposition:
    return exposition()


# --- the file --------------------------------------------------------------------------------


def test_groups_schema() -> None:
    doc = yaml.safe_load(ALERTS_FILE.read_text())
    assert set(doc) == {"groups"}
    names = [g["name"] for g in doc["groups"]]
    assert names and len(names) == len(set(names))
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "limit", "rules"}
        assert group["rules"], group["name"]


@pytest.mark.parametrize("rule", _rule_params())
def test_rule_schema(rule: dict[str, Any]) -> None:
    assert set(rule) <= RULE_KEYS, set(rule) - RULE_KEYS
    assert re.fullmatch(r"Twoway[A-Z][A-Za-z]+", rule["alert"])
    assert isinstance(rule["expr"], str) and rule["expr"].strip()
    assert DURATION.fullmatch(str(rule["for"])), rule["for"]
    assert rule["labels"]["severity"] in SEVERITIES
    for key in ("summary", "description"):
        assert isinstance(rule["annotations"].get(key), str), key
        assert rule["annotations"][key].strip(), key
    for text in rule["annotations"].values():
        # $labels.name only: that is what the promtool unit test below follows.
        assert text.count("$labels") == len(LABEL_REF.findall(text)), text


def test_alert_names_unique_and_complete() -> None:
    names = [r["alert"] for r in load_rules()]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED


@pytest.mark.parametrize("rule", _rule_params())
def test_rule_metrics_exist_in_exposition(rule: dict[str, Any], expo: Exposition) -> None:
    query = parse_promql(rule["expr"])
    assert query.metrics, "an alert without any metric"
    assert query_problems(rule["expr"], expo, external=EXTERNAL) == []
    # Plain Prometheus: no Grafana macro or variable.
    assert "$" not in rule["expr"]
    assert all(DURATION.fullmatch(r) for r in query.ranges), query.ranges


@needs_promtool
def test_promtool_check_rules() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- behaviour: promtool test rules ------------------------------------------------------------


def _labels(instance: str, **extra: str) -> str:
    pairs = {"instance": instance, "job": JOB, **extra}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


A1, A2, A3 = "app-1:8480", "app-2:8480", "app-3:8480"
ON_A1 = {"instance": A1, "job": JOB}


@dataclass(frozen=True)
class Scenario:
    """Input series (promtool notation, one sample a minute) and the alerts expected when."""

    alert: str
    series: dict[str, str]
    expect: dict[str, list[dict[str, str]]]  # eval time -> labels of the firing alerts


FINISHED = "twoway_callbacks_finished_total"
REFUSALS = "twoway_policy_refusals_total"
SCENARIOS = [
    Scenario(
        "TwowayInstanceDown",
        {
            f"up{_labels(A1)}": "1 1 0x10",
            f"up{_labels(A2)}": "1x12",
        },
        {"3m": [], "5m": [ON_A1]},
    ),
    Scenario(
        "TwowayAriWebsocketDown",
        {
            f"twoway_ari_connected{_labels(A1)}": "1 1 0x10",
            f"twoway_ari_connected{_labels(A2)}": "1x12",
        },
        {"2m": [], "4m": [ON_A1]},
    ),
    Scenario(
        "TwowayDbListenDown",
        {
            f"twoway_db_listen_connected{_labels(A1)}": "1 1 0x10",
            f"twoway_db_listen_connected{_labels(A2)}": "1x12",
        },
        {"2m": [], "4m": [ON_A1]},
    ),
    Scenario(
        "TwowayAriReconnectsFrequent",
        {
            f"twoway_ari_reconnects_total{_labels(A1)}": "0 0 1 2 3 4 5 5x10",
            f"twoway_ari_reconnects_total{_labels(A2)}": "0 1 2 2x14",
        },
        {"3m": [], "10m": [ON_A1]},
    ),
    Scenario(
        "TwowaySuccessRatioLow",
        {
            # app-1: healthy for 30 minutes, then nothing is answered any more.
            f"{FINISHED}{_labels(A1, status='completed', result='answered')}": "0+10x30 300x30",
            f"{FINISHED}{_labels(A1, status='failed', result='callback_no_answer')}": (
                "0+2x30 70+10x29"
            ),
            f"{FINISHED}{_labels(A1, status='cancelled', result='cancelled')}": "0x60",
            # app-2: nothing answered either, but too few calls to judge (15 in 15 minutes).
            f"{FINISHED}{_labels(A2, status='completed', result='answered')}": "0x60",
            f"{FINISHED}{_labels(A2, status='failed', result='destination_busy')}": "0+1x60",
            # app-3: an operator cancels rows in bulk; those are no failed calls.
            f"{FINISHED}{_labels(A3, status='completed', result='answered')}": "0+5x60",
            f"{FINISHED}{_labels(A3, status='failed', result='callback_busy')}": "0x60",
            f"{FINISHED}{_labels(A3, status='cancelled', result='cancelled')}": "0+50x60",
        },
        {"25m": [], "60m": [ON_A1]},
    ),
    Scenario(
        "TwowayQueueBacklog",
        {
            # A database-wide gauge, reported alike by every instance: one alert per job.
            f"twoway_queue_due{_labels(A1)}": "0 500x10",
            f"twoway_queue_due{_labels(A2)}": "0 500x10",
        },
        {"4m": [], "8m": [{"job": JOB}]},
    ),
    Scenario(
        "TwowayAriErrorRateHigh",
        {
            # app-1: a quarter of all requests fail.
            f"twoway_ari_request_seconds_count{_labels(A1, op='originate')}": "0+60x30",
            f"twoway_ari_errors_total{_labels(A1, op='originate')}": "0+30x30",
            f"twoway_ari_request_seconds_count{_labels(A1, op='hangup')}": "0+60x30",
            f"twoway_ari_errors_total{_labels(A1, op='hangup')}": "0x30",
            # app-2: 5 % fail, under the threshold.
            f"twoway_ari_request_seconds_count{_labels(A2, op='originate')}": "0+60x30",
            f"twoway_ari_errors_total{_labels(A2, op='originate')}": "0+3x30",
            # app-3: all fail, but two requests a minute is too few to page on.
            f"twoway_ari_request_seconds_count{_labels(A3, op='ping')}": "0+2x30",
            f"twoway_ari_errors_total{_labels(A3, op='ping')}": "0+2x30",
        },
        {"5m": [], "20m": [ON_A1]},
    ),
    Scenario(
        "TwowayInboundSpike",
        {
            f"{REFUSALS}{_labels(A1, rule='inbound_spike')}": "0 0 0 5 10 15x10",
            f"{REFUSALS}{_labels(A1, rule='user_hourly')}": "0x15",
            # app-2: other refusals only; the spike guard never fired.
            f"{REFUSALS}{_labels(A2, rule='inbound_spike')}": "0x15",
            f"{REFUSALS}{_labels(A2, rule='destination_deny')}": "0+5x15",
        },
        {"2m": [], "6m": [ON_A1]},
    ),
    Scenario(
        "TwowayPolicyRefusals",
        {
            # app-1: 10 refusals a minute over two rules; app-2: 1 a minute, normal noise.
            f"{REFUSALS}{_labels(A1, rule='destination_deny')}": "0+6x30",
            f"{REFUSALS}{_labels(A1, rule='user_hourly')}": "0+4x30",
            f"{REFUSALS}{_labels(A2, rule='destination_deny')}": "0+1x30",
        },
        {"3m": [], "20m": [ON_A1]},
    ),
]


def _render_refs(text: str, labels: dict[str, str] | None = None) -> str:
    """The ``$labels.x`` an annotation uses, as a template, or as rendered with ``labels``."""
    refs = list(dict.fromkeys(LABEL_REF.findall(text)))
    if labels is None:
        return "labels:" + ",".join(f"{r}={{{{ $labels.{r} }}}}" for r in refs)
    return "labels:" + ",".join(f"{r}={labels[r]}" for r in refs)


def test_every_alert_has_a_scenario() -> None:
    assert {r["alert"] for r in load_rules()} == {s.alert for s in SCENARIOS}


@needs_promtool
def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    """promtool evaluates the rules over the scenarios' series.

    Annotations are replaced, in a copy of the rules, by the ``$labels.x`` they use: the alert
    must carry each of them (an annotation saying "ARI down on " helps nobody at 3 a.m.).
    The real templates are checked by ``promtool check rules`` above.
    """
    doc = yaml.safe_load(ALERTS_FILE.read_text())
    rules = {r["alert"]: r for g in doc["groups"] for r in g["rules"]}
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["annotations"] = {k: _render_refs(v) for k, v in rule["annotations"].items()}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(doc, sort_keys=False))

    tests = []
    for sc in SCENARIOS:
        rule = rules[sc.alert]
        checks = []
        for at, firing in sc.expect.items():
            expected = []
            for series_labels in firing:
                for key, text in rule["annotations"].items():
                    missing = set(LABEL_REF.findall(text)) - set(series_labels)
                    assert not missing, f"{sc.alert} {key} uses labels it lacks: {missing}"
                expected.append(
                    {
                        "exp_labels": {**series_labels, **rule["labels"]},
                        "exp_annotations": {
                            k: _render_refs(v, series_labels)
                            for k, v in rule["annotations"].items()
                        },
                    }
                )
            checks.append({"eval_time": at, "alertname": sc.alert, "exp_alerts": expected})
        tests.append(
            {
                "name": sc.alert,
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in sc.series.items()],
                "alert_rule_test": checks,
            }
        )
    unit = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "unit.yml").write_text(yaml.safe_dump(unit, sort_keys=False))

    done = subprocess.run(
        ["promtool", "test", "rules", "unit.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
