"""Data: the sample-dict convention, the frames-folder layout, SynthRooms, dataset readers, transforms and the
dataset factory (build.py) every task uses."""
