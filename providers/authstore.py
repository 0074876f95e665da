"""``auth.json``: stored credentials, one entry per provider id.

Shape: ``{"<provider-id>": {"type": "api_key", "key": ..., "env": {...}?} | {"type": "oauth", ...}}``.
This module only stores entries; it does not interpret them, so unknown providers and unknown fields
survive every write.

Concurrency: several processes (``switchboard serve`` replicas on one machine, ``switchboard login``)
share the file. Every change is a read-modify-write under a cross-process lock (``auth.json.lock``
beside the file), and the file is replaced atomically, so readers never need the lock and never see a
half-written file. An OAuth refresh holds :meth:`AuthStore.locked` across re-read → refresh → write so
that two processes never spend the same refresh token.

Secrets: the directory is 0700 and the file 0600 after every write; nothing here logs a value.

A file that does not parse (invalid JSON or UTF-8, empty, not an object) is never overwritten: every
write refuses with a :class:`ConfigError` naming the file, so that a login cannot silently destroy the
credentials it holds. :meth:`AuthStore.read_checked` also returns the :class:`~providers.keyvalue.Origin`
of the read, which decides whether its ``!command`` values may run.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .errors import ConfigError
from .keyvalue import ConfigFile, Origin, read_config_file

__all__ = ["AuthStore"]

_LOCK_TIMEOUT = 10.0


class AuthStore:
    """The ``auth.json`` at ``path``. Methods raise :class:`ConfigError` for an unreadable or invalid
    file and when the lock is not obtained within ``_LOCK_TIMEOUT`` seconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # A singleton per path, so that two stores for one file in one thread share the re-entrant
        # lock instead of deadlocking; FileLock is thread-local, so other threads still wait.
        self._lock = FileLock(path.with_name(path.name + ".lock"), mode=0o600, is_singleton=True)

    def read(self) -> dict[str, Any]:
        """The whole file; ``{}`` when it does not exist."""
        return self._parse(self._read_text())

    def read_checked(self) -> tuple[dict[str, Any], Origin]:
        """:meth:`read`, and the verdict on the descriptor the content was read from."""
        found = self._read_file()
        if found is None:
            return {}, Origin(self.path, f"{self.path} does not exist")
        return self._parse(self._decode(found.data)), found.origin

    def get(self, provider_id: str) -> dict[str, Any] | None:
        entry = self.read().get(provider_id)
        if entry is None or isinstance(entry, dict):
            return entry
        raise ConfigError(
            f"{self.path}: the entry {provider_id!r} must be a JSON object, found {_json_type(entry)}; "
            f"fix it or run 'switchboard login {provider_id}'"
        )

    def set(self, provider_id: str, entry: dict[str, Any]) -> None:
        """Store ``entry`` as the whole credential of ``provider_id``; other entries are kept."""
        self.update(lambda data: {**data, provider_id: entry})

    def remove(self, provider_id: str) -> bool:
        """Drop ``provider_id``'s entry; False when there was none."""
        with self.locked():
            data = self.read()
            if provider_id not in data:
                return False
            del data[provider_id]
            self._write(data)
            return True

    def update(self, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Apply ``fn`` to the current contents under the lock and store (and return) what it returns.

        ``fn`` may mutate its argument; it must not call back into the store from another thread.
        """
        with self.locked():
            text = self._read_text()
            try:
                before = _dump(self._parse(text))
            except ConfigError as exc:
                raise ConfigError(
                    f"{exc.message}; nothing was written: fix the file, or move it aside "
                    f"(mv {self.path} {self.path}.broken) and try again"
                ) from exc
            data = fn(self._parse(text))
            if _dump(data) != before:
                self._write(data)
            return data

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cross-process lock; re-entrant within one thread, so ``update()`` may run inside."""
        _ensure_dir(self.path.parent)
        try:
            self._lock.acquire(timeout=_LOCK_TIMEOUT)
        except Timeout as exc:
            raise ConfigError(
                f"could not lock {self.path} within {_LOCK_TIMEOUT:g}s: another switchboard process "
                "(a login or a token refresh) is holding it; retry in a moment"
            ) from exc
        try:
            if not self.path.exists():
                self._write({})
            yield
        finally:
            self._lock.release()

    def mtime(self) -> float | None:
        """Modification time of the file, None when it does not exist."""
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def _read_text(self) -> str | None:
        found = self._read_file()
        return None if found is None else self._decode(found.data)

    def _read_file(self) -> ConfigFile | None:
        try:
            return read_config_file(self.path)
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path} ({exc.strerror}); fix its permissions or remove it") from exc

    def _decode(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{self.path} is not valid UTF-8 (byte {exc.start}); fix or remove it") from exc

    def _parse(self, text: str | None) -> dict[str, Any]:
        if text is None:
            return {}
        if not text.strip():
            raise ConfigError(f"{self.path} is not valid JSON (the file is empty); write {{}} into it or remove it")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # exc.msg and the position only, never exc.doc: the document holds the secrets.
            raise ConfigError(
                f"{self.path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                "expected an object mapping provider ids to credentials"
            ) from exc
        if not isinstance(data, dict):
            raise ConfigError(
                f"{self.path} must contain a JSON object mapping provider ids to credentials, found {_json_type(data)}"
            )
        return data

    def _write(self, data: dict[str, Any]) -> None:
        _ensure_dir(self.path.parent)
        # mkstemp creates the file 0600, so the secret is never readable by others, not even briefly.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_dump(data))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.chmod(self.path, 0o600)
        _fsync_dir(self.path.parent)


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _ensure_dir(directory: Path) -> None:
    if not directory.is_dir():
        # exist_ok: another process may create it first. Only a directory we create is forced to 0700
        # (chmod too, since mkdir's mode is filtered by the umask); an existing one is the user's choice.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; some platforms and filesystems cannot open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
