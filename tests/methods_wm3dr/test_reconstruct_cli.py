"""``b3f reconstruct`` with a multi-face method writes one mesh per face of the photo."""

from __future__ import annotations

import argparse
import json

import numpy as np
from PIL import Image

from b3f_methods.wm3dr import WM3DR
from benchmark3dface.cli.reconstruct import run_multiface

from .conftest import SMALL
from .test_wm3dr import _inject


def test_reconstruct_writes_one_mesh_per_face(multiface_batch, monkeypatch, tmp_path, capsys):
    model = WM3DR(**SMALL)
    _inject(model, multiface_batch, monkeypatch)
    heat, pmap = model.net.forward(None)
    heat[1:] = -9.0  # the maps answer for image 0 (the photo) whatever the input
    photo = tmp_path / "group.png"
    Image.fromarray((multiface_batch.image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(photo)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(blank)
    monkeypatch.setattr(model.net, "forward", lambda image: (heat[:1], pmap[:1]))
    args = argparse.Namespace(photos=[photo], out=tmp_path / "out", method="wm3dr", ckpt=None, device="cpu")
    assert run_multiface(args, model) == 0
    n = multiface_batch.centers[0].shape[0]
    assert sorted(p.name for p in (tmp_path / "out").glob("group_face*.obj")) == [f"group_face{k}.obj" for k in range(n)]
    info = json.loads((tmp_path / "out" / "group.json").read_text())
    assert len(info["faces"]) == n and (tmp_path / "out" / "group_lm.png").is_file()
    # a photo without a face: reported and counted, no mesh, not a failure
    monkeypatch.setattr(model.net, "forward", lambda image: (heat[1:2], pmap[1:2]))
    args.photos = [blank]
    assert run_multiface(args, model) == 0
    assert "1 reconstructed (1 without a face), 0 failed" in capsys.readouterr().out
    assert not list((tmp_path / "out").glob("blank_face*.obj"))
