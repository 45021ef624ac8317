"""keep_freed_memory (darknet_py/memory.py): after it, freed blocks are reused instead of being
handed back to the kernel and faulted in again, page by page; the darknet-py command applies
it unless DARKNET_PY_KEEP_MEMORY=0. Each case runs in a fresh process: the setting is
process-wide and cannot be undone."""
import subprocess
import sys

import pytest

from darknet_py.memory import glibc_version

from conftest import ROOT

pytestmark = pytest.mark.skipif(glibc_version() is None, reason="the setting is glibc's")

FAULTS = """
import resource, sys
import torch
from darknet_py import cli, memory

def faults_of_five_64_mib_tensors():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        t = torch.empty(16 << 20)
        t.fill_(1)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

plain = faults_of_five_64_mib_tensors()
if sys.argv[1] == "api":
    assert memory.keep_freed_memory()
else:
    cli.main(["summary", sys.argv[2]])
faults_of_five_64_mib_tensors()  # the heap grows once
print(plain, faults_of_five_64_mib_tensors(), memory._applied)
"""


def run(*args, env=None):
    import os
    out = subprocess.run([sys.executable, "-c", FAULTS, *args], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, **(env or {})})
    return [eval(v) for v in out.stdout.split()[-3:]]


def test_freed_blocks_are_reused_after_keep_freed_memory():
    plain, kept, applied = run("api")
    pages = 5 * (64 << 20) // 4096
    assert plain > 0.9 * pages  # each 64 MiB block mapped afresh and faulted in: ~82,000 faults
    assert applied and kept < 0.01 * pages


def test_the_command_applies_it_unless_told_not_to():
    cfg = str(ROOT / "cfg" / "yolov3-tiny.cfg")
    assert run("cli", cfg)[2] is True
    assert run("cli", cfg, env={"DARKNET_PY_KEEP_MEMORY": "0"})[2] is False
