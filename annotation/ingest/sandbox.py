"""What a decoding child may reach: an empty environment, no network, one folder to write in.

A crafted microscope file that exploits a decoder bug runs code as the decoding child, so the
child must hold nothing worth stealing and reach nothing worth changing. Four layers, each
from the kernel, none needing root, and each reported when it is missing (never silently):

- **Environment**: the decode server (and so every child it forks) starts with an empty
  environment plus the few variables decoding needs (``decode_environment``): no
  ``DATABASE_URL``, broker URL, ``DJANGO_SECRET_KEY`` or password reaches it.
- **Network namespace**: the decode server runs under ``unshare --net`` (as root) or
  ``unshare --user --map-root-user --net`` (as any other user): its own network stack with no
  interface but a loopback that is down. Docker's default seccomp profile refuses ``unshare``;
  there the next layer alone keeps the network out of reach.
- **Socket filter** (seccomp, in each child): ``socket()`` and io_uring (which could open
  sockets without that call) fail with EACCES, whatever the address family: no TCP, UDP or
  Unix socket, so neither the database's port nor its local socket can be reached.
- **Landlock** (Linux 5.13+, in each child): the child may write only inside the one folder
  its request names (its scratch folder, which holds the output until the trusted parent
  moves it into place) and read only the Python installation, the project's packages, system
  libraries and the one video; media, exports and the secret key file are out of reach. Where
  the kernel's Landlock ABI allows it (4+) TCP bind and connect are refused too, and (6+) the
  child cannot signal or reach abstract Unix sockets outside its own sandbox.

A separate uid was the other way to keep the child from the worker's files; it needs root,
a chown of every input and output, and still lets the child read whatever that uid can, so
Landlock's per-request path lists were chosen instead. Plain Python (ctypes), no Django.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent

# Variables the decode server may inherit from its caller (none of them is a secret);
# everything else is dropped.
_PASSED_ON = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")

# --- Landlock (linux/landlock.h) -------------------------------------------------------------
_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI1_ALL = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
# Rights that apply to a file (not a folder) in a rule.
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR

# System folders and files a decoding child may read (those that exist).
_SYSTEM_READABLE = (
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/proc/cpuinfo",
    "/proc/meminfo",
)

# --- seccomp (linux/seccomp.h, linux/filter.h, linux/audit.h) --------------------------------
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_SECCOMP_RET_ALLOW, _SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
_X32_SYSCALL_BIT = 0x40000000
_IO_URING_SYSCALLS = (425, 426, 427)  # setup, enter, register: the same on every architecture
# Per machine: the audit architecture and the socket() number; others get no filter.
_SOCKET_SYSCALL = {
    "x86_64": (0xC000003E, 41),
    "aarch64": (0xC00000B7, 198),
}


class SandboxError(OSError):
    """The kernel refused to set up a sandbox layer that it said it supports."""


@dataclass(frozen=True)
class SandboxStatus:
    """Which layers this machine gives the decoding child (the environment is always emptied)."""

    network_namespace: bool
    socket_filter: bool
    landlock_abi: int  # 0: no Landlock

    def layers(self) -> list[str]:
        found = ["environment emptied"]
        if self.network_namespace:
            found.append("own network namespace")
        if self.socket_filter:
            found.append("no sockets (seccomp)")
        if self.landlock_abi:
            found.append(f"files and TCP confined (Landlock ABI {self.landlock_abi})")
        return found

    def missing(self) -> dict[str, str]:
        """What the child can still reach ("network", "files"), in a sentence each; empty
        when it is fully isolated."""
        gaps = {}
        if not (self.network_namespace or self.socket_filter):
            gaps["network"] = (
                "the decoding child can open network connections: `unshare --net` failed "
                f"and there is no seccomp socket filter for {platform.machine()}"
            )
        if not self.landlock_abi:
            gaps["files"] = (
                "the decoding child can read and write every file the worker can (media, "
                "exports, the secret key file): this kernel has no Landlock (Linux 5.13+ "
                "with landlock among its LSMs; in Docker, a seccomp profile that allows it)"
            )
        return gaps


def decode_environment() -> dict[str, str]:
    """The whole environment of the decode server and its children."""
    env = {name: os.environ[name] for name in _PASSED_ON if os.environ.get(name)}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    # One thread each: less address space reserved per thread, and the worker's cores stay
    # shared between the ingestions it runs side by side. (Threads must not exist when the
    # server forks, either.)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OPENCV_FFMPEG_THREADS="1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the child may write nowhere near the code
    # Each child is a fresh process whose frame and encoder buffers (tens of MB) all start as
    # page faults; transparent huge pages for malloc's memory make those 512 times fewer (a
    # fifth of a child's CPU time on 1392 x 976 video). glibc 2.35+; others ignore it.
    env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([str(PROJECT_ROOT), *inherited]))
    return env


@functools.cache
def network_namespace_prefix() -> tuple[str, ...]:
    """The command prefix that starts a program in its own network namespace, or () when
    this machine allows none (no ``unshare``, or a seccomp profile that refuses it)."""
    unshare = shutil.which("unshare") or next(
        (p for p in ("/usr/bin/unshare", "/bin/unshare") if Path(p).exists()), None
    )
    if unshare is None:
        return ()
    candidates: list[tuple[str, ...]] = [(unshare, "--net", "--")] if os.geteuid() == 0 else []
    candidates.append((unshare, "--user", "--map-root-user", "--net", "--"))
    for prefix in candidates:
        try:
            done = subprocess.run(
                [*prefix, sys.executable, "-c", "pass"],
                env=decode_environment(),
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return prefix
    return ()


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _syscall(number: int, *args: object) -> int:
    result = int(_libc().syscall(ctypes.c_long(number), *args))
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


@functools.cache
def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when it has none (or a seccomp profile hides it)."""
    if sys.platform != "linux":
        return 0
    try:
        return _syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), 1)
    except OSError:
        return 0


