"""Every zoo checkpoint committed under the repository's zoo/: its manifest is complete, its
weights match the manifest's sha256, stay within the size limit, load with
``torch.load(weights_only=True)``, and reproduce the recorded validation true error on the
manifest's small fixed sample within its tolerance. With no committed checkpoint (the case until
a GPU-trained one lands: docs/zoo.md) the parameter list is empty and pytest reports the skip;
the same code path runs on a tiny checkpoint in tests/zoo/test_zoo.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark3dface.zoo import verify_entry, zoo_entries
from benchmark3dface.zoo.entries import FORMAT, MANIFEST_FIELDS

ZOO = Path(__file__).resolve().parents[2] / "zoo"
ENTRIES = zoo_entries(ZOO)


def test_zoo_dir_holds_only_entries() -> None:
    """zoo/ holds finished checkpoints with their manifests only (never intermediate ones)."""
    if not ZOO.is_dir():
        pytest.skip("no zoo/ directory: no committed zoo checkpoint yet (docs/zoo.md)")
    names = {e.name for e in ENTRIES}
    for f in ZOO.iterdir():
        if f.name.startswith(".") or f.name == "README.md":
            continue
        assert f.suffix in (".pt", ".json") and f.stem in names, f"{f}: not a zoo entry (weights + manifest)"


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_committed_checkpoint_reproduces_its_manifest(entry) -> None:
    assert set(MANIFEST_FIELDS) <= set(entry.manifest)
    assert entry.weights_path.stat().st_size <= 25 * 2**20
    blob = torch.load(entry.weights_path, weights_only=True, map_location="cpu")
    assert blob["format"] == FORMAT and blob["method"] == entry.method
    assert verify_entry(entry) == []  # sha256, size, and the validation error within tolerance
