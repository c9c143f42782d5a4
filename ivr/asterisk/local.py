"""Run a private Asterisk instance: find the binary, render its config, start and stop it.

Asterisk comes from `asterisk` on PATH when there is one, else from a Debian sid root built
once by scripts/asterisk-root.sh (Debian 12 has no asterisk package; sid's would replace the
host's libc, so it runs chrooted). Every instance gets its own directory with the shipped
asterisk-config/ files, generated per-instance files (ports, AMI secrets, the AGI address)
and its own run/log/spool dirs, so several instances (a `make run`, a test session) coexist.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.config import Config

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = PROJECT_DIR / "asterisk-config"
INSTANCES_IN_ROOT = "srv/starpay"  # where instances live inside a chroot root
QA_SIP_USER = "qa-phone"  # the QA-only SIP endpoint (ivr/qa/targets/sip.py dials as it)


class AsteriskNotFound(RuntimeError):
    """No Asterisk binary could be found; the message says how to get one."""


class AsteriskFailed(RuntimeError):
    """Asterisk did not start or stop as asked; the message points at its log."""


def default_root() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "starpay" / "asterisk-root"


def find_asterisk(root: str | os.PathLike[str] | None = None) -> tuple[Path | None, str]:
    """Return (chroot root or None, asterisk binary path as seen inside it)."""
    if root:
        r = Path(root)
        if (r / "usr/sbin/asterisk").exists():
            return r, "/usr/sbin/asterisk"
        raise AsteriskNotFound(f"no usr/sbin/asterisk under {r}; run `make asterisk` "
                               "or fix asterisk.root in the config")
    on_path = shutil.which("asterisk")
    if on_path:
        return None, on_path
    r = default_root()
    if (r / "usr/sbin/asterisk").exists() and (r / ".starpay-complete").exists():
        return r, "/usr/sbin/asterisk"
    raise AsteriskNotFound("Asterisk is not installed: run `make asterisk` (builds a cached "
                           "Debian root with Asterisk) or install asterisk on PATH")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Ports:
    ami: int
    agi: int
    sip: int


# The ports Asterisk itself binds (the AGI port is the service's, which listens there).
ASTERISK_PORTS = {"ami": ("AMI", socket.SOCK_STREAM), "sip": ("SIP", socket.SOCK_DGRAM)}


def port_free(port: int, kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> bool:
    """Whether we could bind host:port now (TCP with SO_REUSEADDR, as Asterisk binds it, so
    a closed connection lingering in TIME_WAIT does not count as taken)."""
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
        return True


def _inet_kind(kind: int) -> str:
    return "tcp" if kind == socket.SOCK_STREAM else "udp"


def _binds(conn: object, port: int, kind: int) -> bool:
    laddr = getattr(conn, "laddr", None)
    if not laddr or laddr.port != port:
        return False
    # A TCP port is held by its listener; a UDP socket holds its port once bound.
    return kind != socket.SOCK_STREAM or getattr(conn, "status", "") == "LISTEN"


def port_holder(port: int, kind: int = socket.SOCK_STREAM) -> str:
    """Who holds a local port, in words: "asterisk (pid 812)", or "another process" when the
    system will not say (another user's process, without root)."""
    import psutil

    try:
        conns = psutil.net_connections(kind=_inet_kind(kind))
    except psutil.AccessDenied:
        conns = []
    for conn in conns:
        if _binds(conn, port, kind) and conn.pid:
            try:
                return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return "another process"


def bound_by(pid: int, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    """Whether process pid itself holds the local port (listens on it, for TCP)."""
    import psutil

    try:
        conns = psutil.Process(pid).net_connections(kind=_inet_kind(kind))
    except psutil.Error:
        return False
    return any(_binds(c, port, kind) for c in conns)


@dataclass
class PortMove:
    """A port Asterisk was asked to bind that another process held, and where it went."""

    what: str  # "AMI" | "SIP"
    asked: int
    holder: str
    now: int

    def __str__(self) -> str:
        return (f"{self.what} port 127.0.0.1:{self.asked} is held by {self.holder}; "
                f"using {self.now}")


def claim_ports(ports: Ports, *, move: bool = True) -> list[PortMove]:
    """Make sure Asterisk's own ports in ``ports`` are free before it starts: a taken one is
    replaced by a free port (changing ``ports``, returning the moves) or, when ``move`` is
    off, refused with the port and what holds it. Asterisk would otherwise boot without AMI
    or SIP and only log it."""
    moves: list[PortMove] = []
    for field_name, (what, kind) in ASTERISK_PORTS.items():
        asked = getattr(ports, field_name)
        if port_free(asked, kind):
            continue
        holder = port_holder(asked, kind)
        if not move:
            raise AsteriskFailed(f"{what} port 127.0.0.1:{asked} is held by {holder}; stop "
                                 f"it, or give Asterisk another port (see `ivr config show`)")
        now = free_port(kind)
        setattr(ports, field_name, now)
        moves.append(PortMove(what, asked, holder, now))
    return moves


def ami_login_error(host: str, port: int, username: str, secret: str,
                    timeout: float = 3.0) -> str | None:
    """Log in to AMI once; None when it accepted us, else what went wrong, in words."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"Action: Login\r\nUsername: {username}\r\nSecret: {secret}\r\n"
                      "Events: off\r\n\r\n".encode())
            seen = b""
            while b"\r\n\r\n" not in seen.partition(b"\r\n")[2] and len(seen) < 8192:
                chunk = s.recv(4096)
                if not chunk:
                    break
                seen += chunk
            if b"Response: Success" in seen:
                s.sendall(b"Action: Logoff\r\n\r\n")
                return None
            banner, _, reply = seen.decode(errors="replace").partition("\r\n")
            if not banner.startswith("Asterisk Call Manager"):
                return f"{host}:{port} is not an Asterisk manager (it said {banner[:60]!r})"
            return f"AMI refused the login of {username!r}: {reply.strip()[:120]!r}"
    except OSError as exc:
        return f"AMI {host}:{port} did not answer: {exc}"


class LocalAsterisk:
    """One private Asterisk instance.

    ``agi_port`` is where the rendered dialplan sends AGI() calls: the service (or a test's
    AGI server) listens there.
    """

    def __init__(self, name: str, *, root: str | os.PathLike[str] | None = None,
                 ports: Ports | None = None, agi_host: str = "127.0.0.1",
                 base_dir: str | os.PathLike[str] | None = None,
                 config_dir: Path = SHIPPED_CONFIG,
                 agi_targets: list[str] | None = None) -> None:
        self.root, self.binary = find_asterisk(root)
        self.name = name
        if self.root is not None:
            self.host_dir = self.root / INSTANCES_IN_ROOT / name
            self.inside_dir = Path("/") / INSTANCES_IN_ROOT / name
        else:
            base = Path(base_dir) if base_dir else PROJECT_DIR / "var" / "asterisk"
            self.host_dir = (base / name).resolve()
            self.inside_dir = self.host_dir
        self.config_dir = config_dir
        self.agi_host = agi_host
        # "host:port" of every FastAGI worker; each call picks one at random (empty: just
        # agi_host:agi_port). Change it, then write_settings() to apply it to a live instance.
        self.agi_targets: list[str] = list(agi_targets or [])
        state = self._load_state()
        self.ports = ports or (Ports(**state["ports"]) if state else
                               Ports(ami=free_port(), agi=free_port(),
                                     sip=free_port(socket.SOCK_DGRAM)))
        # The ports we were asked for, before any move away from a taken one: a config that
        # still names the asked port follows the move (apply_local_instance).
        self.asked_ports = dataclasses.replace(self.ports)
        if state and state.get("asked"):
            for name in ASTERISK_PORTS:
                if state["ports"].get(name) == getattr(self.ports, name):
                    setattr(self.asked_ports, name, state["asked"].get(name))
        self.port_moves: list[PortMove] = []
        self.ami_host = "127.0.0.1"
        self.ami_username = "starpay"
        self.qa_username = "starpay-qa"
        creds = (state or {}).get("secrets") or {}
        # Secrets are made per instance: there is no default AMI secret to leak.
        self.ami_secret = creds.get("ami") or secrets.token_urlsafe(24)
        self.qa_secret = creds.get("qa") or secrets.token_urlsafe(24)
        self.sip_secret = creds.get("sip") or secrets.token_urlsafe(18)
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- paths -------------------------------------------------------------------------
    @property
    def ami_port(self) -> int:
        return self.ports.ami

    @property
    def agi_port(self) -> int:
        return self.ports.agi

    @property
    def log_path(self) -> Path:
        """Asterisk's full log (notices, warnings, errors, verbose) on the host."""
        return self.host_dir / "log" / "full"

    @property
    def sounds_dir(self) -> Path:
        """Host path of this instance's sounds/ (prompts go in sounds/<lang>/starpay/)."""
        return self.host_dir / "data" / "sounds"

    @property
    def state_file(self) -> Path:
        return self.host_dir / "instance.json"

    def _inside(self, *parts: str) -> str:
        return str(self.inside_dir.joinpath(*parts))

    def _load_state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    # ---- rendering ---------------------------------------------------------------------
    def prepare(self) -> None:
        """Render the instance directory from asterisk-config/ (idempotent)."""
        d = self.host_dir
        for sub in ("etc", "run", "log", "spool", "lib/keys", "cache", "data/sounds", "data/moh"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)  # holds AMI secrets
        etc = d / "etc"
        for f in self.config_dir.glob("*.conf"):
            shutil.copyfile(f, etc / f.name)
        (etc / "asterisk.conf").write_text(self._asterisk_conf())
        (etc / "manager.conf").write_text(self._manager_conf())
        (etc / "extensions_starpay_settings.conf").write_text(self._settings_conf())
        (etc / "pjsip_starpay_transport.conf").write_text(self._pjsip_transport())
        self._link_data()
        self._install_prompts()
        self.state_file.write_text(json.dumps({
            "ports": vars(self.ports), "asked": vars(self.asked_ports),
            "root": str(self.root) if self.root else None,
            "secrets": {"ami": self.ami_secret, "qa": self.qa_secret,
                        "sip": self.sip_secret},
        }))
        os.chmod(self.state_file, 0o600)

    def _system_dir(self, *candidates: str) -> str:
        base = self.root or Path("/")
        for c in candidates:
            matches = sorted(base.glob(c.lstrip("/")))
            if matches:
                return "/" + str(matches[0].relative_to(base))
        raise AsteriskNotFound(f"could not find any of {candidates} under {base}")

    def _asterisk_conf(self) -> str:
        moddir = self._system_dir("usr/lib/*/asterisk/modules", "usr/lib/asterisk/modules",
                                  "usr/lib64/asterisk/modules")
        i = self._inside
        return (
            "; generated by StarPay for this instance: edit asterisk-config/ instead\n"
            "[directories]\n"
            f"astetcdir => {i('etc')}\nastmoddir => {moddir}\n"
            f"astvarlibdir => {i('lib')}\nastdbdir => {i('lib')}\nastkeydir => {i('lib')}\n"
            f"astdatadir => {i('data')}\nastagidir => {i('data', 'agi-bin')}\n"
            f"astspooldir => {i('spool')}\nastrundir => {i('run')}\n"
            f"astlogdir => {i('log')}\nastcachedir => {i('cache')}\nastsbindir => /usr/sbin\n"
            "[options]\nverbose = 3\ndocumentation_language = en_US\nhideconnect = yes\n"
            "transmit_silence = yes\nmaxcalls = 3000\nmaxfiles = 65536\n"
        )

    def _manager_conf(self) -> str:
        # Least privilege: each user gets only the classes it uses. Asterisk's own
        # `manager show command X` gives each action's class; QueueSummary, QueueStatus and
        # Ping need none, and an action's reply events reach its caller whatever `read` says.
        # The service never gets system, config or command: with originate, system would let
        # an Originate run the System() application, and config/command reach the whole PBX.
        # The digits callers press (the dtmf and agi classes) only go to the QA user.
        return (
            "; generated by StarPay for this instance\n"
            "[general]\nenabled = yes\nbindaddr = 127.0.0.1\n"
            f"port = {self.ports.ami}\ndisplayconnects = no\nauthlimit = 20\n"
            # Events carry Asterisk's time, so QA tools can tell how far behind they read.
            "timestampevents = yes\n\n"
            "; The service (ivr serve): read call = the OriginateResponse of a callback;\n"
            "; write originate = ring a callback, message = MessageSend (text-to-pay).\n"
            "; The agents check (QueueSummary) needs no class.\n"
            f"[{self.ami_username}]\nsecret = {self.ami_secret}\n"
            "deny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\n"
            "read = call\n"
            "write = originate,message\n\n"
            "; QA and admin tools (ivr qa, ivr dialplan reload on this instance): read call,\n"
            "; dialplan, agi, dtmf = follow a test call, the AGI commands it hears and the\n"
            "; keys pressed; write originate = place test calls, call = PlayDTMF and Hangup,\n"
            "; agent = QueueAdd/QueueRemove of test agents, command = CLI commands (queue\n"
            "; members), system = Reload (ivr dialplan reload).\n"
            f"[{self.qa_username}]\nsecret = {self.qa_secret}\n"
            "deny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\n"
            "read = call,dialplan,agi,dtmf\n"
            "write = originate,call,agent,command,system\n"
        )

    def _settings_conf(self) -> str:
        targets = self.agi_targets or [f"{self.agi_host}:{self.ports.agi}"]
        listed = "\\,".join(f"agi://{t}" for t in targets)
        return (
            "; generated by StarPay for this instance (see asterisk-config/ for the why)\n"
            "[starpay-settings]\n"
            f"exten => s,1,Set(STARPAY_AGI_TARGETS={listed})\n"
            " same => n,Set(__STARPAY_AGI=${CUT(STARPAY_AGI_TARGETS,\\,,"
            "${RAND(1,${FIELDQTY(STARPAY_AGI_TARGETS,\\,)})})})\n"
            " same => n,Return()\n\n"
            "; Callbacks ring a QA line on the local instance (no real phones here).\n"
            "[starpay-callback]\n"
            "exten => _[+0-9].,1,Dial(Local/s@qa-caller,45)\n"
        )

    def write_settings(self) -> None:
        """Re-render the AGI targets and reload the dialplan of the running instance."""
        (self.host_dir / "etc" / "extensions_starpay_settings.conf").write_text(
            self._settings_conf())
        self.cli("dialplan reload")

    def _pjsip_transport(self) -> str:
        return (
            "; generated by StarPay for this instance\n"
            "[starpay-udp]\ntype = transport\nprotocol = udp\n"
            f"bind = 127.0.0.1:{self.ports.sip}\n\n"
            "; A demo softphone (user `softphone`) on loopback, dialing into [starpay].\n"
            "[softphone]\ntype = endpoint\ntransport = starpay-udp\ncontext = starpay\n"
            "disallow = all\nallow = ulaw,alaw,gsm\nauth = softphone-auth\n"
            "aors = softphone\ndirect_media = no\n"
            'callerid = "Demo Softphone" <+15551234567>\n\n'
            "[softphone-auth]\ntype = auth\nauth_type = userpass\nusername = softphone\n"
            f"password = {self.sip_secret}\n\n"
            "[softphone]\ntype = aor\nmax_contacts = 1\nremove_existing = yes\n\n"
            "; The QA phone (`ivr qa run --target sip`): its calls enter [starpay-qa-sip],\n"
            "; which takes the caller ID and attestation a scenario plays from its SIP\n"
            "; headers. Only this instance renders it; no product endpoint may trust them.\n"
            f"[{QA_SIP_USER}]\ntype = endpoint\ntransport = starpay-udp\n"
            "context = starpay-qa-sip\ndisallow = all\nallow = ulaw,alaw,gsm\n"
            f"auth = {QA_SIP_USER}-auth\naors = {QA_SIP_USER}\ndirect_media = no\n\n"
            f"[{QA_SIP_USER}-auth]\ntype = auth\nauth_type = userpass\n"
            f"username = {QA_SIP_USER}\npassword = {self.sip_secret}\n\n"
            f"[{QA_SIP_USER}]\ntype = aor\nmax_contacts = 1\nremove_existing = yes\n"
        )

    def _link_data(self) -> None:
        """data/ mirrors the system's Asterisk data dir, with sounds/<lang>/ as real dirs so
        our prompts (sounds/<lang>/starpay/) can be added without touching the system's."""
        base = self.root or Path("/")
        sysdata = self._system_dir("usr/share/asterisk", "var/lib/asterisk")
        data = self.host_dir / "data"
        for entry in (base / sysdata.lstrip("/")).iterdir():
            if entry.name in ("sounds", "moh"):
                continue
            link = data / entry.name
            if not link.is_symlink():
                link.symlink_to(f"{sysdata}/{entry.name}" if self.root else entry)
        sounds_sys = base / sysdata.lstrip("/") / "sounds"
        for lang in ("en", "es"):
            dst = self.sounds_dir / lang
            dst.mkdir(parents=True, exist_ok=True)
            src = self._resolve(sounds_sys / lang)
            if src is None or not src.is_dir():
                continue
            for entry in src.iterdir():
                link = dst / entry.name
                if entry.name == "starpay" or link.is_symlink() or link.exists():
                    continue
                target = self._resolve(entry) or entry
                if self.root:
                    # Symlinks are followed inside the chroot: point at the in-root path.
                    target = Path("/") / target.relative_to(self.root)
                link.symlink_to(target)

    def _install_prompts(self) -> None:
        from ivr.prompts.build import DEFAULT_BUILD_DIR, install_prompts

        try:
            install_prompts(DEFAULT_BUILD_DIR, self.sounds_dir)
        except FileNotFoundError:
            log.warning("StarPay prompts are not built: callers will hear silence where "
                        "they belong; run `ivr prompts build`")

    def _resolve(self, path: Path) -> Path | None:
        """Follow symlinks the way the chroot would: absolute targets are inside the root.
        (Debian's sounds/en is an absolute link through the root's /etc/alternatives.)"""
        for _ in range(16):
            if not path.is_symlink():
                return path if path.exists() else None
            target = Path(os.readlink(path))
            if target.is_absolute():
                path = (self.root / target.relative_to("/")) if self.root else target
            else:
                path = Path(os.path.normpath(path.parent / target))
        return None

    # ---- process control ---------------------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        base = [self.binary, "-C", self._inside("etc", "asterisk.conf"), *args]
        return ["chroot", str(self.root), *base] if self.root else base

    def cli(self, command: str, timeout: float = 10.0) -> str:
        """Run one CLI command on the running instance (`asterisk -rx`)."""
        out = subprocess.run(self._cmd("-rx", command), capture_output=True, text=True,
                             timeout=timeout, check=False)
        if out.returncode != 0 and "Unable to connect" in (out.stdout + out.stderr):
            raise AsteriskFailed(f"instance {self.name} is not running")
        return out.stdout

    def running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return (self.host_dir / "run" / "asterisk.ctl").exists()

    def pid(self) -> int | None:
        try:
            return int((self.host_dir / "run" / "asterisk.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 60.0, *, detach: bool = False,
              move_taken_ports: bool = True) -> None:
        """Start the instance and wait until it is fully booted and holds its AMI and SIP
        ports. A port another process holds is first replaced by a free one (see
        ``port_moves``), or refused when ``move_taken_ports`` is off."""
        if self.running():
            return
        self.port_moves = claim_ports(self.ports, move=move_taken_ports)
        for move in self.port_moves:
            log.warning("%s", move)
        self.prepare()
        console = open(self.host_dir / "log" / "console.log", "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            self._cmd("-f", "-n", "-q"), stdin=subprocess.DEVNULL, stdout=console,
            stderr=subprocess.STDOUT, start_new_session=detach)
        console.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise AsteriskFailed(f"Asterisk exited with {self._proc.returncode}; see "
                                     f"{self.host_dir / 'log'}")
            if (self.host_dir / "run" / "asterisk.ctl").exists():
                try:
                    out = subprocess.run(self._cmd("-rx", "core waitfullybooted"),
                                         capture_output=True, text=True, timeout=timeout,
                                         check=False)
                except subprocess.TimeoutExpired:
                    break
                if "fully booted" in out.stdout:
                    self._check_bound()
                    return
            time.sleep(0.1)
        self.stop()
        raise AsteriskFailed(f"Asterisk did not boot within {timeout:.0f} s; see "
                             f"{self.host_dir / 'log'}")

    def listening(self) -> dict[str, bool]:
        """Which of its own ports ("ami", "sip") the running Asterisk really holds."""
        pid = self._proc.pid if self._proc else self.pid()
        return {name: pid is not None and bound_by(pid, getattr(self.ports, name), kind)
                for name, (_, kind) in ASTERISK_PORTS.items()}

    def _check_bound(self, wait: float = 3.0) -> None:
        """Asterisk boots even when it could not bind AMI or SIP (it only logs it): check
        that it holds both and takes our AMI login, or stop it and say which port failed."""
        deadline = time.monotonic() + wait
        while True:
            missing = [name for name, held in self.listening().items() if not held]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        problems = []
        for name in missing:
            what, kind = ASTERISK_PORTS[name]
            port = getattr(self.ports, name)
            problems.append(f"Asterisk did not bind {what} 127.0.0.1:{port} "
                            f"(held by {port_holder(port, kind)})")
        if not missing:
            error = ami_login_error(self.ami_host, self.ports.ami, self.ami_username,
                                    self.ami_secret)
            if error:
                problems.append(error)
        if problems:
            self.stop()
            raise AsteriskFailed("; ".join(problems) + f"; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
        pid = self._proc.pid if self._proc else self.pid()
        if pid is None:
            return
        try:
            subprocess.run(self._cmd("-rx", "core stop now"), capture_output=True,
                           timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid, self._proc):
            time.sleep(0.1)
        if _alive(pid, self._proc):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._proc:
            self._proc.wait(timeout=5)
            self._proc = None
        for stale in ("asterisk.ctl", "asterisk.pid"):
            (self.host_dir / "run" / stale).unlink(missing_ok=True)

    def restart(self, timeout: float = 60.0) -> None:
        self.stop()
        self.start(timeout)

    def remove(self) -> None:
        """Stop and delete the instance directory."""
        self.stop()
        shutil.rmtree(self.host_dir, ignore_errors=True)

    def version(self) -> str:
        out = subprocess.run(self._cmd("-V"), capture_output=True, text=True, check=False)
        return out.stdout.strip()


def _alive(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def apply_local_instance(cfg: Config) -> None:
    """The embedded default, for an AMI on loopback: an empty ami.secret means the secret
    generated for the local Asterisk instance (`ivr asterisk start`), never a default; and
    an AMI or SIP port the instance had to move away from (another process held it) means
    the port it moved to, so `ivr serve` and `ivr qa call` follow it."""
    if cfg.ami.host not in ("127.0.0.1", "localhost", "::1"):
        return
    state = instance_state(cfg.asterisk.instance, cfg.asterisk.root)
    if not cfg.ami.secret:
        cfg.ami.secret = (state.get("secrets") or {}).get("ami") or ""
    asked, ports = state.get("asked") or {}, state.get("ports") or {}
    if asked.get("ami") == cfg.ami.port and ports.get("ami"):
        cfg.ami.port = int(ports["ami"])
    if asked.get("sip") == cfg.asterisk.sip_port and ports.get("sip"):
        cfg.asterisk.sip_port = int(ports["sip"])


# The name the composition root calls it by.
apply_local_ami_secret = apply_local_instance


def local_admin_login(cfg: Config) -> Config:
    """For admin commands (ivr dialplan reload): when cfg.ami is the service's login to the
    local instance, a copy that logs in as the instance's QA/admin user instead, which holds
    the classes (system) the service's user does not. Any other AMI is left as configured:
    a site gives those commands a user of its own (README)."""
    state = instance_state(cfg.asterisk.instance, cfg.asterisk.root)
    creds = state.get("secrets") or {}
    if (cfg.ami.host not in ("127.0.0.1", "localhost", "::1") or not creds.get("qa")
            or cfg.ami.secret != creds.get("ami")):
        return cfg
    ami = dataclasses.replace(cfg.ami, username="starpay-qa", secret=creds["qa"])
    return dataclasses.replace(cfg, ami=ami)


def instance_state(name: str, root: str | os.PathLike[str] | None = None) -> dict:
    """What `prepare` saved for a local instance (ports, secrets); {} when there is none."""
    try:
        a = LocalAsterisk(name, root=root or None)
    except AsteriskNotFound:
        return {}
    return a._load_state() or {}


def instance_secret(name: str, root: str | os.PathLike[str] | None = None,
                    user: str = "ami") -> str | None:
    """The AMI secret generated for a local instance, or None when there is no instance."""
    return (instance_state(name, root).get("secrets") or {}).get(user)
