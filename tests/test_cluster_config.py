"""cluster.yaml and cluster-onprem.yaml, checked offline with Ray's own cluster-config validation.

``ray up`` resolves a file in ``ray.autoscaler._private.commands._bootstrap_config``:
``prepare_config`` (merge with the provider's defaults.yaml, fill min/max workers), then the provider's
``fillout_available_node_types_resources`` (AWS: asks EC2, needs boto3 and credentials; our files give
every node type's resources, so it is not needed and not called), then ``validate_config`` (Ray's JSON
schema plus its cross-field rules). We run the two offline steps on the real files, with the network
blocked, plus checks with known answers on what the files promise (docs/cluster.md).
"""

from __future__ import annotations

import ast
import copy
import re
import socket
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("ray")

import click  # noqa: E402  (comes with ray)
import ray.autoscaler  # noqa: E402
from ray.autoscaler._private import util as ray_util  # noqa: E402

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

ROOT = Path(__file__).resolve().parents[1]
AWS = ROOT / "cluster.yaml"
ONPREM = ROOT / "cluster-onprem.yaml"
FILES = [pytest.param(AWS, id="aws"), pytest.param(ONPREM, id="onprem")]
RAY_AWS_CONFIG_SOURCE = Path(ray.autoscaler.__file__).parent / "_private" / "aws" / "config.py"

