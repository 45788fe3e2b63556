"""WM3DR training: the losses fall and the heatmap learns the face centres in a short CPU run;
stage 2 starts from a stage-1 checkpoint; a Lightning checkpoint round-trips."""

from __future__ import annotations

import torch

from b3f_methods.wm3dr import WM3DR, WM3DRStage1, cell_of, find_peaks
from benchmark3dface.data.collate import collate_samples

from .conftest import SMALL, multiface_samples


def test_loss_falls_and_heatmap_learns_centres(tiny_fm):
    torch.manual_seed(0)
    batch = collate_samples(multiface_samples(tiny_fm, 4, 96, 1, 3, seed=3))
    model = WM3DR(lr=2e-3, photo_images=1, init_face_px=60, landmark_high_weight=1.0, **SMALL)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    first = None
    for step in range(60):
        total, terms, _ = model.compute_loss(batch)
        if first is None:
            first = {k: float(v.detach()) for k, v in terms.items()} | {"total": float(total.detach())}
        opt.zero_grad()
        total.backward()
        opt.step()
    assert set(first) == {"center", "photo", "landmark", "reg", "tex_var", "total"}
    model.eval()
    with torch.no_grad():
        total, terms, _ = model.compute_loss(batch)
        heat = torch.sigmoid(model.net(batch.image)[0])
    assert float(total) < 0.3 * first["total"]
    assert float(terms["center"]) < 0.3 * first["center"]
    assert float(terms["landmark"]) < 0.3 * first["landmark"]
    # every GT centre cell is a decoded peak, and nothing else is
    for i, peaks in enumerate(find_peaks(heat, threshold=0.5)):
        gt = {tuple(c) for c in cell_of(batch.centers[i], 8, *heat.shape[-2:]).tolist()}
        assert {tuple(c) for c in peaks.cells.tolist()} == gt


def test_stage2_starts_from_the_stage1_checkpoint_and_checkpoints_round_trip(tmp_path, single_batch):
    import lightning as L
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    stage1 = WM3DRStage1(image_size=64, lr=1e-3, photo_images=1, **SMALL)
    loader = DataLoader([single_batch], batch_size=None, collate_fn=lambda b: b)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(stage1, loader)
    ckpt = tmp_path / "stage1.ckpt"
    trainer.save_checkpoint(ckpt)
    back = WM3DRStage1.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    img = single_batch.image
    stage1.eval()
    back.eval()
    with torch.no_grad():
        a, b = stage1.net(img), back.net(img)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    ra, rb = stage1.reconstruct(single_batch), back.reconstruct(single_batch)
    assert torch.equal(ra[0].face.vertices, rb[0].face.vertices)
    # stage 2 takes the stage-1 weights (MethodSpec.checkpoint_args -> stage1_checkpoint)
    assert WM3DR.spec.checkpoint_args == {"stage1_checkpoint": "wm3dr_stage1"}
    stage2 = WM3DR(stage1_checkpoint=str(ckpt), **SMALL)
    for (name, p), q in zip(stage1.net.state_dict().items(), stage2.net.state_dict().values()):
        assert torch.equal(p, q), name
    import pytest

    with pytest.raises(ValueError, match="width"):
        WM3DR(stage1_checkpoint=str(ckpt), backbone="resnet18", width=32, facemodel="tiny")
