"""`clusterplane ssh CLUSTER [NODE] [-- COMMAND...]`: log in to a node with a short-lived
certificate from the cluster's SSH CA, through the jump host when the cluster has one.

    clusterplane ssh CLUSTER [NODE] [-- COMMAND...]
        [-l LOGIN] [-i IDENTITY] [--valid-seconds N] [--address HOST] [--port N]
        [--jumphost HOST[:PORT] | --no-jumphost] [-o SSH_OPTION]... [--cache-dir DIR]
        [--print-command] [--base-url URL] [--api-key KEY]

Steps: read the cluster (`GET /v1/compute/clusters/{id}`) and pick the node (NODE matches
a node id, host name, Slurm host name or instance id; default: the first GPU worker) and
its address (public IPv4, else its address on the cluster's network); ask
the server to sign the public key (`POST .../ssh-certificates`); write the certificate and
an ssh config (ProxyJump to the jump host when `jumphost_enabled`) under the cache
directory; run OpenSSH's `ssh` with it and return its exit status.

The API comes from TOGETHER_BASE_URL and TOGETHER_API_KEY (as for the SDK and CLI). Without
`-i`, a key pair kept in the cache directory is used, made with ssh-keygen on first use.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from clusterplane.cli.http import api_key, base_url, error_message

DEFAULT_CACHE = Path("~/.cache/clusterplane/ssh")
JUMP_ALIAS = "clusterplane-jump"
NODE_ALIAS = "clusterplane-node"


class SshError(Exception):
    """A problem `clusterplane ssh` reports in one line and exits 1 for."""


def add_parser(commands: Any) -> None:
    ssh = commands.add_parser(
        "ssh",
        help="log in to a cluster node with a certificate from the cluster's SSH CA",
        description=__doc__.split("\n\n")[0],
    )
    ssh.add_argument("cluster", help="cluster id")
    ssh.add_argument("node", nargs="?", help="node id, host name or instance id")
    ssh.set_defaults(remote_command=[])
    ssh.add_argument("-l", "--login", default="ubuntu", help="account on the node")
    ssh.add_argument("-i", "--identity", type=Path, help="private key (its .pub beside it)")
    ssh.add_argument("--valid-seconds", type=int, default=None)
    ssh.add_argument("--address", help="connect to this address instead of the node's")
    ssh.add_argument("--port", type=int, default=22, help="the node's sshd port")
    ssh.add_argument("--jumphost", help="HOST[:PORT] instead of the jump host the server names")
    ssh.add_argument("--no-jumphost", action="store_true", help="connect directly")
    ssh.add_argument("-o", dest="ssh_options", action="append", default=[], metavar="OPTION")
    ssh.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ssh.add_argument("--print-command", action="store_true", help="print the ssh command only")
    ssh.add_argument("--base-url", default=None, help="default: $TOGETHER_BASE_URL")
    ssh.add_argument("--api-key", default=None, help="default: $TOGETHER_API_KEY")


def split_remote_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """Everything after the first ``--`` is the remote command, never NODE or an option."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def _client(args: argparse.Namespace) -> httpx.Client:
    key = api_key(args.api_key)
    if key is None:
        raise SshError("no API key: set TOGETHER_API_KEY or pass --api-key")
    return httpx.Client(
        base_url=base_url(args.base_url),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _checked(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise SshError(f"{response.status_code}: {error_message(response)}")
    body: dict[str, Any] = response.json()
    return body


def pick_node(cluster: dict[str, Any], wanted: str | None) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = list(cluster.get("gpu_worker_nodes") or [])
    if wanted is None:
        if not nodes:
            raise SshError(f"cluster {cluster['cluster_id']} has no GPU worker nodes yet")
        return nodes[0]
    for node in nodes:
        names = (
            node.get("node_id"),
            node.get("host_name"),
            node.get("slurm_worker_hostname"),
            node.get("instance_id"),
        )
        if wanted in names:
            return node
    raise SshError(f"cluster {cluster['cluster_id']} has no node '{wanted}'")


def _private_address(node: dict[str, Any]) -> str:
    """The node's address on its cluster's network (reached directly or via the jump
    host); its host name when it has none."""
    for network in node.get("networks") or []:
        address = str(network).split("/", 1)[0]
        if address:
            return address
    return str(node["host_name"])


def _identity(args: argparse.Namespace, cache: Path) -> Path:
    if args.identity is not None:
        path = Path(args.identity).expanduser()
        if not Path(f"{path}.pub").is_file():
            raise SshError(f"no public key at {path}.pub")
        return path
    path = cache / "id_ed25519"
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "clusterplane", "-f", str(path)],
            check=True,
        )
    return path


def _split_host(value: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (port 22 by default; a bare IPv6 address has no port)."""
    host, colon, port = value.rpartition(":")
    if not colon or ":" in host:
        return value, 22
    if not port.isdigit():
        raise SshError(f"--jumphost {value}: the port must be a number")
    return host, int(port)


def _host_block(alias: str, host: str, port: int, login: str, key: Path, cert: Path) -> str:
    return (
        f"Host {alias}\n"
        f"  HostName {host}\n"
        f"  Port {port}\n"
        f"  User {login}\n"
        f"  IdentityFile {key}\n"
        f"  CertificateFile {cert}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {cert.parent / 'known_hosts'}\n"
        "  StrictHostKeyChecking accept-new\n"
    )


def prepare(args: argparse.Namespace, http: httpx.Client) -> list[str]:
    """Sign the key, write certificate and config; return the ssh command line."""
    cache = Path(args.cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    cluster = _checked(http.get(f"/v1/compute/clusters/{args.cluster}"))
    node = pick_node(cluster, args.node)
    key = _identity(args, cache)
    request: dict[str, Any] = {
        "public_key": Path(f"{key}.pub").read_text().strip(),
        "login": args.login,
    }
    if args.valid_seconds is not None:
        request["valid_seconds"] = args.valid_seconds
    signed = _checked(
        http.post(f"/v1/compute/clusters/{args.cluster}/ssh-certificates", json=request)
    )
    cert = cache / f"{args.cluster}-{args.login}-cert.pub"
    cert.write_text(signed["certificate"] + "\n")
    cert.chmod(0o600)
    address = args.address or node.get("public_ipv4") or _private_address(node)
    blocks = []
    jump = None if args.no_jumphost else (args.jumphost or signed.get("jumphost"))
    if jump:
        jump_host, jump_port = _split_host(jump)
        blocks.append(_host_block(JUMP_ALIAS, jump_host, jump_port, args.login, key, cert))
    target = _host_block(NODE_ALIAS, address, args.port, args.login, key, cert)
    if jump:
        target += f"  ProxyJump {JUMP_ALIAS}\n"
    blocks.append(target)
    config = cache / f"{args.cluster}.config"
    config.write_text("\n".join(blocks))
    config.chmod(0o600)
    options = [item for option in args.ssh_options for item in ("-o", option)]
    return ["ssh", "-F", str(config), *options, NODE_ALIAS, *args.remote_command]


def run(args: argparse.Namespace, http: httpx.Client | None = None) -> int:
    own = http is None
    try:
        client = http if http is not None else _client(args)
        try:
            command = prepare(args, client)
        finally:
            if own:
                client.close()
    except SshError as exc:
        print(f"clusterplane ssh: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"clusterplane ssh: cannot reach the API: {exc}", file=sys.stderr)
        return 1
    if args.print_command:
        print(shlex.join(command))
        return 0
    return subprocess.run(command, check=False).returncode
