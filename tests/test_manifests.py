"""The Kubernetes manifests in deploy/kubernetes: schema-valid, hardened, and wired together.

Schemas come from kubernetes-validate's bundled copies (no network). The ServiceMonitor is a CRD
that kubernetes-validate has no schema for, so it is checked structurally here.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cdm_exporter.config.errors import ConfigError
from cdm_exporter.config.loader import parse_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
BASE = DEPLOY / "base"
OVERLAY = DEPLOY / "overlays" / "example-second-project"
HA_OVERLAY = DEPLOY / "overlays" / "replicas-redis"
STATE_DIR = "/var/lib/cdm-exporter"  # the base's --storage.path directory
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")
CONFIG_PATH = "/etc/cdm-exporter/config.yml"  # the image's default --config.file
PORT = 9792
SECRET_KEYS = {"secret_key", "password", "token", "security_token", "access_key_secret", "sk"}

Manifest = dict[str, Any]


def load_kustomization(directory: Path) -> list[Manifest]:
    """The manifests listed in directory/kustomization.yaml (files only, not other kustomizations)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[Manifest] = []
    for resource in kustomization["resources"]:
        path = directory / resource
        assert path.is_file(), f"{resource} is not a file in {directory}"
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def one(docs: list[Manifest], kind: str) -> Manifest:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def base() -> list[Manifest]:
    return load_kustomization(BASE)


def subset(labels: Mapping[str, str], of: Mapping[str, str]) -> bool:
    return bool(labels) and all(of.get(k) == v for k, v in labels.items())


