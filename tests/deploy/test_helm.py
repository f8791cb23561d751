"""The Helm chart `deploy/helm/modelhost`: rendered by Helm's own template engine (the
`helm-python-sdk` package binds Helm's Go SDK; no `helm` binary installs here), linted,
and every manifest validated against the Kubernetes API's schemas (kubernetes-validate)
for the oldest and the newest Kubernetes the chart supports; then what a cluster operator
relies on: probes, the migration hook's order, selectors, security, and bad values
refused with a message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from helm_python import Chart, lint
from helm_python.errors import HelmRenderError, HelmValuesError

from modelhost.config import Settings

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "modelhost"
DB_URL = "postgresql+psycopg://modelhost:secret@postgres:5432/modelhost"
KUBERNETES = ("1.30.0", "1.37.0")  # Chart.yaml's kubeVersion floor, and the newest schemas
EVERYTHING_ON: dict[str, Any] = {
    "secrets": {"MODELHOST_DB_URL": DB_URL, "MODELHOST_REDIS_URL": "redis://redis:6379/0",
                "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"},
    "tls": {"enabled": True, "secretName": "modelhost-tls"},
    "ingress": {"enabled": True, "className": "nginx", "tlsSecretName": "web-tls"},
    "autoscaling": {"enabled": False},
    "replicaCount": 3,
    "imagePullSecrets": [{"name": "registry"}],
    "nodeSelector": {"kubernetes.io/arch": "amd64"},
    "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
    "topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "modelhost"}}}],
}


def render(values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every rendered object, by kind (the chart renders one of each)."""
    with Chart.load(CHART) as chart:
        files = chart.render(values=values if values is not None
                             else {"secrets": {"MODELHOST_DB_URL": DB_URL}},
                             name="mh", namespace="ml", is_install=True)
    objects: dict[str, dict[str, Any]] = {}
    for text in files.values():
        for document in yaml.safe_load_all(text):
            if document:
                assert document["kind"] not in objects, document["kind"]
                objects[document["kind"]] = document
    return objects


