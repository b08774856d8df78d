"""Data sets: MNIST's IDX files, found locally or downloaded and verified."""
