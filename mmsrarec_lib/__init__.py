"""MMSRARec: multimodal-LLM sequential recommendation as a batch pipeline over Delta tables.

The public API is small; the stages live in private-ish subpackages used by the jobs in ``jobs/``.
"""

from mmsrarec_lib.storage import Warehouse, resolve_warehouse_uri, storage_options_from_env

__all__ = ["Warehouse", "resolve_warehouse_uri", "storage_options_from_env", "__version__"]
__version__ = "0.1.0"