def containers(deployment: Manifest) -> list[Manifest]:
    spec = deployment["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


# ---------------------------------------------------------------------------------------------
# Files and schemas


def test_kustomizations_list_every_manifest() -> None:
    top = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert top["resources"] == ["base"]
    listed = set(yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_kinds(base: list[Manifest]) -> None:
    kinds = sorted(d["kind"] for d in base)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "PersistentVolumeClaim",
        "Secret",
        "Service",
        "ServiceMonitor",
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_manifests_validate_against_the_kubernetes_schema(base: list[Manifest], version: str) -> None:
    for doc in base:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_schema_validation_catches_mistakes(base: list[Manifest]) -> None:
    # Guards the test above: a misspelt field and a wrong type are reported, offline.
    deployment = copy.deepcopy(one(base, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = (
        True
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    deployment = copy.deepcopy(one(base, "Deployment"))
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


# ---------------------------------------------------------------------------------------------
# The Deployment


def test_deployment_runs_one_hardened_replica(base: list[Manifest]) -> None:
    deployment = one(base, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"  # never two pollers sharing one API budget
    pod = spec["template"]["spec"]
    pod_security = pod.get("securityContext", {})
    assert pod.get("automountServiceAccountToken") is False
    for container in containers(deployment):
        name = container["name"]
        security = {**pod_security, **container.get("securityContext", {})}
        assert security.get("runAsNonRoot") is True, name
        assert isinstance(security.get("runAsUser"), int) and security["runAsUser"] > 0, name
        assert security.get("readOnlyRootFilesystem") is True, name
        assert security.get("allowPrivilegeEscalation") is False, name
        assert security.get("privileged", False) is False, name
        assert security.get("capabilities", {}).get("drop") == ["ALL"], name
        assert not security.get("capabilities", {}).get("add"), name
        assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{name}: {bound}"


def test_probes_and_port(base: list[Manifest]) -> None:
    (container,) = one(base, "Deployment")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": PORT}
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", PORT), probe
    args = container.get("args", [])
    assert args[0] == "serve"
    assert f"--config.file={CONFIG_PATH}" in args
    listen = [a for a in args if a.startswith("--web.listen-address=")]
    assert all(a.endswith(f":{PORT}") for a in listen)


def mounted_files(deployment: Manifest) -> dict[str, tuple[str, str, str]]:
    """Container path -> (volume kind, object name, key) for every ConfigMap or Secret file mounted."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    files: dict[str, tuple[str, str, str]] = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        for kind, name_key in (("configMap", "name"), ("secret", "secretName")):
            if kind in volume:
                source = volume[kind]
                items = source.get("items") or [{"key": k, "path": k} for k in ("*",)]
                for item in items:
                    path = str(PurePosixPath(mount["mountPath"]) / item["path"])
                    files[path] = (kind, source[name_key], item["key"])
    return files


def test_config_and_credentials_are_mounted(base: list[Manifest]) -> None:
    deployment = one(base, "Deployment")
    files = mounted_files(deployment)
    configmap, secret = one(base, "ConfigMap"), one(base, "Secret")
    assert files[CONFIG_PATH] == ("configMap", configmap["metadata"]["name"], "config.yml")
    assert "config.yml" in configmap["data"]
    secret_mounts = [p for p, (kind, name, _) in files.items() if kind == "secret"]
    assert [files[p][1] for p in secret_mounts] == [secret["metadata"]["name"]]
    pod = deployment["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["defaultMode"] & 0o007 == 0, "secret files must not be world-readable"
    (container,) = pod["containers"]
    assert all(
        m.get("readOnly") for m in container["volumeMounts"] if m["name"] in ("config", volume["name"])
    )


def args_of(deployment: Manifest) -> dict[str, str]:
    """``--flag=value`` arguments of the exporter container, as a mapping."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(a.split("=", 1) for a in container["args"] if a.startswith("--") and "=" in a)


def test_the_state_file_is_on_a_volume_of_its_own(base: list[Manifest]) -> None:
    deployment = one(base, "Deployment")
    path = args_of(deployment)["--storage.path"]
    assert str(PurePosixPath(path).parent) == STATE_DIR
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == STATE_DIR]
    assert not mount.get("readOnly")  # written (the root file system is read-only)
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = one(base, "PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]  # one pod at a time: strategy Recreate
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]  # writable by it


# ---------------------------------------------------------------------------------------------
# Service and ServiceMonitor


def test_service_selects_the_deployment_pods(base: list[Manifest]) -> None:
    deployment, service = one(base, "Deployment"), one(base, "Service")
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert subset(deployment["spec"]["selector"]["matchLabels"], template_labels)
    assert subset(service["spec"]["selector"], template_labels)
    container_ports = {
        p["name"]: p["containerPort"] for c in containers(deployment) for p in c.get("ports", [])
    }
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http"
    assert port["port"] == PORT
    assert port["targetPort"] in container_ports or port["targetPort"] in container_ports.values()


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * units[unit]
    raise ValueError(text)


def check_servicemonitor(monitor: Manifest, services: list[Manifest], own_service: Manifest) -> None:
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels"}
    selector = monitor["spec"]["selector"]
    assert set(selector) == {"matchLabels"}
    selected = [s for s in services if subset(selector["matchLabels"], s["metadata"].get("labels", {}))]
    assert selected == [own_service], "the ServiceMonitor must select exactly its own Service"
    port_names = {p["name"] for p in own_service["spec"]["ports"]}
    endpoints = monitor["spec"]["endpoints"]
    assert endpoints
    for endpoint in endpoints:
        assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels"}
        assert endpoint["port"] in port_names
        assert endpoint.get("path", "/metrics") == "/metrics"
        assert endpoint["interval"] == "30s"
        assert endpoint["scrapeTimeout"] == "25s"
        assert parse_duration(endpoint["scrapeTimeout"]) < parse_duration(endpoint["interval"])


def test_servicemonitor(base: list[Manifest]) -> None:
    service = one(base, "Service")
    check_servicemonitor(one(base, "ServiceMonitor"), [service], service)


# ---------------------------------------------------------------------------------------------
# ConfigMap and Secret


def walk(value: object, path: str = "") -> Iterator[tuple[str, str, object]]:
    """(dotted path, key, value) for every mapping entry, recursively."""
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            yield here, str(key), item
            yield from walk(item, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")


def example_config(docs: list[Manifest]) -> dict[str, Any]:
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yml"])
    assert isinstance(config, dict)
    return config


def secret_values(secret: Manifest) -> dict[str, str]:
    assert not secret.get("data"), "use stringData for the example, so that it is visibly fake"
    values = secret["stringData"]
    assert isinstance(values, dict)
    return values


def check_config_names_no_secret(docs: list[Manifest]) -> None:
    config = example_config(docs)
    secret = one(docs, "Secret")
    files = mounted_files(one(docs, "Deployment"))
    secret_dirs = {str(PurePosixPath(p).parent) for p, (kind, _, _) in files.items() if kind == "secret"}
    file_keys = []
    for path, key, value in walk(config):
        assert key not in SECRET_KEYS, f"{path}: a secret inline in the ConfigMap"
        if key.endswith("_file"):
            assert isinstance(value, str)
            directory, name = str(PurePosixPath(value).parent), PurePosixPath(value).name
            assert directory in secret_dirs, f"{path}: {value} is not in the mounted Secret"
            assert name in secret_values(secret), f"{path}: the Secret has no key {name}"
            file_keys.append(path)
        if key == "access_key":
            assert isinstance(value, str) and "EXAMPLE" in value, f"{path}: use an obviously fake example"
    assert file_keys, "the credentials should come from the Secret's files"
    for key, value in secret_values(secret).items():
        assert "EXAMPLE" in value, f"Secret key {key}: the example value must be obviously fake"


def test_configmap_config_names_no_real_secret(base: list[Manifest]) -> None:
    check_config_names_no_secret(base)


def check_config_loads(docs: list[Manifest], tmp_path: Path) -> None:
    """The example config passes the exporter's own loader, with the Secret's files in place."""
    config = example_config(docs)
    secret = secret_values(one(docs, "Secret"))
    for path, key, value in list(walk(config)):
        if key.endswith("_file"):
            assert isinstance(value, str)
            local = tmp_path / PurePosixPath(value).name
            local.write_text(secret[local.name])
            local.chmod(0o600)
            target: Any = config
            for part in path.replace("[", ".[").split(".")[:-1]:
                target = target[int(part[1:-1])] if part.startswith("[") else target[part]
            target[key] = str(local)
    try:
        parse_config(config, env={}, base_dir=tmp_path)
    except ConfigError as exc:
        pytest.fail(f"the example config does not load: {exc}")


def test_configmap_config_is_a_valid_exporter_config(base: list[Manifest], tmp_path: Path) -> None:
    check_config_loads(base, tmp_path)


# ---------------------------------------------------------------------------------------------
# Rendered with kustomize: the base and the second-project overlay side by side


def kustomize(directory: Path) -> list[Manifest]:
    kubectl = shutil.which("kubectl")
    kustomize_bin = shutil.which("kustomize")
    if kustomize_bin:
        command = [kustomize_bin, "build", str(directory)]
    elif kubectl:
        command = [kubectl, "kustomize", str(directory)]
    else:
        pytest.skip("needs kubectl or kustomize to render the overlay")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


def test_overlay_is_an_independent_second_exporter(tmp_path: Path) -> None:
    base = kustomize(DEPLOY)
    overlay = kustomize(OVERLAY)
    base_names = {(d["kind"], d["metadata"]["name"]) for d in base}
    overlay_names = {(d["kind"], d["metadata"]["name"]) for d in overlay}
    assert len(base_names) == len(overlay_names) == 6
    assert not base_names & overlay_names, "applying both must not overwrite the base"

    for version in KUBERNETES_VERSIONS[-1:]:
        for doc in overlay:
            if not doc["apiVersion"].startswith("monitoring.coreos.com/"):
                kubernetes_validate.validate(doc, version, strict=True)

    # Each Service selects only its own pods; each ServiceMonitor only its own Service.
    services = [one(base, "Service"), one(overlay, "Service")]
    for docs in (base, overlay):
        service, deployment = one(docs, "Service"), one(docs, "Deployment")
        others = [d for d in (one(base, "Deployment"), one(overlay, "Deployment")) if d is not deployment]
        assert subset(service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
        for other in others:
            assert not subset(service["spec"]["selector"], other["spec"]["template"]["metadata"]["labels"])
        check_servicemonitor(one(docs, "ServiceMonitor"), services, service)
        # The Deployment mounts its own ConfigMap and Secret.
        mounted = {name for kind, name, _ in mounted_files(deployment).values()}
        assert mounted == {
            one(docs, "ConfigMap")["metadata"]["name"],
            one(docs, "Secret")["metadata"]["name"],
        }
        check_config_names_no_secret(docs)
        (tmp_path / deployment["metadata"]["name"]).mkdir()
        check_config_loads(docs, tmp_path / deployment["metadata"]["name"])

    # A different project and a different credential: that is the point of a second Deployment.
    targets = [example_config(docs)["targets"][0] for docs in (base, overlay)]
    assert targets[0]["project_id"] != targets[1]["project_id"]
    assert targets[0]["auth"] != targets[1]["auth"] or secret_values(one(base, "Secret")) != secret_values(
        one(overlay, "Secret")
    )


# ---------------------------------------------------------------------------------------------
# Two replicas sharing a Redis


def test_the_replicas_overlay_runs_two_exporters_sharing_a_redis() -> None:
    docs = kustomize(HA_OVERLAY)
    for doc in docs:
        if not doc["apiVersion"].startswith("monitoring.coreos.com/"):
            kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    exporter, redis = deployments["cdm-exporter"], deployments["cdm-exporter-redis"]
    spec = exporter["spec"]
    assert spec["replicas"] == 2
    # never more pods than the replicas the budget's fallback share counts
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    args = args_of(exporter)
    assert "--storage.path" not in args  # Redis keeps the state
    assert int(args["--storage.redis-replicas"]) == spec["replicas"]
    assert not kinds_named(docs, "PersistentVolumeClaim")

    # the URL names the Redis Service and port, and holds no password; the password is a file
    # from a Secret, which is also what Redis requires
    url = args["--storage.redis-url"]
    assert "@" not in url
    services = {s["metadata"]["name"]: s for s in docs if s["kind"] == "Service"}
    host, port = url.removeprefix("redis://").split("/", 1)[0].split(":")
    redis_service = services[host]
    assert [p["port"] for p in redis_service["spec"]["ports"]] == [int(port)]
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    assert subset(redis_service["spec"]["selector"], redis_labels)
    exporter_labels = exporter["spec"]["template"]["metadata"]["labels"]
    assert not subset(services["cdm-exporter"]["spec"]["selector"], redis_labels), "scrapes never reach Redis"
    password_file = args["--storage.redis-password-file"]
    (secret_name, key) = next(
        (name, item_key)
        for path, (kind, name, item_key) in mounted_files(exporter).items()
        if path == password_file
    )
    secrets = {s["metadata"]["name"]: s for s in docs if s["kind"] == "Secret"}
    assert "EXAMPLE" in secret_values(secrets[secret_name])[key]
    redis_pod = redis["spec"]["template"]["spec"]
    (redis_container,) = redis_pod["containers"]
    assert "--requirepass" in " ".join(redis_container["args"])
    assert secret_values(secrets[secret_name])[key] not in " ".join(redis_container["args"])
    assert any(v.get("secret", {}).get("secretName") == secret_name for v in redis_pod["volumes"])

    # a disruption budget that keeps one exporter, and only exporters
    (pdb,) = kinds_named(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert subset(pdb["spec"]["selector"]["matchLabels"], exporter_labels)
    assert not subset(pdb["spec"]["selector"]["matchLabels"], redis_labels)

    # Redis is hardened like the exporter
    security = {**redis_pod["securityContext"], **redis_container["securityContext"]}
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert redis_pod["automountServiceAccountToken"] is False
    assert {"cpu", "memory"} <= set(redis_container["resources"]["limits"])

    # the exporter keeps its configuration, credentials and hardening
    files = mounted_files(exporter)
    assert files[CONFIG_PATH][0] == "configMap"
    check_servicemonitor(one(docs, "ServiceMonitor"), list(services.values()), services["cdm-exporter"])


def kinds_named(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]