# Public AWS specs (vCPUs, NVIDIA GPUs) of the instance types the file may use.
INSTANCE_SPECS = {
    "m6i.xlarge": (4, 0),
    "m6i.2xlarge": (8, 0),
    "m6i.4xlarge": (16, 0),
    "g5.xlarge": (4, 1),
    "g5.2xlarge": (8, 1),
    "g5.4xlarge": (16, 1),
    "g5.8xlarge": (32, 1),
    "g5.12xlarge": (48, 4),
    "g5.16xlarge": (64, 1),
    "g5.24xlarge": (96, 4),
    "g5.48xlarge": (192, 8),
}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Everything here must work with no cloud credentials and no network: any connection is a failure."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"cluster config checks must not touch the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys (PyYAML keeps the last one silently)."""


def _mapping(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {sorted(dupes)}", node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_StrictLoader)


def ray_up_check(config: dict) -> dict:
    """The offline part of what `ray up` does to a file: Ray's prepare_config, then Ray's validate_config."""
    prepared = ray_util.prepare_config(copy.deepcopy(config))
    ray_util.validate_config(prepared)
    return prepared


# ---------------------------------------------------------------------------------------------------
# Ray's own validation accepts the files and rejects broken copies


@pytest.mark.parametrize("path", FILES)
def test_ray_accepts_the_file(path):
    prepared = ray_up_check(load(path))
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # Offline: nothing loaded the AWS provider (which would talk to EC2 through boto3).
    assert "ray.autoscaler._private.aws.config" not in sys.modules


def test_aws_node_types_survive_preparation():
    config = load(AWS)
    prepared = ray_up_check(config)
    assert prepared["provider"]["type"] == "aws"
    assert set(prepared["available_node_types"]) == set(config["available_node_types"])
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


def test_every_aws_node_type_sets_an_image():
    # Without an ImageId Ray 2.60 fills in its default, "AWS Deep Learning AMI (Ubuntu 18.04) V71.0": its
    # python3 cannot install the project (requires-python >= 3.10).
    import importlib.util

    # Read, not imported: the AWS module needs boto3, which only the head installs.
    aws = Path(importlib.util.find_spec("ray").origin).parent / "autoscaler" / "_private" / "aws" / "config.py"
    assert 'DEFAULT_AMI_NAME = "AWS Deep Learning AMI (Ubuntu 18.04)' in aws.read_text()  # the reason, still true
    for name, node_type in load(AWS)["available_node_types"].items():
        assert node_type["node_config"].get("ImageId") == "REPLACE_WITH_AMI_ID", name  # one anchor for all


def test_onprem_becomes_one_node_type_with_every_worker_ip():
    config = load(ONPREM)
    prepared = ray_up_check(config)
    assert prepared["provider"]["type"] == "local"
    (node_type,) = prepared["available_node_types"].values()
    n = len(config["provider"]["worker_ips"])
    assert n >= 1
    assert node_type["min_workers"] == node_type["max_workers"] == n


@pytest.mark.parametrize("path", FILES)
def test_ray_rejects_an_unknown_top_level_key(path):
    config = load(path)
    config["gpu_count"] = 4
    with pytest.raises(jsonschema.ValidationError, match="gpu_count"):
        ray_up_check(config)


def test_ray_rejects_aws_file_without_head_node_type():
    config = load(AWS)
    del config["head_node_type"]  # Ray's AWS defaults then name `ray.head.default`, which we don't define
    with pytest.raises(ValueError, match="head_node_type"):
        ray_up_check(config)


def test_ray_rejects_a_fractional_gpu_count():
    config = load(AWS)
    worker = next(k for k in config["available_node_types"] if k != config["head_node_type"])
    config["available_node_types"][worker]["resources"]["GPU"] = 0.5  # node resources are whole numbers
    with pytest.raises(jsonschema.ValidationError):
        ray_up_check(config)


def test_ray_rejects_node_types_in_the_onprem_file():
    config = load(ONPREM)
    config["available_node_types"] = {"x": {"resources": {}, "node_config": {}}}
    with pytest.raises(click.ClickException):
        ray_up_check(config)


def test_ray_rejects_onprem_file_without_worker_ips():
    config = load(ONPREM)
    del config["provider"]["worker_ips"]
    with pytest.raises(click.ClickException):
        ray_up_check(config)


# ---------------------------------------------------------------------------------------------------
# Dashboard on localhost, token auth on


def _ray_starts(commands: list[str]) -> list[str]:
    return [c for c in commands if re.search(r"\bray start\b", c)]


def dashboard_host(commands: list[str]) -> str | None:
    """The --dashboard-host of the `ray start --head` command, None when the flag is absent."""
    (head,) = [c for c in _ray_starts(commands) if "--head" in c]
    m = re.search(r"--dashboard-host[= ]+(\S+)", head)
    return m.group(1) if m else None


@pytest.mark.parametrize("path", FILES)
def test_dashboard_listens_on_localhost_only(path):
    prepared = ray_up_check(load(path))
    assert dashboard_host(prepared["head_start_ray_commands"]) == "127.0.0.1"
    starts = _ray_starts(prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"])
    assert len(starts) == 2
    for command in starts:
        assert "0.0.0.0" not in command and "::" not in command


def test_without_our_start_commands_ray_would_open_the_dashboard():
    """Known answer: Ray's own AWS defaults bind the dashboard to 0.0.0.0, so our override matters."""
    config = load(AWS)
    del config["head_start_ray_commands"]
    prepared = ray_up_check(config)
    assert dashboard_host(prepared["head_start_ray_commands"]) == "0.0.0.0"


