"""Run by tests under torchrun (or plain python for the 1-process reference): trains the deterministic toy model."""
import sys

import torch

from mask3d_vit.engine import distributed as D
from mask3d_vit.engine.optim import OptimConfig
from mask3d_vit.engine.trainer import TrainConfig, Trainer
from toy import DetModel, ToyData


def train(run_dir: str) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    trainer = Trainer(DetModel(), ToyData(), train=TrainConfig(epochs=2, batch_size=4, precision="fp32",
                                                                device="cpu", log_every=1, eval_every=0),
                      optim=OptimConfig(base_lr=0.05), run_dir=run_dir, config={})
    trainer.fit()


if __name__ == "__main__":
    train(sys.argv[1])  # the trainer and its DDP wrapper are gone before the process group is destroyed
    D.cleanup()
