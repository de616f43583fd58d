"""Run by tests under torchrun (or plain python for the 1-process reference): trains the deterministic toy model.

``ddp_worker.py RUN_DIR [--sigterm-rank1]``: with the flag, rank 1 alone gets SIGTERM during its third step.
"""
import os
import signal
import sys

import torch

from mask3d_vit.engine import distributed as D
from mask3d_vit.engine.optim import OptimConfig
from mask3d_vit.engine.trainer import TrainConfig, Trainer, TrainingInterrupted
from toy import DetModel, ToyData


class SigtermOnRank1(DetModel):
    """Rank 1 sends itself SIGTERM in its third forward pass; rank 0 never sees a signal."""

    calls = 0

    def forward(self, batch):
        self.calls += 1
        if self.calls == 3 and D.get_rank() == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().forward(batch)


def train(run_dir: str, sigterm: bool) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    trainer = Trainer(SigtermOnRank1() if sigterm else DetModel(), ToyData(),
                      train=TrainConfig(epochs=2, batch_size=4, precision="fp32", device="cpu", log_every=1,
                                        eval_every=0),
                      optim=OptimConfig(base_lr=0.05), run_dir=run_dir, config={})
    try:
        trainer.fit()
    except TrainingInterrupted as stop:
        print(f"rank {D.get_rank()} stopped at step {stop.step}", flush=True)


if __name__ == "__main__":
    train(sys.argv[1], "--sigterm-rank1" in sys.argv)  # the trainer and its DDP wrapper are gone before cleanup
    D.cleanup()