def socket_filter_available() -> bool:
    return sys.platform == "linux" and platform.machine() in _SOCKET_SYSCALL


def sandbox_status() -> SandboxStatus:
    return SandboxStatus(
        network_namespace=bool(network_namespace_prefix()),
        socket_filter=socket_filter_available(),
        landlock_abi=landlock_abi(),
    )


# --- in the child ----------------------------------------------------------------------------


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _handled_fs(abi: int) -> int:
    rights = _FS_ABI1_ALL
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


@functools.cache
def readable_roots() -> tuple[Path, ...]:
    """What a decoding child may read besides its video, its folder and its own /proc entry:
    the Python installation, the project's packages (not the project folder: ``var/`` holds
    the data and the secret key in the embedded default) and the system's libraries. Worked
    out once, in the decode server; each child only opens them."""
    roots = {Path(p) for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix)}
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        if path != PROJECT_ROOT.resolve() and path.exists():
            roots.add(path)
    roots.update(p for p in PROJECT_ROOT.iterdir() if (p / "__init__.py").is_file())
    roots.update(Path(p) for p in _SYSTEM_READABLE)
    return tuple(sorted(p for p in roots if p.exists()))


def _landlock(*, read: Iterable[Path], write: Iterable[Path], abi: int) -> None:
    handled = _handled_fs(abi)
    attr = _RulesetAttr(
        handled_access_fs=handled,
        handled_access_net=(_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0,
        scoped=(_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0,
    )
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    try:
        ruleset = _syscall(
            _SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0
        )
    except OSError as exc:
        raise SandboxError(exc.errno, f"Landlock refused the ruleset: {exc.strerror}") from None
    try:
        rules = [(p, _READ) for p in read] + [(p, handled) for p in write]
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a system folder this machine does not have
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    rights &= _FILE_RIGHTS
                rule = _PathBeneathAttr(allowed_access=rights & handled, parent_fd=fd)
                _syscall(
                    _SYS_LANDLOCK_ADD_RULE,
                    ruleset,
                    _LANDLOCK_RULE_PATH_BENEATH,
                    ctypes.byref(rule),
                    0,
                )
            except OSError as exc:
                raise SandboxError(exc.errno, f"Landlock refused a rule for {path}") from None
            finally:
                os.close(fd)
        _syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _socket_filter_program() -> list[tuple[int, int, int, int]]:
    """Classic BPF: a foreign architecture's calls, socket(), io_uring (and x32 calls on
    x86_64) fail with EACCES; every other call is allowed."""
    arch, socket_nr = _SOCKET_SYSCALL[platform.machine()]
    denied = [socket_nr, *_IO_URING_SYSCALLS]
    deny = _SECCOMP_RET_ERRNO | errno.EACCES
    # Instructions after the number is loaded: one JEQ per denied call, JGE x32, ALLOW, DENY.
    checks = len(denied) + 1
    program = [(_BPF_LD_W_ABS, 0, 0, 4), (_BPF_JEQ_K, 1, 0, arch), (_BPF_RET_K, 0, 0, deny)]
    program.append((_BPF_LD_W_ABS, 0, 0, 0))
    for index, number in enumerate(denied):
        program.append((_BPF_JEQ_K, checks - index, 0, number))
    x32 = _X32_SYSCALL_BIT if platform.machine() == "x86_64" else 0xFFFFFFFF
    program.append((_BPF_JGE_K, 1, 0, x32))
    program += [(_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW), (_BPF_RET_K, 0, 0, deny)]
    return program


def _no_sockets() -> None:
    program = _socket_filter_program()
    filters = (_SockFilter * len(program))(*(_SockFilter(*step) for step in program))
    prog = _SockFprog(len(program), filters)
    if _libc().prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        number = ctypes.get_errno()
        raise SandboxError(number, f"seccomp refused the socket filter: {os.strerror(number)}")


def confine(*, readable: Iterable[Path], writable: Path) -> None:
    """Confine this process (a decoding child, before it opens the file) for good: no new
    privileges, no sockets, and with Landlock reads only from ``readable`` (plus the
    installation, see ``readable_roots``) and writes only inside ``writable``. Raises
    SandboxError when a layer the kernel offers cannot be set up."""
    if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SandboxError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if socket_filter_available():
        _no_sockets()
    abi = landlock_abi()
    if abi:
        own = Path(f"/proc/{os.getpid()}")
        _landlock(read=[*readable_roots(), own, *readable], write=[writable], abi=abi)
