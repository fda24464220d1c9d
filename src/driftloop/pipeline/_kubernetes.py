"""A pipeline step as a Kubernetes Job: the manifest, and kubectl driving it to an end (decision 0068).

The runner applies the Job, then polls ``kubectl get job NAME -o json`` until the Job has the condition
``Complete`` or ``Failed`` (``kubectl wait`` takes one condition, so waiting on it for ``complete``
noticed a failed Job only at the timeout). A failed Job's exit code is its pod's; a Job past its
``activeDeadlineSeconds`` (the step timeout) is 124, as a local step killed at its timeout is. The pod's
log is fetched into the step log whatever the outcome.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path
    from typing import BinaryIO

    from driftloop.settings import KubernetesRunnerSettings

__all__ = ["CONFIG_DIR", "CONFIG_KEY", "TIMED_OUT", "config_path", "job_manifest", "job_name", "run_job"]

CONFIG_DIR = "/etc/driftloop"  # where the ConfigMap is mounted in the step's container
CONFIG_KEY = "driftloop.toml"
TIMED_OUT = 124  # the exit code of a step killed at its timeout, whatever runs it
_CALL_TIMEOUT_S = 120.0  # one kubectl call; the API server answers in well under that or is down
_NAME_LIMIT = 63  # a Job's name is a pod label value


def config_path(cfg: KubernetesRunnerSettings) -> str | None:
    """The ``--config`` the step command gets inside its container, or None without a ConfigMap."""
    return f"{CONFIG_DIR}/{CONFIG_KEY}" if cfg.config_map else None


def job_name(step: str, run_id: str, attempt: str | None = None) -> str:
    """``driftloop-<run>-<step>-<attempt>``: a DNS label, unique per attempt (a resumed step gets a new
    Job instead of finding its failed predecessor's conditions)."""
    suffix = attempt if attempt is not None else uuid.uuid4().hex[:5]
    stem = re.sub(r"[^a-z0-9]", "-", f"driftloop-{run_id}-{step}".lower())
    stem = stem[: _NAME_LIMIT - len(suffix) - 1].rstrip("-")
    return f"{stem}-{suffix}"


def job_manifest(
    cfg: KubernetesRunnerSettings, name: str, command: list[str], labels: dict[str, str], timeout_s: float
) -> dict[str, Any]:
    """The Job: one pod, no retries (the pipeline owns retry and resume), the step command, killed at
    ``timeout_s`` (activeDeadlineSeconds) and garbage-collected ``ttl_after_finished_s`` after it ends."""
    limits = {"memory": cfg.memory_limit or cfg.memory}
    if cfg.cpu_limit:
        limits["cpu"] = cfg.cpu_limit
    container: dict[str, Any] = {
        "name": "step",
        "image": cfg.image,
        "imagePullPolicy": cfg.image_pull_policy,
        "command": command,
        "resources": {"requests": {"cpu": cfg.cpu, "memory": cfg.memory}, "limits": limits},
        # What the "restricted" Pod Security Standard asks of a container (deploy/kubernetes's namespace).
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        # A step talks to the database, the store and MLflow, never to the Kubernetes API.
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": cfg.run_as_user,
            "runAsGroup": cfg.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if cfg.env_secret:
        container["envFrom"] = [{"secretRef": {"name": cfg.env_secret}}]
    if cfg.config_map:
        container["volumeMounts"] = [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}]
        pod["volumes"] = [
            {
                "name": "config",
                "configMap": {"name": cfg.config_map, "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]},
            }
        ]
    if cfg.service_account:
        pod["serviceAccountName"] = cfg.service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, math.ceil(timeout_s)),
            "ttlSecondsAfterFinished": cfg.ttl_after_finished_s,
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }


