"""Kept for code that imports ``fastbp.network``: :class:`Network` lives in
:mod:`fastbp.model.network`, the records in :mod:`fastbp.core.records`."""

from .core.costs import CrossEntropyCost, QuadraticCost, sigmoid, sigmoid_prime
from .core.records import EpochRecord, History, format_record
from .model.inputs import stack_pairs
from .model.network import Network

__all__ = ["CrossEntropyCost", "EpochRecord", "History", "Network", "QuadraticCost",
           "format_record", "sigmoid", "sigmoid_prime", "stack_pairs"]
