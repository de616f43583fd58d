"""Run by tests/test_multinode.py under torchrun: ``mask3d-vit pretrain ARGS...``, each rank also writing the packed
store items it reads, in order, to ``<--out>/reads_rank<RANK>.txt``."""
import os
import sys

from mask3d_vit.cli import main
from mask3d_vit.data.packed import PackedDataset

if __name__ == "__main__":
    out = sys.argv[sys.argv.index("--out") + 1]
    log = open(os.path.join(out, f"reads_rank{os.environ['RANK']}.txt"), "a")
    read = PackedDataset.__getitem__

    def logged(self, index):
        log.write(f"{self.indices[index]}\n")
        log.flush()
        return read(self, index)
    PackedDataset.__getitem__ = logged
    sys.exit(main(sys.argv[1:]))
