"""The series on a CUDA GPU: every notebook in fast mode, then notebook 08's class plan in full.

    make gpu-check                      # or: python benchmarks/gpu_check.py [--out outputs/gpu-check]

Each notebook runs top to bottom in a fresh kernel (nbclient), from a copy, so the committed notebooks are not
touched; the executed copies go to ``--out`` (commit them only with the GPU named in them, as this script
prints it). For each it prints the wall time and the kernel's peak GPU memory (``torch.cuda.max_memory_allocated``,
read by a cell appended to the copy). Exit status 1 if any notebook failed, 2 if there is no GPU.

Not run on the machines this series is developed on (they have no GPU): its numbers are not in the README yet.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEAK_CELL = ("import torch\n"
             "print('GPU_CHECK_PEAK', torch.cuda.max_memory_allocated() if torch.cuda.is_available() else -1)")


def run_notebook(path: Path, out_dir: Path, env: dict[str, str], timeout: int) -> tuple[float, int | None, str]:
    """Execute a copy of ``path`` with ``env`` set in the kernel; (seconds, peak GPU bytes, error or "")."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment of this process
    start, error = time.perf_counter(), ""
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except Exception as e:  # noqa: BLE001 (a failed notebook is reported, and the others still run)
        error = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    peak = None
    for out in nb.cells[-1].get("outputs", []):
        for line in "".join(out.get("text", "")).splitlines():
            if line.startswith("GPU_CHECK_PEAK"):
                peak = int(line.split()[1])
    nb.cells.pop()  # the measuring cell is ours, not the notebook's
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    return seconds, peak, error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu-check")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--only", nargs="*", help="notebook names to run (default: all)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        from lora_edu.runtime import gpu_message

        print(gpu_message("make gpu-check"), file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_properties(0)
    print(f"GPU: {gpu.name}, {gpu.total_memory / 2**30:.1f} GiB, compute capability {gpu.major}.{gpu.minor}; "
          f"torch {torch.__version__}")
    notebooks = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if p.name in args.only or p.stem in args.only]
    runs = [(p, "fast", {"LORA_EDU_FAST": "1"}) for p in notebooks]
    runs += [(p, "class plan, full mode", {"LORA_EDU_FAST": "0", "LORA_EDU_PLAN": "class"})
             for p in notebooks if p.name.startswith("08_")]
    failed = 0
    print(f"{'notebook':34s} {'mode':22s} {'time':>8s} {'peak GPU memory':>16s}")
    for path, mode, env in runs:
        out_dir = args.out / ("fast" if mode == "fast" else "full")
        seconds, peak, error = run_notebook(path, out_dir, env, args.timeout)
        memory = "-" if peak is None or peak < 0 else f"{peak / 2**30:.2f} GiB"
        print(f"{path.name:34s} {mode:22s} {seconds:7.0f}s {memory:>16s}  {error or 'ok'}", flush=True)
        failed += bool(error)
    print(f"{len(runs) - failed} of {len(runs)} notebook runs passed on {gpu.name}; executed copies in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
