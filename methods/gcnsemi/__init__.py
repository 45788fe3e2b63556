"""Gao et al. (seed paper 003): semi-supervised GCN encoder-decoder with recognition / centre loss,
pairwise shape losses and a WGAN-div GCN critic (``gcnsemi``).

- :mod:`.graph`: Chebyshev graph convolution, the COMA-style decoder and the GCN critic on the
  face model's own topology (mesh hierarchy from ``benchmark3dface.geometry.sampling``).
- :mod:`.method`: the LightningModule (manual-optimisation GAN loop, semi-supervised batches).

Configs: ``configs/{quick,paper}.yaml`` (package data), linked from experiments/quick/gcnsemi.yaml
and experiments/paper/gcnsemi.yaml. See docs/methods/gcnsemi.md.
"""

from .graph import ChebConv, GCNCritic, GCNDecoder, GraphStack, chebyshev_basis, mesh_hierarchy
from .method import DEFAULT_WEIGHTS, UNLABELLED_TERMS, Encoder, GCNSemi

__all__ = ["DEFAULT_WEIGHTS", "UNLABELLED_TERMS", "ChebConv", "Encoder", "GCNCritic", "GCNDecoder", "GCNSemi",
           "GraphStack", "chebyshev_basis", "mesh_hierarchy"]
