"""Our own modules for reranker architectures whose hub code breaks on current transformers.

They read the checkpoint's ``config.json`` and weights directly (no remote code) and run on
transformers 4.45+ and 5.x: :mod:`.minicpm_layerwise` (bge-reranker-v2-minicpm-layerwise) and
:mod:`.gemma2_lightweight` (bge-reranker-v2.5-gemma2-lightweight).
"""

from .gemma2_lightweight import LightweightGemma2Reranker
from .minicpm_layerwise import LayerwiseMiniCPMReranker

__all__ = ["LayerwiseMiniCPMReranker", "LightweightGemma2Reranker"]
