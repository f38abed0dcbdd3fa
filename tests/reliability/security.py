"""Security rows: no code runs from data, servers listen on loopback, no secret reaches a record.

security-audit        an AST walk over the library packages: no unpickling, torch.load without
                      weights_only=True, yaml.load without a SafeLoader, eval/exec, tar
                      extraction, pickle-backed numpy/pandas loads; the one allowed unpickler is
                      RefCOCO's class-refusing one, behind ``--trust-pickle``. A trial is a file.
security-pickle       hostile pickles whose ``__reduce__`` would create a marker file, through the
                      refcoco builder, its CLI and its Prefect flow, and a crafted optimizer.pt
                      through the training checkpoint reader: refused, marker never created.
security-bind         every listening socket of a started LocalServer and of a local Ray cluster
                      (ray_session, in a child process with all its descendants) is on loopback.
security-credentials  a build_all run with canary secrets in its environment: the canary is in no
                      artifact, flow-run log, flow/task-run parameter, or file written.
"""

from __future__ import annotations

import ast
import ipaddress
import json
import pickle
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from tests.reliability.prefect_env import child_env, prefect_api, task_runs
from tests.reliability.trials import REPO, Outcome, Scenario

LIBRARY = ("datasets_builders", "training", "models", "pipelines")
#: (file, finding) allowed: RefCOCO's unpickler refuses every class and runs only with --trust-pickle
ALLOWED = {("datasets_builders/sources/refcoco.py", "a pickle.Unpickler subclass")}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


# -- the audit -------------------------------------------------------------------------------------------

