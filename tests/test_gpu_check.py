"""GPU-only scripts (make gpu-check, benchmarks/nf4_devices.py) without a GPU: they say what to do and run nothing.

The GPU runs cannot happen here (these machines have no GPU); this checks only that each script starts,
finds no GPU, and exits with status 2 and the series' "how to get a GPU" message.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: run `make gpu-check` itself")
def test_gpu_check_without_a_gpu_says_how_to_get_one(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "make gpu-check needs a CUDA GPU" in done.stderr and "T4 GPU" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: run benchmarks/nf4_devices.py itself")
def test_nf4_devices_without_a_gpu_says_how_to_get_one():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nf4_devices.py")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "nf4_devices.py --device cuda needs a CUDA GPU" in done.stderr and done.stdout == ""
