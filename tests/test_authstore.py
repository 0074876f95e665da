from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from providers.authstore import AuthStore
from providers.errors import ConfigError

_WORKERS = 8
_ROUNDS = 25


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in {"auth.json", "auth.json.lock"})


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "home" / "auth.json")
    assert store.read() == {}
    assert store.get("openai") is None
    assert store.mtime() is None
    assert not (tmp_path / "home").exists()  # reading creates nothing


def test_set_creates_private_dir_and_file(tmp_path: Path) -> None:
    home = tmp_path / "a" / "home"
    store = AuthStore(home / "auth.json")
    store.set("openai", {"type": "api_key", "key": "sk-1"})
    assert _mode(home) == 0o700
    assert _mode(home / "auth.json") == 0o600
    assert store.get("openai") == {"type": "api_key", "key": "sk-1"}
    assert store.mtime() is not None


def test_file_format_is_indented_json_with_newline(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.json")
    store.set("openai", {"type": "api_key", "key": "sk-1"})
    text = (tmp_path / "auth.json").read_text()
    assert text == json.dumps({"openai": {"type": "api_key", "key": "sk-1"}}, indent=2) + "\n"


def test_locked_creates_empty_private_file(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "home" / "auth.json")
    with store.locked():
        assert (tmp_path / "home" / "auth.json").read_text() == "{}\n"
    assert _mode(tmp_path / "home" / "auth.json") == 0o600
    assert _mode(tmp_path / "home") == 0o700


def test_every_write_restores_0600(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text("{}")
    path.chmod(0o644)
    store = AuthStore(path)
    store.set("openai", {"type": "api_key", "key": "sk-1"})
    assert _mode(path) == 0o600
    path.chmod(0o644)
    assert store.remove("openai") is True
    assert _mode(path) == 0o600
    path.chmod(0o644)
    store.update(lambda data: {**data, "x": {}})
    assert _mode(path) == 0o600


def test_existing_directory_mode_is_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    AuthStore(tmp_path / "auth.json").set("openai", {"key": "k"})
    assert _mode(tmp_path) == 0o755


def test_unknown_entries_and_fields_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    original: dict[str, Any] = {
        "future-provider": {"type": "something-new", "blob": [1, 2, {"x": None}]},
        "anthropic": {"type": "oauth", "access": "a", "refresh": "r", "expires": 1, "extra": {"k": "v"}},
    }
    path.write_text(json.dumps(original))
    store = AuthStore(path)
    store.set("openai", {"type": "api_key", "key": "sk-1", "env": {"OPENAI_ORG": "o"}})
    assert store.remove("nobody") is False
    data = store.read()
    assert data == {**original, "openai": {"type": "api_key", "key": "sk-1", "env": {"OPENAI_ORG": "o"}}}
    assert store.remove("openai") is True
    assert store.read() == original


def test_remove_of_missing_entry_does_not_write(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text('{"a": {}}')  # not our formatting: a write would change it
    assert AuthStore(path).remove("b") is False
    assert path.read_text() == '{"a": {}}'


def test_update_returns_new_contents_and_accepts_mutation(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.json")
    store.set("a", {"n": 1})

    def bump(data: dict[str, Any]) -> dict[str, Any]:
        data["a"]["n"] += 1
        return data

    assert store.update(bump) == {"a": {"n": 2}}
    assert store.get("a") == {"n": 2}


@pytest.mark.parametrize("content", ["{not json", "", '{"a": 1,}'])
def test_invalid_json_names_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "auth.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        AuthStore(path).read()
    assert str(path) in info.value.message
    assert "not valid JSON" in info.value.message


@pytest.mark.parametrize(("content", "found"), [("[]", "an array"), ('"sk-1"', "a string"), ("null", "null")])
def test_non_object_top_level(tmp_path: Path, content: str, found: str) -> None:
    path = tmp_path / "auth.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        AuthStore(path).read()
    assert str(path) in info.value.message
    assert "JSON object" in info.value.message
    assert found in info.value.message


def test_invalid_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text('{"secret": "sk-keep"')
    with pytest.raises(ConfigError) as info:
        AuthStore(path).set("openai", {"key": "k"})
    assert "sk-keep" not in info.value.message
    assert path.read_text() == '{"secret": "sk-keep"'


def test_non_object_entry(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text('{"openai": "sk-1"}')
    with pytest.raises(ConfigError, match="'openai' must be a JSON object"):
        AuthStore(path).get("openai")


def test_atomic_replace_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text("{}")
    with path.open() as original:  # held open so the filesystem cannot hand its inode to a new file
        inode = os.fstat(original.fileno()).st_ino
        store = AuthStore(path)
        for i in range(5):
            store.set(f"p{i}", {"key": str(i)})
        assert path.stat().st_ino != inode  # replaced, not rewritten in place
        assert original.read() == "{}"  # a reader holding the old file saw no partial write
    assert _leftovers(tmp_path) == []


def test_unserializable_entry_leaves_file_alone(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.json")
    store.set("a", {"key": "1"})
    with pytest.raises(TypeError):
        store.set("b", {"key": object()})
    assert store.read() == {"a": {"key": "1"}}
    assert _leftovers(tmp_path) == []


def test_failed_replace_keeps_old_file_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AuthStore(tmp_path / "auth.json")
    store.set("a", {"key": "1"})

    def fail(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk on fire"):
        store.set("b", {"key": "2"})
    monkeypatch.undo()
    assert store.read() == {"a": {"key": "1"}}
    assert _leftovers(tmp_path) == []


def test_locked_is_reentrant_with_update(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.json")
    with store.locked():
        assert store.read() == {}
        store.update(lambda data: {**data, "a": {"n": 1}})
        with AuthStore(tmp_path / "auth.json").locked():  # another store for the same file
            store.set("b", {"n": 2})
    assert store.read() == {"a": {"n": 1}, "b": {"n": 2}}


def test_locked_excludes_other_threads(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.json")
    entered = threading.Event()
    with store.locked():

        def contend() -> None:
            store.set("t", {})
            entered.set()

        thread = threading.Thread(target=contend)
        thread.start()
        assert not entered.wait(0.3)
        store.set("main", {})
    thread.join(5)
    assert entered.is_set()
    assert set(store.read()) == {"main", "t"}


def test_lock_timeout_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("providers.authstore._LOCK_TIMEOUT", 0.2)
    store = AuthStore(tmp_path / "auth.json")
    errors: list[ConfigError] = []

    def contend() -> None:
        try:
            store.set("t", {})
        except ConfigError as exc:
            errors.append(exc)

    with store.locked():
        thread = threading.Thread(target=contend)
        thread.start()
        thread.join(5)
    assert len(errors) == 1
    assert str(tmp_path / "auth.json") in errors[0].message
    assert "t" not in store.read()


def _worker(path: str, worker: int) -> None:
    store = AuthStore(Path(path))
    for i in range(_ROUNDS):
        store.set(f"w{worker}-{i}", {"type": "api_key", "key": f"k{worker}-{i}"})
        store.update(lambda data: {**data, "counter": {"n": data.get("counter", {"n": 0})["n"] + 1}})


def test_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "home" / "auth.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(path), w)) for w in range(_WORKERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0] * _WORKERS

    data = json.loads(path.read_text())
    assert data["counter"] == {"n": _WORKERS * _ROUNDS}
    entries = {k: v for k, v in data.items() if k != "counter"}
    assert len(entries) == _WORKERS * _ROUNDS
    assert entries["w3-7"] == {"type": "api_key", "key": "k3-7"}
    assert _mode(path) == 0o600
    assert _leftovers(path.parent) == []