@pytest.mark.parametrize("path", FILES)
def test_every_ray_start_requires_the_token(path):
    config = load(path)
    prepared = ray_up_check(config)
    starts = _ray_starts(prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"])
    for command in starts:
        assert re.search(r"(^|[;\s])RAY_AUTH_MODE=token\s+\S*ray start\b", command), command
    # The token reaches every node through file_mounts, from the default token path on the user's machine.
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    # The head starts the autoscaler (without it, no worker ever starts).
    (head,) = [c for c in starts if "--head" in c]
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head


# ---------------------------------------------------------------------------------------------------
# Node types: a head without GPUs, GPU workers that declare them


def test_head_node_has_no_gpu():
    config = load(AWS)
    head = config["available_node_types"][config["head_node_type"]]
    assert "GPU" in head["resources"], "declare GPU: 0 so that no trial is placed on the head"
    assert head["resources"]["GPU"] == 0
    assert INSTANCE_SPECS[head["node_config"]["InstanceType"]][1] == 0


def test_gpu_workers_declare_the_gpus_their_instance_has():
    config = load(AWS)
    workers = {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}
    assert workers
    for name, node_type in workers.items():
        vcpus, gpus = INSTANCE_SPECS[node_type["node_config"]["InstanceType"]]
        assert node_type["resources"]["GPU"] == gpus >= 1, name
        assert 0 < node_type["resources"]["CPU"] <= vcpus, name
        assert 0 <= node_type.get("min_workers", 0) <= node_type["max_workers"] <= config["max_workers"], name
    assert any(t["resources"]["GPU"] >= 4 for t in workers.values()), "a multi-GPU node type"


# ---------------------------------------------------------------------------------------------------
# Setup: the pinned torch, the GPU extra, never faiss-cpu


def torch_pins() -> list[str]:
    """The pins `make install` uses (Makefile TORCH_PINS); the cluster must install the same ones."""
    makefile = ROOT / "Makefile"
    if makefile.exists():
        m = re.search(r"^TORCH_PINS\s*:?=\s*(.+)$", makefile.read_text(), re.M)
        if m:
            return m.group(1).split()
    return ["torch==2.14.1", "torchvision==0.29.1"]


def project_installs(commands: list[str]) -> list[str]:
    return [c for c in commands if "pip install" in c and "finetuning-budget[" in c]


def extras_of(command: str) -> set[str]:
    (extras,) = re.findall(r"finetuning-budget\[([^\]]*)\]", command)
    return {e.strip() for e in extras.split(",")}


@pytest.mark.parametrize("path", FILES)
def test_every_node_installs_the_project_with_pinned_torch_and_the_gpu_extra(path):
    prepared = ray_up_check(load(path))
    pins = torch_pins()
    assert pins == ["torch==2.14.1", "torchvision==0.29.1"]
    for role in ("head_setup_commands", "worker_setup_commands"):
        (install,) = project_installs(prepared[role])
        for pin in pins:
            assert re.search(rf"(^|\s){re.escape(pin)}(\s|$)", install), (role, pin)
        extras = extras_of(install)
        assert "gpu" in extras and "cpu" not in extras, extras
        assert re.search(r'"ray\[[a-z,]+\]==\d+\.\d+\.\d+"', install), "ray pinned to one version"
        assert not any("faiss-cpu" in c for c in prepared[role])


@pytest.mark.skipif(tomllib is None, reason="tomllib is Python 3.11+")
def test_installed_extras_exist_and_gpu_means_faiss_gpu():
    """Known answers from pyproject: the extras named exist, and `gpu` brings faiss-gpu, not faiss-cpu."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("faiss-gpu") for d in extras["gpu"])
    assert not any(d.startswith("faiss-cpu") for d in extras["gpu"])
    for path in (AWS, ONPREM):
        (install,) = project_installs(load(path)["setup_commands"])
        assert extras_of(install) <= set(extras), path.name


def test_both_files_install_the_same_way():
    (aws,) = project_installs(load(AWS)["setup_commands"])
    (onprem,) = project_installs(load(ONPREM)["setup_commands"])
    assert aws == onprem


def test_aws_head_installs_boto3_into_the_venv_ray_runs_from():
    """The AWS autoscaler on the head imports boto3; it must be in the same venv as `ray start`."""
    prepared = ray_up_check(load(AWS))
    (head,) = [c for c in _ray_starts(prepared["head_start_ray_commands"]) if "--head" in c]
    ray_bin = re.search(r"(\S+)/ray start", head).group(1)
    assert any(re.search(rf"{re.escape(ray_bin)}/pip install .*boto3", c) for c in prepared["head_setup_commands"])


@pytest.mark.parametrize("path", FILES)
def test_file_mounts_point_at_files_of_this_checkout(path):
    config = load(path)
    for remote, local in config["file_mounts"].items():
        if remote == "~/.ray/auth_token":
            continue
        assert remote.startswith("~/finetuning-budget/"), remote
        assert (ROOT / local).exists(), local
    readme = "README.md"
    assert config["file_mounts"].get(f"~/finetuning-budget/{readme}") == f"./{readme}"  # pyproject's readme


# ---------------------------------------------------------------------------------------------------
# No secrets in the files

SECRET_PATTERNS = [
    re.compile(r"aws_access_key_id|aws_secret_access_key|aws_session_token", re.I),
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    # a YAML key that names a secret, with a value on the same line
    re.compile(r"^\s*-?\s*[\w-]*(password|passwd|secret|token|api[_-]?key|access[_-]?key)[\w-]*\s*:\s*\S", re.I | re.M),
    # an environment assignment of a secret with a literal value (a $VAR reference is fine)
    re.compile(r"\b[A-Z0-9_]*(TOKEN|SECRET|PASSWORD|ACCESS_KEY)[A-Z0-9_]*=(?![\s$\"'])\S"),
]


def secrets_in(text: str) -> list[str]:
    return [m.group(0) for pattern in SECRET_PATTERNS for m in pattern.finditer(text)]


@pytest.mark.parametrize("path", FILES)
def test_no_secrets_in_the_file(path):
    assert secrets_in(path.read_text()) == []


@pytest.mark.parametrize(
    "planted",
    [
        "  aws_access_key_id: x",
        "      AccessKey: AKIAIOSFODNN7EXAMPLE",
        "  password: hunter2",
        "token: 0123abcd",
        "  - export RAY_AUTH_TOKEN=0123abcd && ray start --head",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    ],
)
def test_the_secret_scan_finds_planted_secrets(planted):
    assert secrets_in(AWS.read_text() + "\n" + planted + "\n")


@pytest.mark.parametrize("path", FILES)
def test_ssh_key_is_a_path_not_a_key(path):
    key = load(path).get("auth", {}).get("ssh_private_key")
    assert key is None or (key.startswith(("~/", "/")) and "\n" not in key)


# ---------------------------------------------------------------------------------------------------
# Security group: only SSH from outside


def ray_default_ssh_rules() -> list[dict]:
    """The SSH rule Ray adds to every group it creates, read from Ray's source (importing it needs boto3)."""
    tree = ast.parse(RAY_AWS_CONFIG_SOURCE.read_text())
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_create_default_ssh_inbound_rules"]
    (ret,) = [n for n in ast.walk(fn) if isinstance(n, ast.Return)]
    return ast.literal_eval(ret.value)


def external_ingress(config: dict) -> list[dict]:
    """The inbound rules of the cluster's group that admit traffic from outside it.

    Ray gives a group it creates: all traffic from the group itself (UserIdGroupPairs, not external), its
    SSH rule, and provider.security_group.IpPermissions on top (_create_default_inbound_rules).
    """
    extra = config["provider"].get("security_group", {}).get("IpPermissions", [])
    rules = ray_default_ssh_rules() + list(extra)
    return [r for r in rules if r.get("IpRanges") or r.get("Ipv6Ranges") or r.get("PrefixListIds")]


def only_ssh(rules: list[dict]) -> bool:
    return all(r.get("IpProtocol") == "tcp" and r.get("FromPort") == 22 and r.get("ToPort") == 22 for r in rules)


def test_ray_default_rule_is_ssh():
    assert ray_default_ssh_rules() == [
        {"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ]


def test_security_group_opens_only_ssh():
    config = load(AWS)
    assert config["provider"]["security_group"]["GroupName"]
    rules = external_ingress(config)
    assert rules and only_ssh(rules)
    # A group given per node type would replace Ray's group and is not checked here: don't.
    for node_type in config["available_node_types"].values():
        assert "SecurityGroupIds" not in node_type["node_config"]


def test_an_extra_open_port_is_caught():
    config = load(AWS)
    config["provider"]["security_group"]["IpPermissions"] = [
        {"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ]
    ray_up_check(config)  # Ray's schema allows it ...
    assert not only_ssh(external_ingress(config))  # ... this test doesn't