def pod_spec(objects: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = objects[kind]["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("values", [None, EVERYTHING_ON], ids=["defaults", "everything-on"])
@pytest.mark.parametrize("version", KUBERNETES)
def test_every_manifest_is_valid_kubernetes(values: dict[str, Any] | None,
                                            version: str) -> None:
    objects = render(values)
    for obj in objects.values():
        kubernetes_validate.validate(obj, version, strict=True)  # raises on any error
    # And the validator does catch a broken manifest.
    broken = objects["Deployment"]
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = [1]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_the_chart_renders_what_an_operator_needs() -> None:
    objects = render()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "ConfigMap", "Secret", "Job", "ServiceAccount"} <= set(objects)
    assert "Ingress" not in objects  # off unless asked for
    container = pod_spec(objects, "Deployment")["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert container["args"] == ["--workers", "2"]
    assert objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] \
        == objects["Deployment"]["metadata"]["name"]
    assert "replicas" not in objects["Deployment"]["spec"]  # the HPA owns the count


def test_pods_run_as_a_non_root_user_with_a_read_only_root() -> None:
    objects = render()
    for kind in ("Deployment", "Job"):
        spec = pod_spec(objects, kind)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001  # the image's user
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            mounted = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounted  # the writable scratch a read-only root needs


def test_the_migration_job_runs_before_the_deployment_with_the_same_settings() -> None:
    objects = render()
    job = objects["Job"]
    hooks = job["metadata"]["annotations"]
    assert hooks["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert pod_spec(objects, "Job")["containers"][0]["command"] == ["modelhost", "db",
                                                                      "upgrade"]
    # Hooks run before the release's ordinary objects, so the settings it reads are
    # hooks too, and of a lower weight (created first).
    for kind in ("ConfigMap", "Secret"):
        annotations = objects[kind]["metadata"]["annotations"]
        assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        assert int(annotations["helm.sh/hook-weight"]) < int(hooks["helm.sh/hook-weight"])
    assert pod_spec(objects, "Job")["containers"][0]["envFrom"] \
        == pod_spec(objects, "Deployment")["containers"][0]["envFrom"]


def test_the_service_and_the_budget_select_the_servers_and_not_the_migration() -> None:
    objects = render()
    server = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    migration = objects["Job"]["spec"]["template"]["metadata"]["labels"]
    for selector in (objects["Service"]["spec"]["selector"],
                     objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                     objects["Deployment"]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= server.items()
        assert not selector.items() <= migration.items()


def test_settings_are_real_settings_and_secrets_stay_in_the_secret() -> None:
    objects = render(EVERYTHING_ON)
    known = {f"MODELHOST_{name.upper()}" for name in Settings.model_fields}
    settings = objects["ConfigMap"]["data"]
    secrets = objects["Secret"]["stringData"]
    for key in [*settings, *secrets]:
        assert not key.startswith("MODELHOST_") or key in known, f"{key} is no setting"
    assert secrets["MODELHOST_DB_URL"] == DB_URL
    assert not any("secret" in str(value) for value in settings.values())
    # The console's session secret: one for every replica, made at install when not
    # given (a valid setting), and the given one when it is.
    made = secrets["MODELHOST_CONSOLE_SECRET"]
    assert len(made) == 48 and made.isalnum()
    Settings(console_secret=made)
    given = render({"secrets": {"MODELHOST_DB_URL": DB_URL,
                                "MODELHOST_CONSOLE_SECRET": "s" * 40}})
    assert given["Secret"]["stringData"]["MODELHOST_CONSOLE_SECRET"] == "s" * 40
    # Serving HTTPS in the pod: the certificate mounted where the settings say, and the
    # probes speak HTTPS.
    assert settings["MODELHOST_SSL_CERTFILE"] == "/etc/modelhost/tls/tls.crt"
    container = pod_spec(objects, "Deployment")["containers"][0]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert any(m["mountPath"] == "/etc/modelhost/tls" and m["readOnly"]
               for m in container["volumeMounts"])
    assert objects["Deployment"]["spec"]["replicas"] == 3


def test_a_change_of_settings_rolls_the_pods() -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        annotations = render(values)["Deployment"]["spec"]["template"]["metadata"][
            "annotations"]
        return {k: v for k, v in annotations.items() if k.startswith("checksum/")}

    base = checksums({"secrets": {"MODELHOST_DB_URL": DB_URL}})
    assert base != checksums({"secrets": {"MODELHOST_DB_URL": DB_URL + "2"}})
    assert base != checksums({"secrets": {"MODELHOST_DB_URL": DB_URL},
                              "settings": {"MODELHOST_MAX_BATCH_SIZE": 32}})


def test_an_existing_secret_replaces_the_charts_own() -> None:
    objects = render({"existingSecret": "team-modelhost"})
    assert "Secret" not in objects
    env_from = pod_spec(objects, "Deployment")["containers"][0]["envFrom"]
    assert {"secretRef": {"name": "team-modelhost"}} in env_from


@pytest.mark.parametrize(("values", "message"), [
    ({}, "set secrets.MODELHOST_DB_URL"),
    ({"secrets": {"MODELHOST_DB_URL": DB_URL}, "tls": {"enabled": True}},
     "tls.enabled needs tls.secretName"),
    ({"existingSecret": "s", "replicaCount": "two"}, "/replicaCount"),
    ({"existingSecret": "s", "workerz": 2}, "'workerz' not allowed"),
    ({"existingSecret": "s", "settings": {"max-batch": 2}}, "'max-batch' does not match"),
    ({"existingSecret": "s", "image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
])
def test_bad_values_are_refused_with_a_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises((HelmRenderError, HelmValuesError)) as caught:
        render(values)
    assert message in str(caught.value)


def test_helm_lint_finds_nothing_wrong() -> None:
    report = lint(CHART, {"secrets": {"MODELHOST_DB_URL": DB_URL}}, strict=True,
                  kube_version="v1.30.0")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings, errors
    assert problems == []
