"""``b3f idnet train|info``: train (and cache) the framework's identity encoder.

``b3f idnet train [--epochs N --identities N --sets N ...]`` trains IdNet on synthetic identity
sets and stores it under ``$B3F_CACHE_DIR/idnet`` keyed by the config hash (``--out`` also
writes a copy); the verification accuracy on held-out identities is printed and saved with it.
``b3f idnet info`` prints the cache path and report of a config.
"""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("idnet", help="train the synthetic-identity face encoder (perceptual losses)")
    sub = p.add_subparsers(dest="idnet_command", metavar="ACTION", required=True)
    for name, text in (("train", "train IdNet on synthetic identities (cached by config hash)"),
                       ("info", "show the cache path and report of an IdNet config")):
        q = sub.add_parser(name, help=text)
        q.add_argument("--epochs", type=int, help="training epochs")
        q.add_argument("--identities", type=int, help="training identities (classes)")
        q.add_argument("--sets", type=int, help="training identity sets")
        q.add_argument("--set-size", type=int, dest="set_size", help="images per set")
        q.add_argument("--backbone", help="timm backbone (default resnet18)")
        q.add_argument("--embedding-dim", type=int, dest="embedding_dim")
        q.add_argument("--batch-size", type=int, dest="batch_size")
        q.add_argument("--lr", type=float)
        q.add_argument("--margin", choices=("cosface", "arcface"))
        q.add_argument("--seed", type=int)
        if name == "train":
            q.add_argument("--retrain", action="store_true", help="train even when cached")
            q.add_argument("--device", default="cpu")
            q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
            q.add_argument("--out", help="also save the weights to this file")
    return p


def _config(args: argparse.Namespace):
    from .idnet import config_with

    keys = ("epochs", "identities", "sets", "set_size", "backbone", "embedding_dim", "batch_size", "lr", "margin", "seed")
    return config_with(None, **{k: getattr(args, k, None) for k in keys})


def run(args: argparse.Namespace) -> int:
    from .idnet import idnet_cache_path, load_idnet, load_or_train_idnet, save_idnet

    cfg = _config(args)
    path = idnet_cache_path(cfg)
    if args.idnet_command == "info":
        print(f"config key {cfg.key()}\ncache path {path}\ntrained: {path.is_file()}")
        if path.is_file():
            _, report = load_idnet(path)
            print(json.dumps({k: report[k] for k in ("verification", "verification_untrained", "seconds_total")}, indent=2))
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model, report, path = load_or_train_idnet(cfg, retrain=args.retrain, device=args.device)
    if args.out:
        save_idnet(model, report, args.out)
        print(f"[idnet] copy saved to {args.out}")
    v, v0 = report["verification"], report["verification_untrained"]
    print(f"IdNet {cfg.key()} at {path}\nheld-out verification accuracy {v['accuracy']:.3f} (AUC {v['auc']:.3f}; "
          f"untrained {v0['accuracy']:.3f} / {v0['auc']:.3f}; chance 0.5)")
    return 0
