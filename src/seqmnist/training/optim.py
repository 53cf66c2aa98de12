"""Optimizer and learning-rate schedule factories."""

from __future__ import annotations

import torch
from torch import nn

from seqmnist.config import TrainConfig


def build_optimizer(
    model: nn.Module, config: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    # Fused kernels update every parameter in one call instead of a few per tensor.
    fused = device.type in ("cpu", "cuda")
    parameters = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum,
            weight_decay=config.weight_decay, fused=fused,
        )  # fmt: skip
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            parameters, lr=config.lr, weight_decay=config.weight_decay, fused=fused
        )
    return torch.optim.Adam(parameters, lr=config.lr, fused=fused)


def build_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per optimizer step; ``none`` keeps the learning rate fixed."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "onecycle":
        if total_steps < 4:
            return None  # too short to warm up and anneal: a flat learning rate
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.lr,
            total_steps=total_steps,
            # OneCycleLR divides by zero unless the warm-up spans at least two steps.
            pct_start=max(config.warmup_fraction, 2 / total_steps),
            # Adam's beta1 cycling fights the warm-up; SGD keeps its momentum cycle.
            cycle_momentum=config.optimizer == "sgd",
        )
    if config.schedule == "step":
        # The papers' recipe (coRNN, LEM: lr / 10 after 100 of 120 epochs) as a share of the
        # budget, like every schedule here: a shorter budget is the same recipe compressed.
        milestone = max(1, round(config.decay_at * total_steps))
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[milestone], gamma=config.decay_factor
        )
    return None
