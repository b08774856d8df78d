"""fastbp-array-api: fastbp's equations on any Array API namespace, as the device ``array-api``.

Registered under the entry-point group ``fastbp.backends``; ``FASTBP_ARRAY_API`` picks the
namespace (default ``array_api_strict``).
"""

from .backend import ArrayAPIBackend, OutNamespace, load_namespace

__all__ = ["ArrayAPIBackend", "OutNamespace", "load_namespace"]
__version__ = "0.1.0"
