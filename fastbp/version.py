"""The version of fastbp."""

__version__ = "0.1.0"