def run_job(cfg: KubernetesRunnerSettings, manifest: dict[str, Any], log: Path, timeout_s: float) -> int:
    """Apply ``manifest``, follow the Job to its end, append kubectl's output and the pod's log to ``log``;
    return 0 (Complete), the pod's exit code (Failed), 124 (past its deadline, or no verdict from the
    cluster ``deadline_grace_s`` after it: the Job is then deleted) or kubectl's own failure code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    name = manifest["metadata"]["name"]
    with log.open("ab") as fh:
        kubectl = _Kubectl(cfg, fh)
        applied = kubectl.call(["apply", "-f", "-"], stdin=json.dumps(manifest))
        if applied.returncode != 0:
            return applied.returncode
        code = _await(kubectl, name, timeout_s + cfg.deadline_grace_s, cfg.poll_s)
        kubectl.note(f"job/{name}: pod log follows")
        kubectl.call(["logs", f"job/{name}", "--all-containers=true"])
        if code is None:  # the cluster never said: stop the Job ourselves, it must not run on unseen
            kubectl.call(["delete", "job", name, "--ignore-not-found=true", "--wait=false"])
            return TIMED_OUT
        return code


def _await(kubectl: _Kubectl, name: str, patience_s: float, poll_s: float) -> int | None:
    """The Job's exit code once it has ended; None when it has not after ``patience_s``."""
    give_up = time.monotonic() + patience_s
    while True:
        job = kubectl.json(["get", "job", name, "-o", "json"])
        if job is _GONE:
            kubectl.note(f"job/{name} no longer exists (deleted by someone else?)")
            return 1
        if isinstance(job, dict):
            done = _verdict(kubectl, name, job)
            if done is not None:
                return done
        left = give_up - time.monotonic()
        if left <= 0:
            kubectl.note(f"job/{name}: no Complete or Failed condition after {patience_s:.0f}s; deleting it")
            return None
        time.sleep(min(poll_s, left))


def _verdict(kubectl: _Kubectl, name: str, job: dict[str, Any]) -> int | None:
    conditions = job.get("status", {}).get("conditions") or []
    true = {c.get("type"): c for c in conditions if c.get("status") == "True"}
    if "Complete" in true:
        return 0
    failed = true.get("Failed")
    if failed is None:
        return None
    reason, message = failed.get("reason", ""), failed.get("message", "")
    kubectl.note(f"job/{name} failed: {reason} {message}".rstrip())
    if reason == "DeadlineExceeded":
        return TIMED_OUT
    return _pod_exit_code(kubectl, name) or 1


def _pod_exit_code(kubectl: _Kubectl, name: str) -> int | None:
    pods = kubectl.json(["get", "pods", "-l", f"job-name={name}", "-o", "json"])
    if not isinstance(pods, dict):
        return None
    for pod in reversed(pods.get("items") or []):
        for status in pod.get("status", {}).get("containerStatuses") or []:
            terminated = status.get("state", {}).get("terminated")
            if status.get("name") == "step" and terminated and terminated.get("exitCode") is not None:
                return int(terminated["exitCode"])
    return None


_GONE = object()  # `kubectl get` said NotFound


class _Kubectl:
    """kubectl in the runner's namespace, its diagnostics (and the output asked for) in the step log."""

    def __init__(self, cfg: KubernetesRunnerSettings, log: BinaryIO) -> None:
        self._head = [cfg.kubectl, "--namespace", cfg.namespace]
        self._log = log
        self._last_error = b""

    def note(self, line: str) -> None:
        self._log.write(f"[driftloop] {line}\n".encode())
        self._log.flush()

    def call(
        self, args: list[str], *, stdin: str | None = None, to_log: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            done = subprocess.run(
                [*self._head, *args],
                input=stdin.encode() if stdin is not None else None,
                stdout=self._log if to_log else subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=_CALL_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            self.note(f"cannot start {self._head[0]!r}: not found")
            return subprocess.CompletedProcess(args, 127, b"", b"")
        except subprocess.TimeoutExpired:
            self.note(f"kubectl {args[0]} did not answer in {_CALL_TIMEOUT_S:.0f}s")
            return subprocess.CompletedProcess(args, 1, b"", b"")
        # A poll that keeps failing the same way writes its error once, not every poll_s.
        if done.stderr and (done.returncode == 0 or done.stderr != self._last_error):
            self._log.write(done.stderr)
            self._log.flush()
        self._last_error = done.stderr if done.returncode != 0 else b""
        return done

    def json(self, args: list[str]) -> dict[str, Any] | object | None:
        """``kubectl ARGS`` parsed as JSON; ``_GONE`` when the object is not found; None on any other
        failure (an API server restarting: the caller polls again)."""
        done = self.call(args, to_log=False)
        if done.returncode != 0:
            return _GONE if b"NotFound" in done.stderr else None
        try:
            parsed = json.loads(done.stdout)
        except ValueError:
            self.note(f"kubectl {' '.join(args[:2])} printed no JSON")
            return None
        return parsed if isinstance(parsed, dict) else None
