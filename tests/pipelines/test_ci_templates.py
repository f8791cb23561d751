"""examples/ci: valid YAML that runs the pipeline and fails the job through its exit code."""

from __future__ import annotations

from pathlib import Path

import yaml

CI = Path(__file__).resolve().parents[2] / "examples" / "ci"


def commands(job: dict[str, object]) -> str:
    if "steps" in job:  # GitHub Actions
        return "\n".join(str(s.get("run", "")) for s in job["steps"])  # type: ignore[attr-defined]
    return "\n".join(str(line) for line in job["script"])  # type: ignore[attr-defined]


def test_github_actions_runs_the_pipeline_on_push() -> None:
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key 'on' as a boolean
    assert triggers["push"] == {"branches": ["main"]} and "repository_dispatch" in triggers
    script = commands(workflow["jobs"]["pipeline"])
    assert 'modelhost pipeline run "$PIPELINE" --reason "$REASON"' in script
    assert "|| true" not in script and "continue-on-error" not in str(workflow)
    assert workflow["jobs"]["pipeline"]["env"]["PIPELINE"] == "examples/churn/modelhost.yaml"


def test_gitlab_ci_runs_the_pipeline_on_push() -> None:
    config = yaml.safe_load((CI / ".gitlab-ci.yml").read_text())
    job = config["model-pipeline"]
    assert any('$CI_PIPELINE_SOURCE == "push"' in rule["if"] for rule in job["rules"])
    script = commands(job)
    assert 'modelhost pipeline run "$PIPELINE" --reason "$RETRAIN_REASON"' in script
    assert "allow_failure" not in job and "|| true" not in script
    assert (CI.parent / "churn" / "modelhost.yaml").is_file()
