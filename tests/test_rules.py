"""promtool over prometheus/: the rule files are valid, their unit tests pass, every alert is tested both
firing and quiet, the alerts follow the conventions, and the example Prometheus config is valid."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_server import RULE_FILES, RULES_DIR, promtool, require_prometheus_tools

pytestmark = pytest.mark.prometheus

UNIT_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))
EXAMPLE_CONFIG = RULES_DIR / "prometheus.example.yml"
RUNBOOK = "https://example.invalid/cdm-exporter/blob/main/README.md#"


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.stdout}\n{result.stderr}"


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    require_prometheus_tools()
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, output(result)
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests() -> None:
    require_prometheus_tools()
    assert len(UNIT_TESTS) >= 3
    result = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, output(result)
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS), output(result)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        document = yaml.safe_load(path.read_text())
        assert {"../alerts.yml"} <= set(document["rule_files"]) or path.name == "recording.test.yml", path
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
                for alert in case.get("exp_alerts") or []:
                    # exact expectations: severity and every annotation are spelled out
                    assert "severity" in alert["exp_labels"], (path.name, case)
                    assert {"summary", "description", "runbook_url"} <= set(alert["exp_annotations"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts without a firing test case"
    assert names - quiet == set(), "alerts without a test case where they do not fire"
    assert fires <= names and quiet <= names, "tests of alerts that do not exist"


def test_alert_conventions() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    required = {
        "CdmJobFailed",
        "CdmJobNotSucceededRecently",
        "CdmJobStuck",
        "CdmClusterNotNormal",
        "CdmExporterApiDown",
        "CdmClusterUnreachable",
        "CdmExporterThrottled",
        "CdmExporterDown",
        "CdmJobStatusStale",
        "CdmJobNeverSucceeded",
        "CdmJobFailureRatioHigh",
    }
    assert required <= set(names)
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name} needs for:"
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert annotations["runbook_url"] == RUNBOOK + name.lower(), name
        if "job_name" in rule["expr"] or name.startswith("CdmJob"):
            for key in ("summary", "description"):
                if name != "CdmJobStatusStale":  # one alert per cluster, not per job
                    assert "{{ $labels.job_name }}" in annotations[key], (name, key)
                assert "{{ $labels.cluster_name }}" in annotations[key], (name, key)


def test_example_config_is_valid() -> None:
    require_prometheus_tools()
    result = promtool("check", "config", str(EXAMPLE_CONFIG))
    assert result.returncode == 0, output(result)
    assert "2 rule files found" in result.stdout
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert "cdm" in job["job_name"], "CdmExporterDown selects up{job=~'.*cdm.*'}"
    assert (job["scrape_interval"], job["scrape_timeout"]) == ("15s", "10s")


def test_commented_probe_variant_is_valid(tmp_path: Path) -> None:
    """The commented /probe?target=NAME job is valid once uncommented."""
    require_prometheus_tools()
    lines = EXAMPLE_CONFIG.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  # - job_name:"))
    block = [re.sub(r"^  # ?", "  ", line) for line in lines[start:] if line.startswith("  #")]
    config = tmp_path / "probe.yml"
    config.write_text("scrape_configs:\n" + "\n".join(block) + "\n")
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, output(result) + "\n" + config.read_text()
    (job,) = yaml.safe_load(config.read_text())["scrape_configs"]
    assert job["metrics_path"] == "/probe"
    assert {"target_label": "__param_target", "source_labels": ["__address__"]} in job["relabel_configs"]


def commented_rule_files() -> list[list[str]]:
    """The example rules files commented in recording.yml (each starts with "#   groups:")."""
    lines = (RULES_DIR / "recording.yml").read_text().splitlines()
    blocks = []
    for start in (i for i, line in enumerate(lines) if line.strip() == "#   groups:"):
        block = []
        for line in lines[start:]:
            if not line.strip().startswith("#   "):
                break
            block.append(line.split("#   ", 1)[1])
        blocks.append(block)
    return blocks


@pytest.mark.parametrize(
    "override", ["cdm_job:success_max_age_seconds:override", "cdm_job:failure_ratio_max:override"]
)
def test_commented_override_example_is_valid(tmp_path: Path, override: str) -> None:
    """The example rules file for each per-job override in recording.yml is valid and defines it."""
    require_prometheus_tools()
    examples = [b for b in commented_rule_files() if any(override in line for line in b)]
    assert len(examples) == 1, f"one commented example for {override}"
    rules = tmp_path / "overrides.yml"
    rules.write_text("\n".join(examples[0]) + "\n")
    result = promtool("check", "rules", str(rules))
    assert result.returncode == 0, output(result) + "\n" + rules.read_text()
    (group,) = yaml.safe_load(rules.read_text())["groups"]
    assert {r["record"] for r in group["rules"]} == {override}
    assert all(set(r["labels"]) == {"cluster_name", "job_name"} for r in group["rules"])