def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def audit_source(text: str) -> list[str]:
    """The unsafe loads in one module's source, as "line N: what"."""
    tree = ast.parse(text)
    safe_loaders = set(SAFE_YAML_LOADERS)
    for node in ast.walk(tree):  # a class deriving from a safe loader is safe (training/plan.py's)
        if isinstance(node, ast.ClassDef) and any(_dotted(b).rsplit(".", 1)[-1] in safe_loaders for b in node.bases):
            safe_loaders.add(node.name)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(_dotted(b) in ("pickle.Unpickler", "Unpickler") for b in node.bases):
            found.append((node.lineno, "a pickle.Unpickler subclass"))
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        short = name.rsplit(".", 1)[-1]
        if name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.loads", "dill.load", "dill.loads",
                    "joblib.load", "marshal.loads", "shelve.open", "pd.read_pickle", "pandas.read_pickle"):
            found.append((node.lineno, f"{name}()"))
        elif name == "torch.load" and not _is_true(_keyword(node, "weights_only")):
            found.append((node.lineno, "torch.load() without weights_only=True"))
        elif name == "yaml.load" and _dotted(_keyword(node, "Loader") or ast.Name("")).rsplit(".", 1)[-1] \
                not in safe_loaders:
            found.append((node.lineno, "yaml.load() without a SafeLoader"))
        elif name in ("yaml.unsafe_load", "yaml.full_load"):
            found.append((node.lineno, f"{name}()"))
        elif name in ("eval", "exec", "builtins.eval", "builtins.exec"):
            found.append((node.lineno, f"{name}()"))
        elif short in ("extractall", "extract") and "zip" not in name.lower():
            found.append((node.lineno, f"{name}() (tar extraction writes where the archive says)"))
        elif short == "load" and name.startswith(("np.", "numpy.")) and _is_true(_keyword(node, "allow_pickle")):
            found.append((node.lineno, f"{name}(allow_pickle=True)"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


def audit(trials: int, seed: int, workdir: Path) -> Outcome:  # noqa: ARG001 - every file, whatever trials says
    outcome = Outcome("security: unsafe loads in library code (AST audit; one trial per module)")
    for path in sorted(p for package in LIBRARY for p in (REPO / package).rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        findings = [f for f in audit_source(path.read_text())
                    if (relative, f.split(": ", 1)[1]) not in ALLOWED]
        outcome.trial(not findings, f"{relative}: {'; '.join(findings)}")
    return outcome


# -- hostile pickles ---------------------------------------------------------------------------------------

class _CreatesFile:
    """Unpickling this creates ``path``: the proof that a load ran code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.path, "w"))


def _refcoco_with_pickle(world: Path, to: Path, payload: object) -> Path:
    shutil.copytree(world / "refcoco", to)
    for refs in to.glob("refs(*).json"):
        refs.unlink()
    (to / "refs(unc).p").write_bytes(pickle.dumps(payload, protocol=2))
    return to


def hostile_pickles(trials: int, seed: int, workdir: Path, *, current_api: bool = False) -> Outcome:  # noqa: ARG001
    import torch

    from datasets_builders.build import build_dataset
    from datasets_builders.sources.contract import InputFormatError, Options
    from pipelines.demo import ensure_sample_world
    from training.checkpoint import read_optimizer_state

    outcome = Outcome("security: pickles that would run code (RefCOCO refs, optimizer.pt)")
    world, _ = ensure_sample_world(workdir / "raw", images=4, seed=0)

    def case(k: int) -> tuple[Path, Path]:
        marker = workdir / f"ran-code-{k}"
        return marker, _refcoco_with_pickle(world, workdir / f"refcoco-{k}", [_CreatesFile(marker)])

    def ran(marker: Path, what: str) -> bool:
        if marker.exists():
            outcome.trial(False, f"{what}: the pickle's code ran (created {marker.name})")
        return marker.exists()

    for trusted in (False, True):  # the library call, without and with the opt-in
        marker, raw = case(int(trusted))
        try:
            build_dataset("refcoco", raw, workdir / f"out-{int(trusted)}", options=Options(trust_pickle=trusted))
            message = None
        except InputFormatError as e:
            message = str(e)
        what = f"build_dataset refcoco, trust_pickle={trusted}"
        if not ran(marker, what):
            expected = "refs(unc).p" in (message or "") and ("--trust-pickle" in message if not trusted
                                                              else "refused to load" in message)
            outcome.trial(expected, f"{what}: expected a refusal naming refs(unc).p "
                                    f"{'and --trust-pickle' if not trusted else 'and the refused class'}, got {message!r}")

    for flag in ([], ["--trust-pickle"]):
        marker, raw = case(2 + len(flag))
        done = subprocess.run([str(Path(sys.executable).with_name("crayonflow")), "build", "refcoco", "--input", str(raw),
                               "--out", str(workdir / f"cli-{len(flag)}"), *flag], cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        what = f"crayonflow build refcoco {' '.join(flag)}".strip()
        if not ran(marker, what):
            said = done.stdout + done.stderr
            outcome.trial(done.returncode != 0 and "refs(unc).p" in said,
                          f"{what}: exit {done.returncode}, expected a refusal naming refs(unc).p: {said[-300:]!r}")

    with prefect_api(workdir, current_api=current_api):
        from pipelines.flows.build import build_refcoco

        for trusted in (False, True):
            marker, raw = case(4 + trusted)
            state = build_refcoco(inputs=[str(raw)], out=str(workdir / f"flow-{int(trusted)}"),
                                  options={"trust_pickle": trusted}, return_state=True)
            what = f"build-refcoco flow, options.trust_pickle={trusted}"
            if not ran(marker, what):
                outcome.trial(state.is_failed() and "refs(unc).p" in (state.message or ""),
                              f"{what}: expected a failed run naming refs(unc).p, got {state.name}: {state.message}")

    marker = workdir / "ran-code-optimizer"
    folder = workdir / "checkpoint"
    folder.mkdir()
    torch.save({"state": {}, "param_groups": [], "hook": _CreatesFile(marker)}, folder / "optimizer.pt")
    try:
        read_optimizer_state(folder)
        refused = False
    except pickle.UnpicklingError:
        refused = True
    if not ran(marker, "training.checkpoint.read_optimizer_state of a crafted optimizer.pt"):
        outcome.trial(refused, "read_optimizer_state loaded a pickle with a class in it instead of refusing it")
    return outcome


# -- listening sockets ----------------------------------------------------------------------------------------

def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def listening(pids: set[int] | None = None, port: int | None = None) -> list[tuple[str, int, str]]:
    """(ip, port, process) of the listening TCP sockets of ``pids`` or on ``port``."""
    import psutil

    found = []
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and ((pids is not None and c.pid in pids) or c.laddr.port == port):
            try:
                name = psutil.Process(c.pid).name() if c.pid else "?"
            except psutil.Error:
                name = "?"
            found.append((c.laddr.ip, c.laddr.port, name))
    return sorted(set(found))


RAY_CHILD = """
import json, psutil
from datasets_builders.ray_session import ray_session
with ray_session():
    me = psutil.Process()
    pids = {me.pid, *(p.pid for p in me.children(recursive=True))}
    print(json.dumps(sorted(pids)), flush=True)
    input()
"""


def bindings(trials: int, seed: int, workdir: Path) -> Outcome:  # noqa: ARG001 - one trial per socket
    from pipelines.server import LocalServer, ensure_server, stop_server
    from tests.pipelines.local import free_port

    outcome = Outcome("security: listening sockets of the local Prefect server and a local Ray (one trial each)")

    def check(sockets: list[tuple[str, int, str]], what: str) -> None:
        if len(sockets) < 1:
            outcome.trial(False, f"{what}: found no listening socket to check")
        for ip, port, name in sockets:
            outcome.trial(_loopback(ip), f"{what}: {name} listens on {ip}:{port}, not loopback")

    server = LocalServer(workdir / "prefect-server", port=free_port())
    ensure_server(server)
    try:
        pid = int((server.home / "server.pid").read_text())
        import psutil

        pids = {pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))}
        check(listening(pids, server.port), "the LocalServer")
    finally:
        stop_server(server)

    child = subprocess.Popen([sys.executable, "-c", RAY_CHILD], cwd=REPO, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=child_env("http://127.0.0.1:9/unused", workdir / "ray-home"))
    try:
        pids = set(json.loads(child.stdout.readline() or "[]"))
        sockets = listening(pids)
        check(sockets, "a local Ray (ray_session)")
        if len(sockets) < 3:  # GCS, raylet, a worker at least: fewer means the processes were not found
            outcome.trial(False, f"a local Ray: only {len(sockets)} listening sockets found ({sockets})")
    finally:
        child.communicate("\n", timeout=120)
    return outcome


# -- no secrets in records ------------------------------------------------------------------------------------

SECRET_VARIABLES = ("PREFECT_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "WANDB_API_KEY", "GITHUB_TOKEN")
CREDENTIAL_BUILDERS = ["vqa", "refcoco", "coco-captions", "llava", "unnatural-instructions", "unnatural-blend"]
BUILD_ALL_CHILD = """
import json, sys
from pipelines.flows.build import build_all
build_all(**json.loads(sys.argv[1]))
"""


def credentials(trials: int, seed: int, workdir: Path, *, current_api: bool = False) -> Outcome:  # noqa: ARG001
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowFilter,
        FlowFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )

    outcome = Outcome("security: canary secrets in the environment vs artifacts, logs, parameters, files")
    canary = f"canary-{uuid.uuid4().hex}"
    out, home = workdir / "datasets", workdir / "home"
    with prefect_api(workdir, current_api=current_api) as api:
        secrets = {name: f"{canary}-{name}" for name in SECRET_VARIABLES}
        parameters = {"raw_root": str(workdir / "raw" / "sample-world"), "out_root": str(out), "images": 4,
                      "seed": seed % 1000, "builders": CREDENTIAL_BUILDERS, "records_per_part": 8}
        done = subprocess.run([sys.executable, "-c", BUILD_ALL_CHILD, json.dumps(parameters)], cwd=REPO,
                              env={**child_env(api, home), **secrets, "PREFECT_LOGGING_LEVEL": "DEBUG"},
                              capture_output=True, text=True, timeout=600)
        outcome.trial(done.returncode == 0, f"the build_all run failed: {done.stderr[-500:]}")
        outcome.trial(canary not in done.stdout + done.stderr, "the flow's console output holds the canary")
        with get_client(sync_client=True) as client:
            [run] = [r for r in client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["build_all"])),
                                                      limit=200) if r.parameters.get("out_root") == str(out)]
            logs, page = [], None
            while page is None or len(page) == 200:  # the API serves at most 200 per call
                page = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])),
                                        limit=200, offset=len(logs))
                logs += page
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
                any_=[run.id])), limit=200)
        outcome.trial(len(logs) > 0 and not [l for l in logs if canary in l.message],
                      f"{len(logs)} flow-run logs read; the canary is in "
                      f"{[l.message[:80] for l in logs if canary in l.message][:2]}")
        outcome.trial(canary not in json.dumps(run.parameters), "the flow run's parameters hold the canary")
        for task in task_runs(run.id):
            outcome.trial(canary not in task.model_dump_json(), f"task run {task.name} holds the canary")
        if not artifacts:
            outcome.trial(False, "the run made no artifacts to check")
        for artifact in artifacts:
            outcome.trial(canary not in artifact.model_dump_json(), f"artifact {artifact.key} holds the canary")
    for path in sorted(p for p in workdir.rglob("*") if p.is_file()):
        outcome.trial(canary.encode() not in path.read_bytes(), f"{path.relative_to(workdir)} holds the canary")
    return outcome


SCENARIOS = [
    Scenario("security-audit", audit, full_trials=1, ci_trials=1),
    Scenario("security-pickle", hostile_pickles, full_trials=1, ci_trials=1),
    Scenario("security-bind", bindings, full_trials=1, ci_trials=1),
    Scenario("security-credentials", credentials, full_trials=1, ci_trials=1),
]
