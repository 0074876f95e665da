"""Credential "key values": auth.json ``key`` and models.json ``apiKey``/``headers`` values.

A key value is resolved by the first rule that applies:

1. ``!command`` runs the rest through ``/bin/sh -c`` (10 s timeout); trimmed stdout is the key. A failure,
   a timeout or empty output leaves the value unresolved. Successes are cached per command string for the
   process lifetime (:func:`forget_command` drops one, e.g. after the upstream answered 401). Because the
   command runs with the proxy's privileges, it only runs when it came from a file owned by the current
   user that nobody else can write; anything else raises :class:`ConfigError`.
2. ``$NAME`` / ``${NAME}`` anywhere in the string is replaced by the environment variable; ``$$`` is a
   literal ``$`` and ``$!`` a literal ``!`` (so a literal key may start with ``!``). An unset or empty
   variable leaves the whole value unresolved.
3. A bare string that names a set, non-empty environment variable is that variable's value.
4. Anything else is the literal key.

Callers: the credential lookup (auth.json, models.json) and the status/availability listing, which uses
:func:`is_configured` so that listing providers never runs a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import stat
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError

__all__ = ["aresolve_key_value", "forget_command", "is_configured", "resolve_key_value"]

log = logging.getLogger(__name__)

_COMMAND_TIMEOUT = 10.0

_REFERENCE = re.compile(r"\$(?:(\$)|(!)|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")

# Only successes are cached: a failure is often transient (a locked password manager) and should be
# retried on the next request rather than for the rest of the process lifetime.
_cache: dict[str, str] = {}
# One lock per command, so that a burst of concurrent requests runs a slow command once, not N times.
_command_locks: dict[str, threading.Lock] = {}
_command_locks_guard = threading.Lock()


def is_configured(value: str, env: Mapping[str, str]) -> bool:
    """Whether ``value`` would plausibly resolve, without running any command."""
    if value.startswith("!"):
        return bool(value[1:].strip())
    names = [m.group(3) or m.group(4) for m in _REFERENCE.finditer(value) if m.group(3) or m.group(4)]
    if names:
        return all(env.get(name) for name in names)
    return bool(value)


def resolve_key_value(value: str, *, env: Mapping[str, str], source: Path | None = None) -> str | None:
    """The secret ``value`` stands for, or None when it does not resolve.

    ``source`` is the file the value was read from; None means it came from elsewhere (a request, a CLI
    flag) and a ``!command`` is refused. Raises :class:`ConfigError` when a ``!command`` may not run.
    """
    if value.startswith("!"):
        return _run_cached(value, env, source)
    if _REFERENCE.search(value):
        return _interpolate(value, env)
    if not value:
        return None
    return env.get(value) or value


async def aresolve_key_value(value: str, *, env: Mapping[str, str], source: Path | None = None) -> str | None:
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


def _run_cached(value: str, env: Mapping[str, str], source: Path | None) -> str | None:
    # Checked before the cache too: a value from an untrusted place must not read a secret cached for a
    # trusted file just by naming the same command.
    _check_source(source)
    if (cached := _cache.get(value)) is not None:
        return cached
    with _command_lock(value):
        if (cached := _cache.get(value)) is not None:
            return cached
        result = _run_command(value[1:], env, source)
        if result is not None:
            _cache[value] = result
        return result


def _command_lock(value: str) -> threading.Lock:
    with _command_locks_guard:
        return _command_locks.setdefault(value, threading.Lock())


def _check_source(source: Path | None) -> None:
    if source is None:
        raise ConfigError(
            "refusing to run a !command key value that did not come from a config file; "
            "put the command in auth.json or models.json instead"
        )
    why = "the file must be owned by you and not writable by group or others"
    try:
        st = source.stat()
    except OSError as exc:
        raise ConfigError(f"refusing to run the !command in {source}: cannot check the file ({exc.strerror})") from exc
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"refusing to run the !command in {source}: {why} (chmod 600 {source})")


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
