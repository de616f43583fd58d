"""A toy dataset and models for engine tests (importable by subprocess workers too)."""
import torch
from torch import nn


class ToyData(torch.utils.data.Dataset):
    """Random frames whose augmentation (a random flip) uses the global RNG, like real transforms do."""

    def __init__(self, n=24, nan_ids=()):
        self.n, self.nan_ids = n, set(nan_ids)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(8, generator=g)
        if torch.rand(()) < 0.5:
            x = x.flip(0)
        target = torch.tensor(float("nan") if i in self.nan_ids else x.sum().item())
        return {"x": x, "target": target, "frame_id": f"toy-{i}"}


class ToyModel(nn.Module):
    """Computes its own loss; random masking and dropout exercise the RNG state a resume must restore."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Dropout(0.1), nn.Linear(16, 1))
        self.pos_embed = nn.Parameter(torch.zeros(8))

    def no_weight_decay(self):
        return {"pos_embed"}

    def forward(self, batch):
        keep = (torch.rand_like(batch["x"]) > 0.25).float()
        pred = self.net(batch["x"] * keep + self.pos_embed).squeeze(-1)
        loss = (pred - batch["target"]).pow(2).mean()
        return {"loss": loss, "loss_mse": loss.detach()}


class DetModel(ToyModel):
    """No randomness in the forward pass: runs that see the same batches must end with the same weights."""

    def forward(self, batch):
        linear1, norm, _, linear2 = self.net  # skip dropout; every parameter still gets a gradient (DDP)
        pred = linear2(norm(linear1(batch["x"] + self.pos_embed))).squeeze(-1)
        loss = (pred - batch["target"]).pow(2).mean()
        return {"loss": loss}
