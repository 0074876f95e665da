"""Credential "key values": auth.json ``key`` and models.json ``apiKey``/``headers`` values.

A key value is resolved by the first rule that applies:

1. ``!command`` runs the rest through ``/bin/sh -c`` (10 s timeout); trimmed stdout is the key. A failure,
   a timeout or empty output leaves the value unresolved. Successes are cached per command string for the
   process lifetime (:func:`forget_command` drops one, e.g. after the upstream answered 401). Because the
   command runs with the proxy's privileges, it only runs when it came from a file that only the current
   user could have written; anything else raises :class:`ConfigError` saying why and how to fix it.
2. ``$NAME`` / ``${NAME}`` anywhere in the string is replaced by the environment variable; ``$$`` is a
   literal ``$`` and ``$!`` a literal ``!`` (so a literal key may start with ``!``). An unset or empty
   variable leaves the whole value unresolved.
3. A bare string that names a set, non-empty environment variable is that variable's value.
4. Anything else is the literal key.

Callers: the credential lookup (auth.json, models.json) and the status/availability listing, which uses
:func:`is_configured` so that listing providers never runs a command.

Who could have written the file is judged on the very descriptor the content is read from
(:func:`read_config_file`): the directory is opened, checked with ``fstat`` and the file opened inside
it (``openat``, ``O_NOFOLLOW``), checked with ``fstat`` and read from that descriptor. The verdict
(:class:`Origin`) travels with the content, so nobody can swap the file between the check and the read:

* the file must be a regular file, not a symlink, owned by the effective user and not writable by group
  or others;
* its directory must be owned by the effective user (or root) and not writable by group or others
  unless the sticky bit is set: whoever can write the directory can replace the file in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
import stat
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = [
    "ConfigFile",
    "Origin",
    "aresolve_key_value",
    "forget_command",
    "is_configured",
    "origin_of",
    "read_config_file",
    "resolve_key_value",
]

log = logging.getLogger(__name__)

_COMMAND_TIMEOUT = 10.0

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_REFERENCE = re.compile(r"\$(?:(\$)|(!)|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")

# Only successes are cached: a failure is often transient (a locked password manager) and should be
# retried on the next request rather than for the rest of the process lifetime.
_cache: dict[str, str] = {}
# One lock per command, so that a burst of concurrent requests runs a slow command once, not N times.
_command_locks: dict[str, threading.Lock] = {}
_command_locks_guard = threading.Lock()
_refusals_logged: set[tuple[Path, str]] = set()


@dataclass(frozen=True, slots=True)
class Origin:
    """The config file a key value was read from, judged when it was read."""

    path: Path
    #: Why a ``!command`` from this read must not run (how to fix it included); None: it may run.
    refusal: str | None = None
    #: When set, only these ``!command`` values came from the approved read (a value kept from an older
    #: read of the same file is not vouched for by a newer one); None: every value came from this read.
    commands: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ConfigFile:
    data: bytes
    origin: Origin


def read_config_file(path: Path) -> ConfigFile | None:
    """The file's bytes and whether its ``!command`` values may run, judged on the descriptor they were
    read from (see the module docstring). None when the file does not exist; OSError when it cannot be
    read (not a regular file, no permission), for the caller to report with the file's name."""
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        refusal = _directory_refusal(path.parent, os.fstat(dir_fd))
        try:
            fd = os.open(path.name, _READ_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            # A symlink still serves plain keys, but nothing vouches for whatever it points at.
            fd = os.open(path.name, _READ_FLAGS & ~os.O_NOFOLLOW, dir_fd=dir_fd)
            refusal = f"{path} is a symbolic link; replace it with the file itself (owned by you, chmod 600)"
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(path))
            data = _read_all(fd)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    return ConfigFile(data, Origin(path, refusal or _file_refusal(path, st)))


def origin_of(path: Path) -> Origin:
    """The verdict on ``path`` as it is now, for a value that was not read through
    :func:`read_config_file` (its content is not read here)."""
    try:
        found = read_config_file(path)
    except OSError as exc:
        return Origin(path, f"cannot check {path} ({exc.strerror})")
    return found.origin if found is not None else Origin(path, f"cannot check {path}: it does not exist")


def is_configured(value: str, env: Mapping[str, str]) -> bool:
    """Whether ``value`` would plausibly resolve, without running any command."""
    if value.startswith("!"):
        return bool(value[1:].strip())
    names = [m.group(3) or m.group(4) for m in _REFERENCE.finditer(value) if m.group(3) or m.group(4)]
    if names:
        return all(env.get(name) for name in names)
    return bool(value)


