"""The allocator setting of `unet`'s processes: freed tensor memory is reused, not faulted in
again (each case runs in a fresh interpreter: the setting is per process and one-way)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from unet_core.engine.allocator import glibc_version

pytestmark = pytest.mark.skipif(glibc_version() is None, reason="glibc only")

# Page faults of touching a fresh 64 MiB buffer after an equal one was freed: glibc serves
# blocks this large with mmap and unmaps them on free, so each one is faulted in anew (at
# least once per 2 MiB even with transparent huge pages).
AT_LEAST = 2**26 // 2**21
PROBE = """
import json, resource, sys
import numpy as np
applied = None
if sys.argv[1] == "keep":
    from unet_core.engine.allocator import keep_freed_memory
    applied = keep_freed_memory()
    again = keep_freed_memory()
    assert again == applied
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(2**23); del a
before = faults()
b = np.ones(2**23)
print(json.dumps({"applied": applied, "faults": faults() - before}))
"""


def probe(mode: str, **env: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_buffers_are_reused_without_page_faults() -> None:
    default = probe("default")
    kept = probe("keep")
    assert default["faults"] >= AT_LEAST  # the probe measures what it claims
    assert kept["applied"] is True
    assert kept["faults"] < 4


def test_the_environment_variable_turns_it_off() -> None:
    off = probe("keep", UNET_KEEP_FREED_MEMORY="0")
    assert off["applied"] is False
    assert off["faults"] >= AT_LEAST


def test_the_unet_command_applies_it() -> None:
    code = (
        "from click.testing import CliRunner; from unet_core.cli.main import cli; "
        "import unet_core.engine.allocator as a; "
        "r = CliRunner().invoke(cli, ['plugins', 'list']); assert r.exit_code == 0, r.output; "
        "print(a._applied)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True"
