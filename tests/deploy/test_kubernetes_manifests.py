"""deploy/kubernetes and the step Jobs the runner renders, validated against the Kubernetes OpenAPI
schemas (kubernetes-validate ships them: no cluster needed) in strict mode, plus the wiring between the
manifests that no schema checks: names, the ConfigMap's driftloop.toml, probes, RBAC."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from driftloop.pipeline.executors import KubernetesExecutor
from driftloop.pipeline.training import training_pipeline
from driftloop.settings import KubernetesRunnerSettings, Settings, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# The oldest Kubernetes still in wide use and the newest the package ships: both must accept everything.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
EXAMPLE_RUN, EXAMPLE_ATTEMPT = "20260101-000000-abcdef", "0a1b2"


def _load(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(DEPLOY.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _load(path.name)
    ]


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for _, d in _manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _validate(doc: dict[str, Any]) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    "doc",
    [d for _, d in _manifests()],
    ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in _manifests()],
)
def test_every_shipped_manifest_is_valid(doc: dict[str, Any]) -> None:
    _validate(doc)


def _shipped_settings(tmp_path: Path) -> Settings:
    (configmap,) = [d for _, d in _manifests() if d["kind"] == "ConfigMap"]
    config = tmp_path / "driftloop.toml"
    config.write_text(configmap["data"]["driftloop.toml"])
    return load_settings(config)


def test_the_jobs_the_runner_renders_are_valid(tmp_path: Path) -> None:
    settings = _shipped_settings(tmp_path)
    cfg = settings.pipeline.runner
    assert isinstance(cfg, KubernetesRunnerSettings)
    variants = [
        cfg,
        cfg.model_copy(update={"config_map": None, "env_secret": None, "service_account": None}),
        cfg.model_copy(update={"cpu_limit": "1500m", "memory_limit": "3Gi", "image_pull_policy": "Always"}),
    ]
    for variant in variants:
        executor = KubernetesExecutor(variant, settings)
        for step in training_pipeline().steps:
            _validate(executor.manifest(step.name, EXAMPLE_RUN, 0.5))


def test_the_example_step_job_is_what_the_runner_renders(tmp_path: Path) -> None:
    settings = _shipped_settings(tmp_path)
    assert isinstance(settings.pipeline.runner, KubernetesRunnerSettings)
    executor = KubernetesExecutor(settings.pipeline.runner, settings)
    (example,) = _load("step-job.example.yaml")
    assert example == executor.manifest("train", EXAMPLE_RUN, attempt=EXAMPLE_ATTEMPT)


def test_the_configmap_is_the_config_the_cluster_runs_on(tmp_path: Path) -> None:
    settings = _shipped_settings(tmp_path)
    runner = settings.pipeline.runner
    assert isinstance(runner, KubernetesRunnerSettings)
    kustomization = _load("kustomization.yaml")[0]
    image = kustomization["images"][0]
    assert runner.image == f"{image['newName']}:{image['newTag']}"  # the steps run the Deployments' image
    assert runner.namespace == kustomization["namespace"]
    assert _one("ConfigMap", runner.config_map or "")["kind"] == "ConfigMap"
    assert _one("Secret", runner.env_secret or "")["kind"] == "Secret"
    assert _one("ServiceAccount", runner.service_account or "")["automountServiceAccountToken"] is False
    assert settings.tracking.uri == f"http://{_one('Service', 'driftloop-mlflow')['metadata']['name']}:5000"
    assert settings.serving.port == _container("driftloop-serve")["ports"][0]["containerPort"]


def _container(deployment: str) -> dict[str, Any]:
    pod = _one("Deployment", deployment)["spec"]["template"]["spec"]
    container: dict[str, Any] = pod["containers"][0]
    return container


def test_the_kustomization_applies_every_manifest_but_the_examples() -> None:
    (kustomization,) = _load("kustomization.yaml")
    listed = set(kustomization["resources"])
    shipped = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == {name for name in shipped if not name.endswith(".example.yaml")}


def test_serve_probes_scaling_and_the_single_scheduler() -> None:
    serve = _container("driftloop-serve")
    assert serve["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert serve["livenessProbe"]["httpGet"]["path"] == "/health"
    hpa = _one("HorizontalPodAutoscaler", "driftloop-serve")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "driftloop-serve"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "cpu" in serve["resources"]["requests"]  # CPU utilisation is relative to the request
    scheduler = _one("Deployment", "driftloop-scheduler")
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"]["type"] == "Recreate"
    assert _container("driftloop-scheduler")["command"][-1] == "scheduler"


def test_only_the_scheduler_may_run_step_jobs() -> None:
    binding = _one("RoleBinding", "driftloop-scheduler-runs-steps")
    assert [s["name"] for s in binding["subjects"]] == ["driftloop-scheduler"]
    role = _one("Role", binding["roleRef"]["name"])
    granted = {(res, verb) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]}
    # What the runner's kubectl calls need: apply, get -o json, delete, the pod's exit code and log.
    needed = {("jobs", v) for v in ("get", "create", "patch", "delete")} | {
        ("pods", "list"),
        ("pods/log", "get"),
    }
    assert needed <= granted
    scheduler = _one("Deployment", "driftloop-scheduler")["spec"]["template"]["spec"]
    assert scheduler["serviceAccountName"] == "driftloop-scheduler"
    for other in ("driftloop-serve", "driftloop-mlflow"):
        assert _one("Deployment", other)["spec"]["template"]["spec"]["serviceAccountName"] == "driftloop"


def _broken(what: str) -> dict[str, Any]:
    doc = copy.deepcopy(_one("Deployment", "driftloop-serve"))
    container = doc["spec"]["template"]["spec"]["containers"][0]
    if what == "wrong type":
        doc["spec"]["replicas"] = "two"
    elif what == "misspelt field":
        container["imagePulPolicy"] = container.pop("imagePullPolicy")
    elif what == "missing required":
        del container["name"]
    return doc


@pytest.mark.parametrize("what", ["wrong type", "misspelt field", "missing required"])
def test_a_broken_manifest_is_rejected(what: str) -> None:
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(_broken(what))


def test_a_broken_rendered_job_is_rejected(tmp_path: Path) -> None:
    cfg = KubernetesRunnerSettings(type="kubernetes", image="i")
    job = KubernetesExecutor(cfg, load_settings(cwd=tmp_path)).manifest("train", EXAMPLE_RUN)
    job["spec"]["activeDeadlineSeconds"] = "an hour"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(job)
