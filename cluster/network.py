"""A private network for partition tests: every server on an address of its own, client
sides in namespaces of their own, and packet filters that cut any of them off.

Everything lives in network namespaces this module makes, so the host's interfaces,
routes and packet filters are never touched, and deleting the namespaces removes every
address and rule with them:

- the *lab* namespace holds the servers. Each binds an address of its own (``10.77.0.N``,
  on the lab's loopback interface) and 127.0.0.1, and sends from its own address
  (``bind-source-addr``), so packets between servers carry server addresses;
- each *client side* is a namespace joined to the lab by a veth pair: its address is
  ``10.77.K.2``, the lab's end ``10.77.K.1``. Processes started inside it (``inside``)
  reach the servers only over that link;
- the harness itself enters the lab (``inside()``) and talks to the servers over
  127.0.0.1, which no rule names: an operator's console that a partition never cuts.

A partition is DROP rules in the INPUT chain of the receiving namespace, so a cut packet
vanishes as it would on a real network: senders see silence, never an error.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
NAME_PREFIX = "rcs"
# one /16 per lab: namespaces are private, so every lab may use the same addresses
SERVERS_SUBNET = "10.77.0"
MAX_SERVERS = 250
MAX_SIDES = 200
_NAME = re.compile(r"^rcs-(\d+)-[0-9a-f]{6}-[a-z0-9]+$")
_COMMAND_TIMEOUT = 30.0

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_switch_lock = threading.Lock()


class NetworkError(RuntimeError):
    """The private network could not be made, changed or removed."""


def unavailable() -> str | None:
    """Why partition networks cannot be made here (None when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables-restore"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} not found (Debian packages iproute2 and iptables)"
    return None


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _run(argv: list[str], stdin: str | None = None) -> None:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetworkError(f"setns failed: {os.strerror(err)}")


@contextlib.contextmanager
def entered(namespace: str) -> Iterator[None]:
    """Run the calling thread in ``namespace``: sockets it opens, and processes it starts
    (subprocess, multiprocessing), live there. Other threads are not moved."""
    target = os.open(NETNS_DIR / namespace, os.O_RDONLY)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


@dataclass
class ClientSide:
    """A namespace of client processes, joined to the lab by one veth pair."""

    name: str
    namespace: str
    address: str
    gateway: str


@dataclass
class Network:
    """One lab namespace for servers and a namespace per client side (see the module)."""

    tag: str
    lab: str
    sides: dict[str, ClientSide] = field(default_factory=dict)
    servers: list[str] = field(default_factory=list)
    cut: dict[str, list[str]] = field(default_factory=dict)  # namespace -> INPUT rules

    @classmethod
    def create(cls, sides: Iterable[str] = ("minority", "majority")) -> Network:
        """Make the lab and one namespace per client side; on failure nothing is left."""
        reason = unavailable()
        if reason:
            raise NetworkError(reason)
        tag = f"{NAME_PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
        net = cls(tag=tag, lab=f"{tag}-lab")
        try:
            _run([_tool("ip"), "netns", "add", net.lab])
            net._in(net.lab, "link set lo up")
            for side in sides:
                net._add_side(side)
        except BaseException:
            net.close()
            raise
        return net

    @property
    def namespaces(self) -> list[str]:
        return [self.lab, *(s.namespace for s in self.sides.values())]

    def _in(self, namespace: str, *commands: str) -> None:
        script = "".join(f"{c}\n" for c in commands)
        _run([_tool("ip"), "-netns", namespace, "-batch", "-"], stdin=script)

    def _add_side(self, side: str) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]{0,11}", side):
            raise ValueError(f"client side names are short lowercase words, not {side!r}")
        if side in self.sides or len(self.sides) >= MAX_SIDES:
            raise ValueError(f"client side {side!r} exists or too many sides")
        k = len(self.sides) + 1
        ns = f"{self.tag}-{side}"
        client = ClientSide(side, ns, f"10.77.{k}.2", f"10.77.{k}.1")
        _run([_tool("ip"), "netns", "add", ns])
        self.sides[side] = client
        outer, inner = f"rcsv{k}", "rcsv0"
        self._in(
            self.lab,
            f"link add {outer} type veth peer name {inner} netns {ns}",
            f"addr add {client.gateway}/24 dev {outer}",
            f"link set {outer} up",
        )
        self._in(
            ns,
            "link set lo up",
            f"addr add {client.address}/24 dev {inner}",
            f"link set {inner} up",
            f"route add {SERVERS_SUBNET}.0/24 via {client.gateway}",
        )

    def server_address(self) -> str:
        """A new server address in the lab (on its loopback interface: a container may
        have no dummy interfaces)."""
        if len(self.servers) >= MAX_SERVERS:
            raise NetworkError("no server addresses left")
        address = f"{SERVERS_SUBNET}.{len(self.servers) + 1}"
        self._in(self.lab, f"addr add {address}/32 dev lo")
        self.servers.append(address)
        return address

    def inside(self, side: str | None = None) -> contextlib.AbstractContextManager[None]:
        """The calling thread in the lab (no side) or in a client side's namespace."""
        if side is None:
            return entered(self.lab)
        if side not in self.sides:
            raise ValueError(f"no client side {side!r} (sides: {', '.join(self.sides)})")
        return entered(self.sides[side].namespace)

    # ------------------------------------------------------------------ partitions

    def isolate(self, server: str, with_clients: Iterable[str] = ()) -> None:
        """Cut ``server`` (its address) off from every other server; the client sides
        named in ``with_clients`` stay with it, and reach nothing else; the other sides
        lose it and keep the rest. Replaces any partition in force."""
        if server not in self.servers:
            raise ValueError(f"{server} is not a server of this network ({self.servers})")
        kept = list(with_clients)
        for name in kept:
            if name not in self.sides:
                raise ValueError(f"no client side {name!r} (sides: {', '.join(self.sides)})")
        others = [s for s in self.servers if s != server]
        lab: list[str] = []
        for other in others:
            lab += [f"-s {server} -d {other}", f"-s {other} -d {server}"]
        cut: dict[str, list[str]] = {self.lab: lab}
        for side in self.sides.values():
            if side.name in kept:
                lab += [f"-s {side.address} -d {other}" for other in others]
                cut[side.namespace] = [f"-s {other}" for other in others]
            else:
                lab.append(f"-s {side.address} -d {server}")
                cut[side.namespace] = [f"-s {server}"]
        self._apply(cut)

    def heal(self) -> None:
        """Remove every rule: all namespaces reach one another again."""
        self._apply({ns: [] for ns in self.namespaces})

    def _apply(self, rules: dict[str, list[str]]) -> None:
        for ns, lines in rules.items():
            body = "".join(f"-A INPUT {line} -j DROP\n" for line in lines)
            ruleset = f"*filter\n:INPUT ACCEPT [0:0]\n{body}COMMIT\n"
            with entered(ns):
                _run([_tool("iptables-restore")], stdin=ruleset)  # atomic, replaces INPUT
        self.cut = {ns: lines for ns, lines in rules.items() if lines}

    # ------------------------------------------------------------------- clean-up

    def close(self) -> None:
        """Delete every namespace (their veth pairs, addresses and rules go with them)."""
        remove(self.namespaces)
        self.sides.clear()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove(namespaces: Iterable[str]) -> None:
    """Delete the named namespaces that exist; the harness's own names only."""
    errors = []
    for ns in namespaces:
        if not _NAME.match(ns):
            raise ValueError(f"{ns!r} is not a namespace this harness makes")
        if not (NETNS_DIR / ns).exists():
            continue
        try:
            _run([_tool("ip"), "netns", "delete", ns])
        except NetworkError as exc:
            errors.append(str(exc))
    if errors:
        raise NetworkError("; ".join(errors))


def orphans() -> list[str]:
    """Namespaces this harness made for a process that has exited."""
    if not NETNS_DIR.is_dir():
        return []
    found = []
    for path in NETNS_DIR.iterdir():
        m = _NAME.match(path.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            found.append(path.name)
    return sorted(found)
