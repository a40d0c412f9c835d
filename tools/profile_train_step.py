"""Where a training step's CPU time goes: water (benchmarks/bench_train.py's input), batch 1.

    python tools/profile_train_step.py --precision float32 --steps 20

After ``--warmup`` steps it runs ``--steps`` steps twice:
1. CPU seconds per step (``time.process_time``: all threads of the process), and per C++ operator
   called from Python (``_run_custom_op`` timed the same way; their backward nodes run inside
   Paddle's autograd and are in the table of 2);
2. with ``--phases``: wall time per phase of the fused step (``train/fused_step.py``'s ``PHASES``)
   and of the optimizer update, per step, with the process's threads (so the table shows what
   runs on one core while the others wait);
3. under ``paddle.profiler`` (CPU): per Paddle operator and autograd node, calls per step and host
   time per step. Host time is wall time of the calling thread, so on a loaded machine it grows
   with the load; the CPU seconds of 1 do not (much). Operators called inside autograd nodes may
   be counted in both (``matmul`` inside ``MatmulGradNode`` when a graph is built).

Compare two checkouts by running this from each; compare precisions with ``--precision``.
"""
import argparse
import collections
import contextlib
import io
import os
import re
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]


def _steps(trainer, first: int, n: int, after=None) -> int:
    for s in range(first, first + n):
        lr, _, loss, _ = trainer.forward_step(s)
        trainer.update(loss, lr)
        if after:
            after()
    return first + n


def _phase_table(trainer, first: int, n: int) -> int:
    """Wall ms per step of each phase of the fused step and of the update; returns the next step."""
    from deepmd_paddle.train import fused_step

    fused_step.PHASES = {}
    wall = upd = 0.0
    try:
        for s in range(first, first + n):
            t0 = time.perf_counter()
            lr, _, loss, _ = trainer.forward_step(s)
            t1 = time.perf_counter()
            trainer.update(loss, lr)
            t2 = time.perf_counter()
            wall, upd = wall + t2 - t0, upd + t2 - t1
        phases = dict(fused_step.PHASES)
    finally:
        fused_step.PHASES = None
    print(f"wall ms per step {wall / n * 1e3:.1f} (phases of the fused step, then the update):")
    for name, v in list(phases.items()) + [("optimizer update", upd)]:
        print(f"  {name:44s} {v / n * 1e3:8.2f}")
    print(f"  {'rest (batch, Python between phases)':44s} {(wall - upd - sum(phases.values())) / n * 1e3:8.2f}")
    return first + n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precision", default="float32", help="float64, float32 or mixed-bfloat16 (bench_train.py's)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--top", type=int, default=30, help="rows of the operator table")
    ap.add_argument("--phases", action="store_true", help="also time the fused step's phases (wall)")
    args = ap.parse_args()

    from deepmd_paddle import config  # (first: it sets the OpenMP runtimes' settings before Paddle loads)
    from deepmd_paddle.train.trainer import Trainer

    import paddle.profiler as pp
    from paddle import _C_ops

    from bench_train import water_input

    n = args.warmup + (3 if args.phases else 2) * args.steps
    trainer = Trainer(config.normalize(water_input(n + 5, precision=args.precision)), tempfile.mkdtemp())
    step = _steps(trainer, 0, args.warmup)

    run_op = _C_ops._run_custom_op
    cpu = collections.defaultdict(float)

    def timed(name, *a):
        t = time.process_time()
        out = run_op(name, *a)
        cpu[name] += time.process_time() - t
        return out

    _C_ops._run_custom_op = timed
    t0 = time.process_time()
    try:
        step = _steps(trainer, step, args.steps)
    finally:
        _C_ops._run_custom_op = run_op
    total = (time.process_time() - t0) / args.steps
    ops = sum(cpu.values()) / args.steps
    print(f"{args.precision}: training step (fused: {trainer.fused}) CPU s/step {total:.4f}; "
          f"C++ operators called from Python {ops:.4f}; the rest (Paddle, Python) {total - ops:.4f}")
    for name, v in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {name:36s} {v / args.steps * 1e3:8.2f} ms CPU/step")

    if args.phases:
        step = _phase_table(trainer, step, args.steps)

    prof = pp.Profiler(targets=[pp.ProfilerTarget.CPU], on_trace_ready=lambda _: None)  # (no trace file)
    prof.start()
    _steps(trainer, step, args.steps, prof.step)
    prof.stop()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        prof.summary(op_detail=False, sorted_by=pp.SortedKeys.CPUTotal, time_unit="ms",
                     views=[pp.SummaryView.OperatorView])
    rows = []
    for line in buf.getvalue().splitlines():
        m = re.match(r"^(.+?)\s{2,}(\d+)\s+([\d.]+) / ", line)
        if m and "Thread" not in line:
            rows.append((m.group(1).strip(), int(m.group(2)), float(m.group(3))))
    print(f"Paddle operators and autograd nodes (profiler host time; all: "
          f"{sum(r[2] for r in rows) / args.steps:.2f} ms/step)")
    for name, calls, ms in rows[:args.top]:
        print(f"  {name[:62]:62s} {calls / args.steps:6.1f} calls/step {ms / args.steps:8.2f} ms/step")


if __name__ == "__main__":
    main()
