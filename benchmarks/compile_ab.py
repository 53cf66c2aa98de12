"""Each family's training step, eager against torch.compile, taking turns in one process.

    SEQMNIST_DATA_DIR=../shared/data/mnist python benchmarks/compile_ab.py \
        --cells lru,mingru --view rows --precision auto --rounds 7 --steps 20

The measurement behind ``--compile auto`` (training/compilation.py), which
compiles only where this found a long run faster. Both steps share one model
and one optimizer (the compiled module is the same parameters), so they see
the same weights and the same machine load; each round times ``--steps``
steps of each, and the figure is the median over rounds of ms per step. The
compiled step is training's own (``TrainStep(..., compiled=True)``). The first compiled step, which
compiles forward and backward, is timed apart (torch's compile cache in
/tmp makes a second run's much shorter). Writes one JSON line per family.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from seqmnist.bench.cells import model_for
from seqmnist.config import TrainConfig
from seqmnist.data import load_dataset
from seqmnist.runs import ModelInfo, build_model
from seqmnist.runtime import Runtime, cpu_flags, process_settings_for_command
from seqmnist.training.optim import build_optimizer
from seqmnist.training.step import TrainStep


def per_step_ms(step, images, labels, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step(images, labels)
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="lru,mingru,minlstm,cornn,lem,indrnn")
    parser.add_argument("--view", default="rows", choices=("rows", "pixels"))
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps of each per round")
    args = parser.parse_args()

    splits = load_dataset("mnist", download=False)
    info = ModelInfo(splits.image_shape, tuple(splits.class_names))
    images = torch.from_numpy(splits.train_images[:128])
    labels = torch.from_numpy(splits.train_labels[:128]).long()
    for cell in args.cells.split(","):
        torch.manual_seed(0)
        config = TrainConfig(batch_size=128, precision=args.precision)
        runtime = Runtime.for_training(config)
        model = build_model(dataclasses.replace(model_for(cell), view=args.view), info)
        optimizer = build_optimizer(model, config, runtime.device)
        eager = TrainStep(model, optimizer, None, config, runtime)
        compiled = TrainStep(model, optimizer, None, config, runtime, compiled=True)
        first = per_step_ms(compiled, images, labels, 1) / 1e3
        if not compiled.forward.is_compiled:  # it fell back to eager: nothing to compare
            raise SystemExit(f"compile_ab.py: {cell} did not compile ({compiled.forward.failure})")
        for _ in range(3):  # warm-up of both
            eager(images, labels)
            compiled(images, labels)
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(args.rounds):
            for name, step in (("eager", eager), ("compiled", compiled)):
                times[name].append(per_step_ms(step, images, labels, args.steps))
        eager_ms, compiled_ms = (statistics.median(times[k]) for k in ("eager", "compiled"))
        print(
            json.dumps(
                {
                    "cell": cell,
                    "view": args.view,
                    "precision": runtime.precision,
                    "eager_ms": round(eager_ms, 2),
                    "compiled_ms": round(compiled_ms, 2),
                    "compiled_over_eager": round(compiled_ms / eager_ms, 3),
                    "first_compiled_step_s": round(first, 1),
                    "rounds": times,
                    "threads": runtime.threads,
                    "cpu_flags": cpu_flags(),
                    "torch": torch.__version__,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    with process_settings_for_command():
        main()
