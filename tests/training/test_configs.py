"""Layered configs: every shipped LightningCLI config resolves the same way in
``resolve_config`` and in LightningCLI, the Table-1 ablation files differ from their base only in
the loss terms their names promise, and method configs ship as package data."""

from __future__ import annotations

import glob
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from benchmark3dface.training.configs import config_chain, expand_config_args, resolve_config

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from cli_helpers import flatten, print_config, run_b3f  # noqa: E402

ROOT = HERE.parents[1]
LIGHTNING_CONFIGS = sorted(p for p in [*ROOT.glob("experiments/*/*.yaml"), *ROOT.glob("methods/*/configs/*.yaml")]
                           # sweeps and zoo recipes wrap a config in keys of their own (tests/zoo)
                           if p.name != "benchmark.yaml" and p.parent.name not in ("sweeps", "zoo"))
ABLATIONS = sorted(ROOT.glob("experiments/quick/deep3d_ablation_*.yaml"))
#: what an ablation file name says: the image-level loss terms it keeps
NAME_TERMS = {"photo": "photo", "lm": "landmark", "per": "perceptual"}
TERMS = ("photo", "landmark", "perceptual")
#: keys a loss ablation may change: the loss-term weights, the perceptual term's encoder, and
#: its own checkpoint folder (so it never overwrites the base run's checkpoints)
ALLOWED = ("model.init_args.loss_weights", "model.init_args.perceptual", "model.init_args.train_missing_idnet",
           "trainer.callbacks.0.init_args.dirpath")


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    """LightningCLI's resolved config of every shipped config (``b3f fit --config F --print_config``)."""
    cwd = tmp_path_factory.mktemp("print_config")
    return {p: print_config(["fit", "--config", str(p)], cwd) for p in LIGHTNING_CONFIGS}


def _diff(a: dict, b: dict) -> set[str]:
    fa, fb = flatten(a), flatten(b)
    keys = {k for k in fa.keys() | fb.keys() if fa.get(k, "<absent>") != fb.get(k, "<absent>")}
    return {k for k in keys if not k.startswith("trainer.logger")}  # logger objects print as memory addresses


def test_the_shipped_configs_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in LIGHTNING_CONFIGS}
    assert {"experiments/quick/deep3d.yaml", "experiments/paper/deep3d_cnet.yaml",
            "methods/deep3d/configs/quick.yaml"} <= names
    assert len(ABLATIONS) == 4


def test_resolve_config_agrees_with_lightning_cli(printed):
    for path, cli in printed.items():
        ours = flatten(resolve_config(path))
        theirs = flatten(cli)
        wrong = {k: (v, theirs.get(k, "<absent>")) for k, v in ours.items() if theirs.get(k, "<absent>") != v}
        assert not wrong, (path, wrong)


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_ablations_differ_from_the_base_only_in_their_loss_terms(path, printed):
    from b3f_methods.deep3d.losses import resolve_weights

    chain = config_chain(path)
    base_path = ROOT / "experiments" / "quick" / "deep3d.yaml"
    assert [p.resolve() for p in chain[:-1]] == [base_path.resolve()], chain
    assert len(path.read_text().splitlines()) < 30  # a small override, not a copy
    base, abl = printed[base_path], printed[path]
    changed = _diff(base, abl)
    assert all(k.startswith(ALLOWED) for k in changed), sorted(k for k in changed if not k.startswith(ALLOWED))
    # what the name promises: the named terms on, the others off; regularisers as in the base
    tokens = path.stem.removeprefix("deep3d_ablation_").split("_")
    on = set(TERMS) if tokens == ["all"] else {NAME_TERMS[t] for t in tokens}
    args, base_args = abl["model"]["init_args"], base["model"]["init_args"]
    weights, reg = resolve_weights(args["loss_preset"], args["loss_weights"], args["reg_weights"])
    _, base_reg = resolve_weights(base_args["loss_preset"], base_args["loss_weights"], base_args["reg_weights"])
    for term in TERMS:
        active = weights[term] > 0 and (term != "perceptual" or args["perceptual"] != "none")
        assert active == (term in on), (path.stem, term, weights[term], args["perceptual"])
    assert reg == base_reg


