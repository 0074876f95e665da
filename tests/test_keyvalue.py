from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from providers import keyvalue
from providers.errors import ConfigError
from providers.keyvalue import aresolve_key_value, forget_command, is_configured, resolve_key_value


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyvalue, "_cache", {})


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "auth.json"
    path.write_text("{}\n")
    path.chmod(0o600)
    return path


# --- literals and environment references -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sk-literal", "sk-literal"),
        ("MY_KEY", "from-env"),  # bare name of a set variable
        ("UNSET_KEY", "UNSET_KEY"),  # bare name of an unset variable is a literal
        ("EMPTY_KEY", "EMPTY_KEY"),  # ... and so is the name of an empty one
        ("$MY_KEY", "from-env"),
        ("${MY_KEY}", "from-env"),
        ("Bearer $MY_KEY", "Bearer from-env"),
        ("${MY_KEY}suffix", "from-envsuffix"),
        ("$MY_KEY-$OTHER", "from-env-other"),
        ("$MY_KEYsuffix", None),  # greedy name: MY_KEYsuffix is unset
        ("pa$$word", "pa$word"),
        ("$$MY_KEY", "$MY_KEY"),
        ("$!literal-bang", "!literal-bang"),
        ("cost $5", "cost $5"),  # a lone $ is literal
        ("${not closed", "${not closed"),
        ("$UNSET_KEY", None),
        ("${UNSET_KEY}", None),
        ("$EMPTY_KEY", None),
        ("$MY_KEY and $UNSET_KEY", None),
        ("", None),
    ],
)
def test_resolve_formats(value: str, expected: str | None) -> None:
    env = {"MY_KEY": "from-env", "OTHER": "other", "EMPTY_KEY": ""}
    assert resolve_key_value(value, env=env) == expected


def test_env_reference_needs_no_source() -> None:
    assert resolve_key_value("$MY_KEY", env={"MY_KEY": "k"}, source=None) == "k"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sk-literal", True),
        ("UNSET_KEY", True),  # would resolve to itself
        ("$MY_KEY", True),
        ("${MY_KEY} $OTHER", True),
        ("$MY_KEY $UNSET_KEY", False),
        ("$UNSET_KEY", False),
        ("$EMPTY_KEY", False),
        ("pa$$word", True),
        ("", False),
        ("!", False),
        ("!some-command", True),
    ],
)
def test_is_configured(value: str, expected: bool) -> None:
    env = {"MY_KEY": "k", "OTHER": "o", "EMPTY_KEY": ""}
    assert is_configured(value, env) is expected


def test_is_configured_never_runs_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    assert is_configured(f"!touch {marker}; echo key", {}) is True
    assert not marker.exists()


# --- !command ------------------------------------------------------------------------------------------


def test_command_output_is_trimmed(source: Path) -> None:
    assert resolve_key_value("!printf '  sk-cmd \\n\\n'", env={}, source=source) == "sk-cmd"


def test_command_sees_the_given_env(source: Path) -> None:
    assert resolve_key_value('!printf %s "$TOKEN_FOR_CMD"', env={"TOKEN_FOR_CMD": "t"}, source=source) == "t"


def test_command_with_empty_output_is_unresolved(source: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="providers.keyvalue"):
        assert resolve_key_value("!printf '  \\n'", env={}, source=source) is None
    assert str(source) in caplog.text


def test_failing_command_logs_status_but_not_output(source: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="providers.keyvalue"):
        assert resolve_key_value("!echo sk-leaked; exit 3", env={}, source=source) is None
    assert str(source) in caplog.text
    assert "status 3" in caplog.text
    assert "sk-leaked" not in caplog.text