def resolve_key_value(value: str, *, env: Mapping[str, str], source: Origin | Path | None = None) -> str | None:
    """The secret ``value`` stands for, or None when it does not resolve.

    ``source`` is where the value was read from: the :class:`Origin` of the read (a bare path is judged
    as the file is now); None means it came from elsewhere (a request, a CLI flag) and a ``!command`` is
    refused. Raises :class:`ConfigError` when a ``!command`` may not run.
    """
    if value.startswith("!"):
        return _run_cached(value, env, source)
    if _REFERENCE.search(value):
        return _interpolate(value, env)
    if not value:
        return None
    return env.get(value) or value


async def aresolve_key_value(value: str, *, env: Mapping[str, str], source: Origin | Path | None = None) -> str | None:
    """:func:`resolve_key_value` that keeps the event loop free while a ``!command`` runs."""
    if value.startswith("!"):
        return await asyncio.to_thread(resolve_key_value, value, env=env, source=source)
    return resolve_key_value(value, env=env, source=source)


def forget_command(value: str) -> None:
    """Drop the cached result of a ``!command`` value so the next resolve runs it again."""
    _cache.pop(value, None)


def _interpolate(value: str, env: Mapping[str, str]) -> str | None:
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        if match.group(1) or match.group(2):
            return match.group(1) or match.group(2)
        found = env.get(match.group(3) or match.group(4))
        if not found:
            missing = True
            return ""
        return found

    result = _REFERENCE.sub(substitute, value)
    return None if missing else result


def _run_cached(value: str, env: Mapping[str, str], source: Origin | Path | None) -> str | None:
    # Checked before the cache too: a value from an untrusted place must not read a secret cached for a
    # trusted file just by naming the same command.
    origin = _check_source(value, source)
    if (cached := _cache.get(value)) is not None:
        return cached
    with _command_lock(value):
        if (cached := _cache.get(value)) is not None:
            return cached
        result = _run_command(value[1:], env, origin.path)
        if result is not None:
            _cache[value] = result
        return result


def _command_lock(value: str) -> threading.Lock:
    with _command_locks_guard:
        return _command_locks.setdefault(value, threading.Lock())


def _check_source(value: str, source: Origin | Path | None) -> Origin:
    if source is None:
        raise ConfigError(
            "refusing to run a !command key value that did not come from a config file; "
            "put the command in auth.json or models.json instead"
        )
    origin = source if isinstance(source, Origin) else origin_of(source)
    refusal = origin.refusal
    if refusal is None and origin.commands is not None and value not in origin.commands:
        refusal = f"the command was not in the latest approved read of {origin.path}; fix the file so it reloads"
    if refusal is not None:
        if (origin.path, refusal) not in _refusals_logged:  # once, not at every request that retries
            _refusals_logged.add((origin.path, refusal))
            log.warning("refusing to run the !command in %s: %s", origin.path, refusal)
        raise ConfigError(f"refusing to run the !command in {origin.path}: {refusal}")
    return origin


def _directory_refusal(directory: Path, st: os.stat_result) -> str | None:
    if st.st_uid not in (os.geteuid(), 0):
        return (
            f"its directory {directory} belongs to another user (uid {st.st_uid}), who could replace the file; "
            "keep the file in a directory of your own"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        return (
            f"its directory {directory} is writable by group or others, who could replace the file; "
            f"chmod 700 {directory}"
        )
    return None


def _file_refusal(path: Path, st: os.stat_result) -> str | None:
    if st.st_uid != os.geteuid():
        return f"{path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}); chown it to yourself"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by group or others; chmod 600 {path}"
    return None


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _run_command(command: str, env: Mapping[str, str], source: Path | None) -> str | None:
    if not command.strip():
        log.warning("the !command key value in %s is empty", source)
        return None
    # Own session so a timeout kills the whole pipeline, not just the shell; stdin closed so a command
    # that prompts fails fast instead of reading the proxy's terminal; stderr dropped because it is
    # neither ours to log nor guaranteed free of secrets.
    with subprocess.Popen(
        ["/bin/sh", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
        start_new_session=True,
    ) as proc:
        try:
            stdout, _ = proc.communicate(timeout=_COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.warning(
                "the !command key value in %s timed out after %gs; run it by hand to check it",
                source,
                _COMMAND_TIMEOUT,
            )
            return None
    if proc.returncode != 0:
        log.warning(
            "the !command key value in %s exited with status %d; run it by hand to check it",
            source,
            proc.returncode,
        )
        return None
    key = stdout.decode("utf-8", "replace").strip()
    if not key:
        log.warning("the !command key value in %s printed nothing (exit status 0)", source)
        return None
    return key
