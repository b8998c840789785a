"""`unet data fetch` against a real HTTP server on 127.0.0.1 (http.server in a thread).

The catalogue is injected with --catalog; the cache and the output folder are temporary.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from http_support import FileServer as Server

from unet_core.fetch.catalog import BUILTIN, load_catalog

PAYLOAD = b"real bytes of a small dataset\n" * 1000


@pytest.fixture
def server(http_server: Server) -> Server:
    """The shared 127.0.0.1 server (tests/conftest.py) with one small file."""
    (http_server.folder / "volumes.zip").write_bytes(PAYLOAD)
    return http_server


def catalog(tmp_path: Path, url: str, sha256: str | None, name: str = "tiny") -> Path:
    path = tmp_path / "catalog.yml"
    entry = {"url": url, "sha256": sha256, "file": "volumes.zip", "licence": "CC0"}
    path.write_text(yaml.safe_dump({"datasets": {name: entry}}))
    return path


def unet(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unet_core.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def one_paragraph(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    text = stderr.strip()
    assert text.startswith("Error:") and "\n\n" not in text, stderr
    return " ".join(text.split())


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_fetch_verifies_copies_and_then_needs_no_network(server: Server, tmp_path: Path) -> None:
    cat = catalog(tmp_path, f"{server.url}/volumes.zip", SHA)
    cache, out = tmp_path / "cache", tmp_path / "out"
    first = unet("data", "fetch", "tiny", "--catalog", cat, "--cache", cache, "-o", out)
    assert first.returncode == 0, first.stderr
    assert "downloaded" in first.stdout
    assert (cache / "tiny" / "volumes.zip").read_bytes() == PAYLOAD
    assert (out / "volumes.zip").read_bytes() == PAYLOAD
    assert files_under(out) == ["volumes.zip"] and server.requests == 1

    server.stop()  # no network from here on
    again = unet("data", "fetch", "tiny", "--catalog", cat, "--cache", cache, "-o", out)
    assert again.returncode == 0, again.stderr
    assert "already in the cache" in again.stdout and "identical copy" in again.stdout
    assert server.requests == 1


def test_wrong_checksum_is_refused_and_nothing_is_kept(server: Server, tmp_path: Path) -> None:
    wrong = hashlib.sha256(b"what the catalogue expects").hexdigest()
    cat = catalog(tmp_path, f"{server.url}/volumes.zip", wrong)
    cache, out = tmp_path / "cache", tmp_path / "out"
    result = unet("data", "fetch", "tiny", "--catalog", cat, "--cache", cache, "-o", out)
    assert result.returncode == 1
    message = one_paragraph(result.stderr)
    assert "does not have the sha256" in message and wrong in message
    assert "Nothing was kept in the cache" in message
    assert server.requests == 1
    assert not cache.exists() or files_under(cache) == []
    assert not out.exists()


def test_server_down_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cat = catalog(tmp_path, f"http://127.0.0.1:{port}/volumes.zip", SHA)
    cache = tmp_path / "cache"
    result = unet("data", "fetch", "tiny", "--catalog", cat, "--cache", cache)
    assert result.returncode == 1
    message = one_paragraph(result.stderr)
    assert "Could not download tiny" in message and "could not be reached" in message
    assert not cache.exists() or files_under(cache) == []


def test_unknown_checksum_needs_trust(server: Server, tmp_path: Path) -> None:
    cat = catalog(tmp_path, f"{server.url}/volumes.zip", None)
    cache = tmp_path / "cache"
    refused = unet("data", "fetch", "tiny", "--catalog", cat, "--cache", cache)
    assert refused.returncode == 1
    assert "--trust-unverified" in one_paragraph(refused.stderr)
    assert server.requests == 0 and not cache.exists()

    trusted = unet(
        "data", "fetch", "tiny", "--catalog", cat, "--cache", cache, "--trust-unverified"
    )
    assert trusted.returncode == 0, trusted.stderr
    assert f"(unverified): {SHA}" in trusted.stdout
    assert (cache / "tiny" / "volumes.zip").read_bytes() == PAYLOAD


def test_output_never_replaces_a_different_file(server: Server, tmp_path: Path) -> None:
    cat = catalog(tmp_path, f"{server.url}/volumes.zip", SHA)
    out = tmp_path / "out"
    out.mkdir()
    theirs = out / "volumes.zip"
    theirs.write_bytes(b"the user's own file")
    before = (theirs.read_bytes(), theirs.stat().st_mtime_ns, theirs.stat().st_ino)
    result = unet("data", "fetch", "tiny", "--catalog", cat, "--cache", tmp_path / "c", "-o", out)
    assert result.returncode == 1
    assert "already exists and is not this dataset" in one_paragraph(result.stderr)
    after = (theirs.read_bytes(), theirs.stat().st_mtime_ns, theirs.stat().st_ino)
    assert after == before and files_under(out) == ["volumes.zip"]


def test_missing_pooch_says_how_to_install(server: Server, tmp_path: Path) -> None:
    blocker = tmp_path / "blocked" / "pooch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pooch is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker.parent)}
    cat = catalog(tmp_path, f"{server.url}/volumes.zip", SHA)
    result = unet("data", "fetch", "tiny", "--catalog", cat, "--cache", tmp_path / "c", env=env)
    assert result.returncode == 1
    assert "pip install 'unet-core[data]'" in one_paragraph(result.stderr)
    assert server.requests == 0


def test_list_and_unknown_names(tmp_path: Path) -> None:
    listing = unet("data", "fetch", "--list")
    assert listing.returncode == 0, listing.stderr
    for entry in BUILTIN:
        assert entry.name in listing.stdout and entry.url in listing.stdout
    assert "sha256 UNKNOWN" in listing.stdout and "sha256 checked" in listing.stdout
    typo = unet("data", "fetch", "ovule-train", "--cache", tmp_path / "c")
    assert typo.returncode == 2
    assert "Did you mean ovules-train?" in one_paragraph(typo.stderr)
    assert not (tmp_path / "c").exists()


def test_builtin_catalogue_is_well_formed(tmp_path: Path) -> None:
    names = [entry.name for entry in BUILTIN]
    assert len(names) == len(set(names))
    for entry in BUILTIN:
        assert entry.url.startswith("https://") and entry.licence and entry.page
        assert entry.sha256 is None or len(entry.sha256) == 64
        assert entry.sha256 is not None or "unknown" in entry.hash_source
    bad = tmp_path / "bad.yml"
    bad.write_text("datasets:\n  x: {url: 'http://h/f', sha256: nothex, colour: red}\n")
    with pytest.raises(Exception, match="unknown key.*colour"):
        load_catalog(bad)