def test_failure_is_not_cached(source: Path, tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    value = f"!test -e {flag} && echo sk-now"
    assert resolve_key_value(value, env={}, source=source) is None
    flag.touch()
    assert resolve_key_value(value, env={}, source=source) == "sk-now"


def test_command_timeout_kills_the_whole_pipeline(
    source: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(keyvalue, "_COMMAND_TIMEOUT", 0.3)
    with caplog.at_level(logging.WARNING, logger="providers.keyvalue"):
        # `sleep` is a grandchild here (not the shell's last command): only a process-group kill ends it.
        assert resolve_key_value("!sleep 97.531; echo late", env={}, source=source) is None
    assert "timed out" in caplog.text
    deadline = time.monotonic() + 10
    while _running("sleep 97.531"):
        assert time.monotonic() < deadline, "the command's child outlived the timeout"
        time.sleep(0.05)


def _running(cmdline: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().replace(b"\0", b" ").strip() == cmdline.encode():
                    return True
        except OSError:
            continue
    return False


def test_command_result_is_cached_until_forgotten(source: Path, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    value = f"!echo run >> {counter}; echo sk-cached"
    assert resolve_key_value(value, env={}, source=source) == "sk-cached"
    assert resolve_key_value(value, env={}, source=source) == "sk-cached"
    assert counter.read_text().count("run") == 1

    forget_command(value)
    assert resolve_key_value(value, env={}, source=source) == "sk-cached"
    assert counter.read_text().count("run") == 2


def test_forget_command_ignores_other_values(source: Path, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    value = f"!echo run >> {counter}; echo sk-cached"
    assert resolve_key_value(value, env={}, source=source) == "sk-cached"
    forget_command("sk-literal")
    forget_command("$MY_KEY")
    forget_command("!never-ran")
    assert resolve_key_value(value, env={}, source=source) == "sk-cached"
    assert counter.read_text().count("run") == 1  # still cached: forgetting other values evicted nothing


# --- !command refusals -----------------------------------------------------------------------------------


def test_command_refused_without_a_source(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError, match="refusing to run"):
        resolve_key_value(f"!touch {marker}", env={}, source=None)
    assert not marker.exists()


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_command_refused_from_a_writable_file(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "models.json"
    path.write_text("{}")
    path.chmod(mode)
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError) as info:
        resolve_key_value(f"!touch {marker}", env={}, source=path)
    assert str(path) in info.value.message
    assert "chmod 600" in info.value.message
    assert not marker.exists()


def test_command_refused_from_a_file_owned_by_someone_else(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: source.stat().st_uid + 1)
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError, match="not to you"):
        resolve_key_value(f"!touch {marker}", env={}, source=source)
    assert not marker.exists()


def test_command_refused_from_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot check"):
        resolve_key_value("!echo k", env={}, source=tmp_path / "gone.json")


def test_cached_secret_not_reachable_from_an_untrusted_source(source: Path, tmp_path: Path) -> None:
    value = "!echo sk-trusted"
    assert resolve_key_value(value, env={}, source=source) == "sk-trusted"
    with pytest.raises(ConfigError):
        resolve_key_value(value, env={}, source=None)
    loose = tmp_path / "loose.json"
    loose.write_text("{}")
    loose.chmod(0o666)
    with pytest.raises(ConfigError):
        resolve_key_value(value, env={}, source=loose)


# --- async -----------------------------------------------------------------------------------------------


async def test_aresolve_runs_commands(source: Path) -> None:
    assert await aresolve_key_value("!echo sk-async", env={}, source=source) == "sk-async"


async def test_aresolve_inline_values() -> None:
    env = {"MY_KEY": "k"}
    assert await aresolve_key_value("$MY_KEY", env=env) == "k"
    assert await aresolve_key_value("MY_KEY", env=env) == "k"
    assert await aresolve_key_value("sk-literal", env=env) == "sk-literal"
    assert await aresolve_key_value("$NOPE", env=env) is None


async def test_aresolve_refuses_like_resolve() -> None:
    with pytest.raises(ConfigError):
        await aresolve_key_value("!echo k", env={}, source=None)
