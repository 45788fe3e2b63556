"""gcnsemi (Gao et al.): Chebyshev convolution vs the dense recursion, the GCN critic, the
manual-optimisation GAN loop's exact resume, set reconstruction with the averaged code."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from benchmark3dface.data.collate import collate_samples
from benchmark3dface.data.synthetic.dataset import SyntheticFaceDataset
from benchmark3dface.geometry.sampling import adjacency, build_hierarchy, scaled_laplacian, sparse_matrix
from benchmark3dface.losses import wgan_div_critic_loss
from b3f_methods.gcnsemi import ChebConv, GCNCritic, GCNSemi, GraphStack

from .conftest import EASY, SIZE

TINY = dict(facemodel="tiny", backbone="resnet10t", image_size=SIZE, id_dim=16, exp_dim=8, factors=(4, 4),
            decoder_widths=(8, 8, 4), critic_widths=(4, 4), cheb_k=3, num_identities=50, lr=1e-3, critic_lr=1e-3,
            image_terms_subset=2)


def sphere(resolution: int = 8):
    import open3d as o3d

    m = o3d.geometry.TriangleMesh.create_sphere(radius=50.0, resolution=resolution)
    return np.asarray(m.vertices), np.asarray(m.triangles)


def test_chebconv_equals_dense_recursion_and_spectral_form():
    v, t = sphere(6)
    a = adjacency(t, len(v)).toarray().astype(np.float64)
    deg = a.sum(1)
    lt = -a / np.sqrt(np.outer(deg, deg))  # 2 L / 2 - I with L = I - D^-1/2 A D^-1/2
    k = 6
    tk = [np.eye(len(v)), lt]  # dense Chebyshev matrices T_k(L~)
    for _ in range(2, k):
        tk.append(2 * lt @ tk[-1] - tk[-2])
    ev, u = np.linalg.eigh(lt)  # T_k(L~) = U cos(k arccos(lambda)) U^T: an independent form
    for j in (2, 5):
        np.testing.assert_allclose(tk[j], (u * np.cos(j * np.arccos(ev.clip(-1, 1)))) @ u.T, atol=1e-9)
    torch.manual_seed(0)
    conv = ChebConv(4, 3, k).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, len(v), 4, dtype=torch.float64)
    want = sum(torch.from_numpy(tk[j]) @ x @ conv.weight[j] for j in range(k)) + conv.bias
    lap = sparse_matrix(scaled_laplacian(sp.csr_matrix(a))).double()
    np.testing.assert_allclose(conv.forward_bnf(x, lap).detach().numpy(), want.detach().numpy(), atol=1e-5)
    # K = 1 is a per-vertex linear map
    c1 = ChebConv(4, 3, 1).double()
    np.testing.assert_allclose(c1.forward_bnf(x, lap).detach().numpy(), (x @ c1.weight[0] + c1.bias).detach().numpy())


def test_critic_separates_prior_samples_from_perturbed_shapes():
    v, t = sphere(8)
    graphs = GraphStack(build_hierarchy(v, t, (4,)))
    g = torch.Generator().manual_seed(0)
    n = len(v)
    # a smooth linear "model": 6 low-frequency deformation modes of the sphere (mm)
    vv = torch.from_numpy(v).float()
    basis = torch.stack([vv * torch.sin(vv[:, i % 3:i % 3 + 1] / 25.0 + i) / 10.0 for i in range(6)])

    def prior(m):
        return torch.einsum("bk,knc->bnc", torch.randn(m, 6, generator=g), basis)

    def perturbed(m):
        return prior(m) + 3.0 * torch.randn(m, n, 3, generator=g)  # per-vertex noise

    torch.manual_seed(0)
    critic = GCNCritic(graphs, (8,), k=3, in_scale=10.0)
    with torch.no_grad():
        before = (critic(prior(64))[:, None] > critic(perturbed(64))[None, :]).float().mean().item()
    opt = torch.optim.RMSprop(critic.parameters(), lr=2e-3)
    for _ in range(200):
        loss = wgan_div_critic_loss(critic, prior(16), perturbed(16)).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        real, fake = critic(prior(64)), critic(perturbed(64))
    auc = (real[:, None] > fake[None, :]).float().mean().item()  # held-out samples
    assert auc > 0.95 and auc > before + 0.2, (before, auc)


@pytest.fixture(scope="module")
def semisup_batches(tiny_fm):
    lab = SyntheticFaceDataset({"mode": "set", "set_size": 2, "image_size": SIZE, "train_identities": 20,
                                "label_noise_std": 0.3, **EASY}, split="train", size=4, facemodel=tiny_fm)
    unl = SyntheticFaceDataset({"mode": "set", "set_size": 2, "image_size": SIZE, "train_identities": 20,
                                "labelled_fraction": 0.0, "identity_seed": 1, **EASY}, split="train", size=4,
                               seed=5, facemodel=tiny_fm)
    return [collate_samples([lab[i], unl[i]]) for i in range(4)]


class ListModule(torch.utils.data.Dataset):
    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]


def _first(items):
    return items[0]


class SaveAt:
    """Saves a checkpoint inside the loop when ``global_step`` reaches ``step`` (what
    ModelCheckpoint does when a run is interrupted later)."""

    def __init__(self, step, path):
        import lightning as L

        class _Cb(L.Callback):
            def on_train_batch_end(cb, trainer, *args):
                if trainer.global_step == step:
                    trainer.save_checkpoint(path)

        self.callback = _Cb()


def _fit(model, batches, max_steps, tmp_path, ckpt=None, callbacks=()):
    import lightning as L

    from benchmark3dface.training.resumable import resumable_loader

    # the project's resumable loader: a resumed run reads exactly the batches not read yet
    loader = resumable_loader(ListModule(batches), seed=0, drop_last=False, batch_size=1, num_workers=0,
                              collate_fn=_first)
    tr = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                   callbacks=list(callbacks))
    tr.fit(model, train_dataloaders=loader, ckpt_path=ckpt, weights_only=True)
    return tr


def test_gan_loop_trains_both_players_and_resumes_exactly(semisup_batches, tmp_path):
    torch.manual_seed(0)
    full = GCNSemi(**TINY)
    start = {k: v.clone() for k, v in full.state_dict().items()}
    ck = str(tmp_path / "mid.ckpt")
    # 4 batches x (critic + encoder-decoder step); a checkpoint after the 2nd batch
    tr = _fit(full, semisup_batches, 8, tmp_path / "a", callbacks=[SaveAt(4, ck).callback])
    assert tr.global_step == 8
    moved = {k for k, v in full.state_dict().items() if v.is_floating_point() and not torch.equal(v, start[k])}
    assert any(k.startswith("critic.") for k in moved) and any(k.startswith("shape_decoder.") for k in moved)
    assert any(k.startswith("encoder.") for k in moved) and "center.centers" in moved
    saved = torch.load(ck, map_location="cpu", weights_only=True)
    assert len(saved["optimizer_states"]) == 2  # Adam (encoder-decoder) and RMSprop (critic)
    assert saved["optimizer_states"][0]["state"] and saved["optimizer_states"][1]["state"]

    torch.manual_seed(123)  # the resumed run must not depend on the global RNG
    resumed = GCNSemi(**TINY)
    tr2 = _fit(resumed, semisup_batches, 8, tmp_path / "b", ckpt=ck)
    assert tr2.global_step == 8
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    for x, y in zip(tr.optimizers, tr2.optimizers):
        for sx, sy in zip(x.state.values(), y.state.values()):
            for key in sx:
                torch.testing.assert_close(sx[key], sy[key], rtol=0, atol=0)


def test_set_reconstruction_uses_the_averaged_identity_code_and_neutral_expression(set_batch):
    torch.manual_seed(0)
    m = GCNSemi(**TINY).eval()
    with torch.no_grad():  # make the expression code matter: a non-zero decoder output layer
        m.shape_decoder.out.weight.normal_(0, 0.5)
    recs = m.reconstruct(set_batch)
    b, v = set_batch.image.shape[:2]
    assert len(recs) == b and all(len(r.per_view) == v for r in recs)
    for i, r in enumerate(recs):
        with torch.no_grad():  # encode each view alone, average by hand
            codes = [m.encode(set_batch.image[i, j:j + 1].float()) for j in range(v)]
            mean_id = torch.stack([c["id"][0] for c in codes]).mean(0, keepdim=True)
            want = m.decode_shape(mean_id, torch.zeros(1, 8))[0]
            per0 = m.decode_shape(codes[0]["id"], codes[0]["exp"])[0]
            with_exp = m.decode_shape(mean_id, codes[0]["exp"])[0]
        torch.testing.assert_close(r.faces[0].vertices, want, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(r.per_view[0].vertices, per0, atol=1e-4, rtol=1e-4)
        assert (r.faces[0].vertices - with_exp).abs().max() > 1e-3  # the expression was neutralised
        assert r.faces[0].landmarks2d.shape == (68, 2) and r.faces[0].triangles.shape[1] == 3


def test_single_reconstruction_contract_and_loss_switches(single_batch, tiny_fm):
    torch.manual_seed(0)
    m = GCNSemi(**TINY)
    recs = m.reconstruct(single_batch)
    assert len(recs) == single_batch.image.shape[0]
    f = recs[0].faces[0]
    assert f.vertices.shape == (tiny_fm.num_vertices, 3) and torch.isfinite(f.landmarks2d).all()
    # the untrained decoder starts at the template (zero-initialised output layer)
    torch.testing.assert_close(f.vertices, tiny_fm.mean_shape, atol=1e-5, rtol=0)
    data = m._flatten(single_batch)
    codes = m.encode(data["image"])
    verts = m.decode_shape(codes["id"], codes["exp"])
    data["labelled"][:] = False  # an all-unlabelled batch has no labelled-shape terms
    terms = m.generator_terms(data, codes, verts)
    assert not {"pair", "neutral"} & set(terms) and float(terms.get("shape", 0.0)) == 0.0
    data["labelled"][0] = True  # one labelled image: its shape term is live
    assert float(m.generator_terms(data, codes, verts)["shape"]) > 0
    assert {"photo", "landmark", "recognition", "laplacian", "symmetry", "adversarial"} <= set(terms)
    off = GCNSemi(**{**TINY, "loss_weights": {"adversarial": 0.0, "recognition": 0.0}})
    assert not {"adversarial", "recognition"} & set(off.generator_terms(data, codes, verts))
    with pytest.raises(ValueError, match="unknown loss terms"):
        GCNSemi(**{**TINY, "loss_weights": {"advers": 1.0}})


def test_configs_name_real_classes_and_valid_arguments():
    import importlib
    import inspect
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    for profile in ("quick", "paper"):
        cfg = yaml.safe_load((root / "experiments" / profile / "gcnsemi.yaml").read_text())
        for part in ("model", "data"):
            mod, _, name = cfg[part]["class_path"].rpartition(".")
            cls = getattr(importlib.import_module(mod), name)
            params = inspect.signature(cls.__init__).parameters
            bad = set(cfg[part]["init_args"]) - set(params)
            assert not bad, (profile, part, bad)
        args = cfg["model"]["init_args"]
        # decoder widths: one per level of the hierarchy plus the coarsest FC width
        assert len(args["decoder_widths"]) == len(args["factors"]) + 1
        assert len(args["critic_widths"]) == len(args["factors"]) - args.get("critic_level", 0)
        data = cfg["data"]["init_args"]
        assert args["num_identities"] >= 2 * data["identities"]  # labelled + offset unlabelled people
    assert GCNSemi.spec.eval_kinds == ("single", "set", "multiview") and GCNSemi.spec.inputs == ("image",)
