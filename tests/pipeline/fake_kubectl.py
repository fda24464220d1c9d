#!/usr/bin/env python3
"""A fake ``kubectl`` with a one-node "cluster" in a directory, for testing the Kubernetes runner.

It follows the real command's contract for what the runner and an operator use: the output lines,
the error messages and the exit codes of ``apply -f -``, ``get job|pods -o json``, ``wait
--for=condition=…``, ``logs job/NAME`` and ``delete job``; the API server's checks the runner could trip
(a Job's namespace against ``--namespace``, an immutable Job applied again with another template,
``restartPolicy``); and the Job controller's: ``backoffLimit: 0`` (the first failure fails the Job),
``activeDeadlineSeconds`` (Failed, reason DeadlineExceeded), ``ttlSecondsAfterFinished``, the
conditions a 1.31+ cluster sets (SuccessCriteriaMet/FailureTarget, then Complete/Failed).

Applying a Job really runs it: a detached "kubelet" process executes the container's command on this
machine, with the ConfigMap volumes written to a directory standing for their mount path, the Secret
in ``envFrom`` as environment, and the "image's" environment (PATH, PYTHONPATH, HOME, …) taken from
this process's. A volume whose ConfigMap (or an ``envFrom`` Secret) is missing keeps the pod waiting,
as a real kubelet does, until the deadline fails the Job.

The cluster lives in ``$FAKE_KUBECTL_STATE``. Standard library only: it runs under any Python 3.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_IMAGE_ENV = ("PATH", "PYTHONPATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
_POLL_S = 0.05


def main(argv: list[str]) -> int:
    if argv[:1] == ["_kubelet"]:
        return _kubelet(Path(argv[3]), argv[1], argv[2])
    state = os.environ.get("FAKE_KUBECTL_STATE")
    if not state:
        return _error("error: FAKE_KUBECTL_STATE is not set (the fake cluster's directory)")
    namespace, flags, words = _parse(argv)
    cluster = Path(state)
    if not words:
        return _error('error: You must specify the type of resource to get. Use "kubectl api-resources"')
    verb, rest = words[0], words[1:]
    commands = {"apply": _apply, "get": _get, "wait": _wait, "logs": _logs, "delete": _delete}
    if verb not in commands:
        return _error(f'error: unknown command "{verb}" for "kubectl"')
    return commands[verb](cluster, namespace, flags, rest)


def _parse(argv: list[str]) -> tuple[str, dict[str, str], list[str]]:
    """``--namespace``/``-n`` anywhere, ``--flag=value``, ``--flag value`` for the flags that take one."""
    valued = {
        "-n",
        "--namespace",
        "-f",
        "--filename",
        "-o",
        "--output",
        "-l",
        "--selector",
        "--for",
        "--timeout",
    }
    flags: dict[str, str] = {}
    words: list[str] = []
    items = iter(argv)
    for item in items:
        if item.startswith("-"):
            key, eq, value = item.partition("=")
            if not eq and key in valued:
                value = next(items, "")
            flags[key] = value if (eq or key in valued) else "true"
        else:
            words.append(item)
    short = {"-n": "--namespace", "-f": "--filename", "-o": "--output", "-l": "--selector"}
    flags = {short.get(k, k): v for k, v in flags.items()}
    return flags.pop("--namespace", "default"), flags, words


def _error(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


# --- apply ---------------------------------------------------------------------------------------------


def _apply(cluster: Path, namespace: str, flags: dict[str, str], _rest: list[str]) -> int:  # noqa: PLR0911 - one per API answer
    if flags.get("--filename") != "-":
        return _error("error: must specify one of -f and -k")
    text = sys.stdin.read()
    try:
        obj = json.loads(text)  # the runner sends JSON; kubectl reads YAML too, which this fake does not
    except ValueError as exc:
        return _error(f"error: error parsing STDIN: {exc}")
    kind, version = obj.get("kind"), obj.get("apiVersion")
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        return _error("error: error when retrieving current configuration: resource name may not be empty")
    if meta.get("namespace", namespace) != namespace:
        return _error(
            f'error: the namespace from the provided object "{meta["namespace"]}" does not match the '
            f"namespace \"{namespace}\". You must pass '--namespace={meta['namespace']}' to perform "
            "this operation."
        )
    if (kind, version) in {("ConfigMap", "v1"), ("Secret", "v1")}:
        return _store_plain(cluster / namespace / kind.lower(), name, obj)
    if (kind, version) != ("Job", "batch/v1"):
        return _error(
            f'error: resource mapping not found for name: "{name}" namespace: "{namespace}" from "STDIN": '
            f'no matches for kind "{kind}" in version "{version}"'
        )
    problem = _job_problem(obj)
    if problem:
        return _error(f'The Job "{name}" is invalid: {problem}')
    job = _job_dir(cluster, namespace, name)
    if job.exists():
        old = json.loads((job / "manifest.json").read_text())
        if old["spec"]["template"] != obj["spec"]["template"]:
            return _error(f'The Job "{name}" is invalid: spec.template: Invalid value: field is immutable')
        print(f"job.batch/{name} unchanged")
        return 0
    job.mkdir(parents=True)
    (job / "manifest.json").write_text(json.dumps(obj))
    _write_status(job, {"startTime": _now(), "active": 1})
    with (job / "kubelet.err").open("wb") as err:
        subprocess.Popen(
            [sys.executable, __file__, "_kubelet", namespace, name, str(cluster)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    print(f"job.batch/{name} created")
    return 0


def _store_plain(directory: Path, name: str, obj: dict[str, Any]) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    verb = "configured" if path.exists() else "created"
    path.write_text(json.dumps(obj))
    print(f"{obj['kind'].lower()}/{name} {verb}")
    return 0


def _job_problem(obj: dict[str, Any]) -> str | None:
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod.get("containers") or []
    if not containers:
        return "spec.template.spec.containers: Required value"
    if pod.get("restartPolicy") not in {"Never", "OnFailure"}:
        return 'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'
    if not all(c.get("image") and c.get("name") for c in containers):
        return "spec.template.spec.containers[0].image: Required value"
    return None


# --- the kubelet ---------------------------------------------------------------------------------------


def _kubelet(cluster: Path, namespace: str, name: str) -> int:
    """Run the Job's one container to its end (or its deadline) and record the Job's conditions."""
    job = _job_dir(cluster, namespace, name)
    manifest = json.loads((job / "manifest.json").read_text())
    spec = manifest["spec"]
    deadline = time.monotonic() + spec.get("activeDeadlineSeconds", 10**9)
    container = spec["template"]["spec"]["containers"][0]
    ready = _prepare(cluster, namespace, job, spec["template"]["spec"], container)
    while ready is None and time.monotonic() < deadline:  # ContainerCreating: a volume or Secret missing
        time.sleep(_POLL_S)
        ready = _prepare(cluster, namespace, job, spec["template"]["spec"], container)
    if ready is None:
        return _finish(job, None, "DeadlineExceeded", "Job was active longer than specified deadline")
    command, env, workdir = ready
    with (job / "log").open("wb") as log:
        try:
            child = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir, start_new_session=True
            )
        except OSError as exc:
            log.write(f"exec {command[0]}: {exc}\n".encode())
            return _finish(job, 128, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        (job / "container.pid").write_text(str(child.pid))
        try:
            code = child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return _finish(job, 137, "DeadlineExceeded", "Job was active longer than specified deadline")
    if code == 0:
        return _finish(job, 0, None, None)
    return _finish(job, code, "BackoffLimitExceeded", "Job has reached the specified backoff limit")


def _prepare(
    cluster: Path, namespace: str, job: Path, pod: dict[str, Any], container: dict[str, Any]
) -> tuple[list[str], dict[str, str], str] | None:
    """The container's command with its mounts mapped to local directories, its environment and working
    directory; None while a ConfigMap or Secret it needs does not exist."""
    mounts: dict[str, Path] = {}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        source = volumes[mount["name"]].get("configMap")
        cm_path = cluster / namespace / "configmap" / f"{source['name']}.json" if source else None
        if cm_path is None or not cm_path.exists():
            return None
        data = json.loads(cm_path.read_text()).get("data") or {}
        local = job / "volumes" / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        for item in source.get("items") or [{"key": k, "path": k} for k in data]:
            (local / item["path"]).write_text(data[item["key"]])
        mounts[mount["mountPath"].rstrip("/")] = local
    env = {k: os.environ[k] for k in _IMAGE_ENV if k in os.environ}
    for source in container.get("envFrom") or []:
        secret = cluster / namespace / "secret" / f"{source['secretRef']['name']}.json"
        if not secret.exists():
            return None
        obj = json.loads(secret.read_text())
        env |= {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        env |= obj.get("stringData") or {}
    env |= {e["name"]: e.get("value", "") for e in container.get("env") or []}

    def mapped(arg: str) -> str:
        for path, local in mounts.items():
            if arg == path or arg.startswith(path + "/"):
                return str(local) + arg[len(path) :]
        return arg

    workdir = job / "workdir"
    workdir.mkdir(exist_ok=True)
    command = [mapped(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
    return command, env, container.get("workingDir", str(workdir))


def _finish(job: Path, code: int | None, reason: str | None, message: str | None) -> int:
    now = _now()
    status = json.loads((job / "status.json").read_text())
    status.pop("active", None)
    if reason is None:
        status |= {"succeeded": 1, "completionTime": now}
        conditions = [("SuccessCriteriaMet", "CompletionsReached"), ("Complete", "CompletionsReached")]
    else:
        status["failed"] = 1
        conditions = [("FailureTarget", reason), ("Failed", reason)]
    status["conditions"] = [
        {"type": t, "status": "True", "reason": r, "message": message or "", "lastTransitionTime": now}
        for t, r in conditions
    ]
    status["finishedAt"] = time.time()  # the fake's own bookkeeping for ttlSecondsAfterFinished
    if code is not None:
        status["exitCode"] = code
    _write_status(job, status)
    return 0


# --- get, wait, logs, delete ---------------------------------------------------------------------------


def _get(cluster: Path, namespace: str, flags: dict[str, str], rest: list[str]) -> int:
    if flags.get("--output") != "json":
        return _error("error: this fake kubectl prints -o json only")
    kind, name = _target(rest)
    if kind in {"pod", "pods"}:
        selector = flags.get("--selector", "")
        key, _, value = selector.partition("=")
        if key not in {"job-name", "batch.kubernetes.io/job-name"}:
            return _error(f"error: this fake kubectl selects pods by job-name only, not {selector!r}")
        job = _live_job(cluster, namespace, value)
        items = [_pod(job, namespace, value)] if job else []
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        return 0
    if kind not in {"job", "jobs"} or not name:
        return _error(f'error: the server doesn\'t have a resource type "{kind}"')
    job = _live_job(cluster, namespace, name)
    if job is None:
        return _error(f'Error from server (NotFound): jobs.batch "{name}" not found')
    obj = json.loads((job / "manifest.json").read_text())
    status = _read_status(job)
    status.pop("exitCode", None)
    status.pop("finishedAt", None)
    print(json.dumps({**obj, "status": status}))
    return 0


def _pod(job: Path, namespace: str, name: str) -> dict[str, Any]:
    status = _read_status(job)
    if "exitCode" in status:
        state: dict[str, Any] = {"terminated": {"exitCode": status["exitCode"]}}
    elif (job / "container.pid").exists():
        state = {"running": {}}
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
    return {
        "metadata": {"name": f"{name}-fake0", "namespace": namespace, "labels": {"job-name": name}},
        "status": {"containerStatuses": [{"name": "step", "state": state}]},
    }


def _wait(cluster: Path, namespace: str, flags: dict[str, str], rest: list[str]) -> int:
    _kind, name = _target(rest)
    wanted = flags.get("--for", "").removeprefix("condition=").lower()
    timeout = _seconds(flags.get("--timeout", "30s"))
    if not wanted:
        return _error("error: --for must be set")
    give_up = time.monotonic() + timeout
    while True:
        job = _live_job(cluster, namespace, name)
        if job is None:
            return _error(f'Error from server (NotFound): jobs.batch "{name}" not found')
        conditions = _read_status(job).get("conditions") or []
        if any(c["type"].lower() == wanted and c["status"] == "True" for c in conditions):
            print(f"job.batch/{name} condition met")
            return 0
        if time.monotonic() >= give_up:
            return _error(f"error: timed out waiting for the condition on jobs/{name}")
        time.sleep(_POLL_S)


def _logs(cluster: Path, namespace: str, _flags: dict[str, str], rest: list[str]) -> int:
    kind, name = _target(rest)
    job = _live_job(cluster, namespace, name) if kind in {"job", "jobs"} else None
    if job is None:
        return _error(f'Error from server (NotFound): jobs.batch "{name}" not found')
    if not (job / "log").exists():
        return _error(
            f'Error from server (BadRequest): container "step" in pod "{name}-fake0" is waiting to start: '
            "ContainerCreating"
        )
    sys.stdout.write((job / "log").read_text(errors="replace"))
    return 0


def _delete(cluster: Path, namespace: str, flags: dict[str, str], rest: list[str]) -> int:
    kind, name = _target(rest)
    job = _live_job(cluster, namespace, name) if kind in {"job", "jobs"} else None
    if job is None:
        if flags.get("--ignore-not-found") == "true":
            return 0
        return _error(f'Error from server (NotFound): jobs.batch "{name}" not found')
    _kill(job)
    job.rename(job.with_name(f"{job.name}.deleted-{time.time_ns()}"))
    print(f'job.batch "{name}" deleted')
    return 0


def reap(cluster: Path) -> None:
    """Kill every container still running in ``cluster`` (a test's teardown)."""
    for pid_file in cluster.glob("*/job/*/container.pid"):
        _kill(pid_file.parent)


def _kill(job: Path) -> None:
    pid_file = job / "container.pid"
    if pid_file.exists() and "exitCode" not in _read_status(job):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


# --- state ---------------------------------------------------------------------------------------------


def _target(rest: list[str]) -> tuple[str, str]:
    """``job/NAME`` or ``job NAME``."""
    if rest and "/" in rest[0]:
        kind, _, name = rest[0].partition("/")
        return kind, name
    return (rest[0] if rest else ""), (rest[1] if len(rest) > 1 else "")


def _job_dir(cluster: Path, namespace: str, name: str) -> Path:
    return cluster / namespace / "job" / name


def _live_job(cluster: Path, namespace: str, name: str) -> Path | None:
    """The Job's directory, unless it does not exist or ttlSecondsAfterFinished has collected it."""
    job = _job_dir(cluster, namespace, name)
    if not (job / "status.json").exists():
        return None
    ttl = json.loads((job / "manifest.json").read_text())["spec"].get("ttlSecondsAfterFinished")
    finished = _read_status(job).get("finishedAt")
    if ttl is not None and finished is not None and time.time() > finished + ttl:
        return None
    return job


def _read_status(job: Path) -> dict[str, Any]:
    status: dict[str, Any] = json.loads((job / "status.json").read_text())
    return status


def _write_status(job: Path, status: dict[str, Any]) -> None:
    tmp = job / "status.json.tmp"
    tmp.write_text(json.dumps(status))
    tmp.replace(job / "status.json")  # readers never see half a file


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
