"""One optimizer step, shared by the training loop and the benchmark."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqmnist.config import TrainConfig
from seqmnist.model.inputs import to_unit_float
from seqmnist.runtime import Runtime
from seqmnist.training.compilation import Forward


class TrainStep:
    """Forward, loss, backward, clip, optimizer and schedule step on one uint8 batch."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler | None,
        config: TrainConfig,
        runtime: Runtime,
        *,
        compiled: bool = False,
    ) -> None:
        self.model = model
        # The forward the steps run: through torch.compile where the run chose it
        # (training/compilation.py), eager otherwise or once compiling has failed.
        # Under torchrun a failed compile is an error: DDP's reducer cannot take a retry.
        self.forward = Forward(model, compiled, fall_back=not runtime.ranks.distributed)
        self.optimizer = optimizer
        self.schedule = schedule
        self.grad_clip = config.grad_clip
        self.runtime = runtime
        self.parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on uint8 ``images`` (B, H, W) and ``labels`` (B,); returns (loss, correct count)."""
        # Only the compiled part is attempted: a retry after a failed compile must
        # never clip, step the optimizer or the schedule twice.
        loss, logits = self.forward.attempt(
            lambda forward: self._gradients(forward, images, labels), self.runtime.device
        )
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.parameters, self.grad_clip, foreach=True)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        return loss.detach(), (logits.detach().argmax(dim=1) == labels).sum()

    def _gradients(
        self, forward, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss and logits, with the gradients of this batch alone in ``.grad``."""
        with self.runtime.autocast():
            logits = forward(to_unit_float(images))  # (B, C)
        # The loss is taken in fp32 whatever the matmul precision.
        loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return loss, logits
