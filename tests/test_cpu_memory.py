"""glibc keeping freed memory (utils/cpu_memory.py): what it does, and that only the scripts turn it on."""
import ctypes
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

_ALLOCATOR = """
import ctypes, json, sys, torch
from utils.cpu_memory import keep_freed_memory
import os

class Mallinfo2(ctypes.Structure):  # <malloc.h>
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2

def state():  # bytes: heap taken from the system, mmap-ed blocks, heap in use, heap free
    info = libc.mallinfo2()
    return {"heap": info.arena, "mmap": info.hblkhd, "used": info.uordblks, "free": info.fordblks}

if sys.argv[1] == "keep":
    assert keep_freed_memory()
elif sys.argv[1] == "dehazer":  # a Dehazer on the CPU, used once, must leave the allocator as it was
    import numpy as np
    from inference import Dehazer
    from models import build_model
    Dehazer(build_model("mixdehazenet-t"), device="cpu")(np.zeros((48, 48, 3), np.uint8))
states = [state()]
block = torch.ones(2**24)  # 64 MiB: above glibc's largest mmap threshold (32 MiB), so mmap-ed by default
states.append(state())
del block
states.append(state())
block = torch.ones(3 * 2**22)  # 48 MiB
states.append(state())
print(json.dumps({"states": states}))
"""


def _glibc_has_mallinfo2() -> bool:
    return platform.libc_ver()[0] == "glibc" and hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc_has_mallinfo2(),
                    reason="mallopt and mallinfo2 are glibc's (Linux, glibc >= 2.33)")
def test_kept_freed_memory_stays_in_the_heap_for_reuse():
    root = Path(__file__).resolve().parents[1]
    runs = {mode: json.loads(subprocess.run([sys.executable, "-c", _ALLOCATOR, mode], cwd=root, capture_output=True,
                                            text=True, check=True).stdout) for mode in ("default", "keep")}
    mib = 2**20
    # measured (glibc 2.36), MiB: default mmap 4 → 68 → 4 → 52 with the heap fixed at 110; keep: mmap fixed at 4,
    # heap 110 → 174 → 174 → 174, free 0 → 64 → 16
    before, held, freed, again = runs["default"]["states"]
    assert held["mmap"] - before["mmap"] >= 64 * mib  # by default a large block is mapped afresh ...
    assert freed["mmap"] == before["mmap"]             # ... and handed back to the system when freed
    assert again["mmap"] - freed["mmap"] >= 48 * mib   # and the next one is mapped again
    before, held, freed, again = runs["keep"]["states"]
    assert before["mmap"] == held["mmap"] == freed["mmap"] == again["mmap"]  # never mmap-ed
    assert held["used"] - before["used"] >= 64 * mib   # the heap serves the block ...
    assert freed["heap"] == held["heap"] and freed["free"] - held["free"] >= 64 * mib  # ... keeps it when freed ...
    assert again["heap"] == freed["heap"]              # ... and serves the next block from it (the heap does not grow)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc_has_mallinfo2(),
                    reason="mallopt and mallinfo2 are glibc's (Linux, glibc >= 2.33)")
def test_a_dehazer_leaves_the_allocator_as_it_was():
    """Keeping freed memory is the scripts' visible choice (test.py, predict.py, evaluate_real.py, train.py), never
    a side effect of constructing or using a Dehazer."""
    root = Path(__file__).resolve().parents[1]
    run = json.loads(subprocess.run([sys.executable, "-c", _ALLOCATOR, "dehazer"], cwd=root, capture_output=True,
                                    text=True, check=True).stdout)
    before, held, freed, again = run["states"]
    mib = 2**20
    assert held["mmap"] - before["mmap"] >= 64 * mib and freed["mmap"] == before["mmap"]  # glibc's default