def test_merge_rules_match_lightning_cli(tmp_path):
    """Mappings merge section by section; dict- and list-valued arguments are replaced whole;
    bases chain (a list of bases, a base with its own base)."""
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "seed_everything": 1,
        "model": {"class_path": "b3f_methods.deep3d.Deep3D",
                  "init_args": {"backbone": "resnet18", "image_size": 32, "lr": 0.1, "perceptual": "none",
                                "loss_weights": {"photo": 1.0, "landmark": 2.0}}},
        "trainer": {"max_steps": 5, "callbacks": [
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": "a"}},
            {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}]}}))
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump({"trainer": {"max_steps": 6, "log_every_n_steps": 3}}))
    (tmp_path / "mid.yaml").write_text(yaml.safe_dump({"__base__": ["base.yaml", "extra.yaml"],
                                                       "model": {"init_args": {"lr": 0.2}}}))
    (tmp_path / "top.yaml").write_text(yaml.safe_dump({
        "__base__": "mid.yaml",
        "model": {"init_args": {"loss_weights": {"photo": 0.0}}},
        "trainer": {"callbacks": [{"class_path": "benchmark3dface.training.RNGStateCheckpoint"}]}}))
    ours = resolve_config(tmp_path / "top.yaml")
    cli = print_config(["fit", "--config", str(tmp_path / "top.yaml")], tmp_path)
    assert ours["model"]["init_args"] == {"backbone": "resnet18", "image_size": 32, "lr": 0.2, "perceptual": "none",
                                          "loss_weights": {"photo": 0.0}}
    assert ours["trainer"] == {"max_steps": 6, "log_every_n_steps": 3,
                               "callbacks": [{"class_path": "benchmark3dface.training.RNGStateCheckpoint"}]}
    theirs = flatten(cli)
    assert {k: theirs.get(k, "<absent>") for k in flatten(ours)} == flatten(ours)
    assert cli["model"]["init_args"]["loss_weights"] == {"photo": 0.0}
    # the same layers as separate --config files, in order
    assert resolve_config([tmp_path / "base.yaml", tmp_path / "extra.yaml"])["trainer"]["max_steps"] == 6


def test_expand_config_args(tmp_path):
    (tmp_path / "base.yaml").write_text("trainer: {max_steps: 5}\n")
    (tmp_path / "only_base.yaml").write_text("__base__: base.yaml\n")
    (tmp_path / "over.yaml").write_text("__base__: base.yaml\ntrainer: {max_steps: 7}\n")
    base = str((tmp_path / "base.yaml").absolute())
    assert expand_config_args(["fit", "--config", str(tmp_path / "over.yaml"), "--seed_everything=3"]) == [
        "fit", "--config", base, "--config", "trainer:\n  max_steps: 7\n", "--seed_everything=3"]
    assert expand_config_args(["fit", f"--config={tmp_path / 'only_base.yaml'}"]) == ["fit", "--config", base]
    plain = ["fit", "-c", base, "--trainer.max_steps=2"]
    assert expand_config_args(plain) == plain


@pytest.mark.parametrize("text,error,match", [
    ("__base__: nope.yaml\n", FileNotFoundError, "bad.yaml: its __base__ .*nope.yaml not found"),
    ("__base__: bad.yaml\n", ValueError, "cycle"),
    ("__base__: 3\n", ValueError, "bad.yaml: __base__ must be a file name"),
    ("- a\n- b\n", ValueError, "bad.yaml: expected a mapping"),
    ("model: [unclosed\n", ValueError, "bad.yaml: not valid YAML"),
    ("__base__: base.yaml\nmodel: {class_path: b.C}\n", ValueError, "bad.yaml: changes class_path from a.B to b.C"),
])
def test_bad_layered_configs_name_the_file(tmp_path, text, error, match):
    (tmp_path / "base.yaml").write_text("model: {class_path: a.B, init_args: {x: 1}}\n")
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(error, match=match):
        resolve_config(tmp_path / "bad.yaml")


def test_b3f_fit_reports_a_bad_base_in_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("__base__: missing.yaml\n")
    code, out, err = run_b3f(["fit", "--config", str(tmp_path / "bad.yaml")], tmp_path)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "bad.yaml" in lines[0] and "missing.yaml not found" in lines[0], err
    assert "Traceback" not in err + out


def test_method_configs_are_package_data():
    """The specs' config paths stay inside the plugin package and match its package-data globs,
    so a non-editable install finds them; experiments/ links to the same files."""
    from b3f_methods.deep3d import Deep3D, Deep3DCNet

    pyproject = tomllib.loads((ROOT / "methods" / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["*"]
    pkg = ROOT / "methods" / "deep3d"
    for cls in (Deep3D, Deep3DCNet):
        for profile, rel in cls.spec.configs.items():
            assert ".." not in Path(rel).parts and not Path(rel).is_absolute(), (cls.__name__, rel)
            assert (pkg / rel).is_file(), rel
            assert any(rel in glob.glob(g, root_dir=pkg) for g in globs), (rel, globs)  # setuptools' glob
            linked = ROOT / "experiments" / profile / ("deep3d.yaml" if cls is Deep3D else "deep3d_cnet.yaml")
            assert linked.samefile(pkg / rel)
