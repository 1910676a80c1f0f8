"""``sbmlhybrid media pretrain|transfer|propose|resave``: the culture-medium predictor CLI.

Hand-written argparse glue over ``sbmlhybrid.media``. Inputs are CSV or Excel,
outputs CSV plus model/campaign files: zip archives of JSON metadata and torch
tensors (``sbmlhybrid.media.modelfile``), which are read without unpickling
anything. Bad input (including a foreign, damaged or old pickle model file)
raises InputError, which the entry point maps to exit code 2.

    sbmlhybrid media pretrain --data source.csv --target yield --model-out src.zip --out curve.csv
    sbmlhybrid media transfer --model src.zip --data target.xlsx --target yield \
        --strategy lp-ft --model-out tgt.zip --out fit.csv
    sbmlhybrid media propose --model tgt.zip --space space.csv [--constraints c.csv] \
        --n 96 --out plate.csv [--campaign campaign.zip]
    sbmlhybrid media resave old.pkl new.zip --trust-pickle   # version-1 pickle files only
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sbmlhybrid.errors import InputError, Issue

# spelled out (checked against media.strategies.STRATEGIES by the tests) so that building
# the parser for every sbmlhybrid command does not import sklearn and the media package
STRATEGY_HELP = ("head | lp-ft | staged | full | surgical | scratch (default lp-ft: linear "
                 "probe, then the whole network fine-tuned; staged: only the layers next to "
                 "the head, depth chosen by CV)")


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _components(args) -> list[str] | None:
    from sbmlhybrid.media.candidates import SearchSpace
    from sbmlhybrid.media.tables import read_table

    if getattr(args, "space", None):
        return SearchSpace.from_table(read_table(args.space), str(args.space)).components
    return _split(args.components)


def _save_model(model, path: Path) -> None:
    from sbmlhybrid.media.modelfile import save_model

    save_model(model, path)


def _load_model(path: Path):
    from sbmlhybrid.media.modelfile import load_model

    return load_model(path)


def _curve(model) -> pd.DataFrame:
    rows = []
    for stage, res in model.history_.items():
        for epoch, (tr, va) in enumerate(zip(res.train_loss, res.val_loss)):
            rows.append({"stage": stage, "epoch": epoch, "train_mse": tr, "val_mse": va})
    return pd.DataFrame(rows, columns=["stage", "epoch", "train_mse", "val_mse"])


def cmd_pretrain(args) -> int:
    from sbmlhybrid.media.estimator import TransferMLPRegressor
    from sbmlhybrid.media.tables import read_table, training_table, write_csv

    torch.set_num_threads(args.threads)
    df = read_table(args.data)
    x, y = training_table(df, args.target, _components(args), _split(args.exclude),
                          str(args.data))
    model = TransferMLPRegressor(n_layers=args.layers, width=args.width,
                                 n_members=args.members, max_epochs=args.epochs,
                                 random_state=args.seed).pretrain(x, y)
    _save_model(model, args.model_out)
    write_csv(_curve(model), args.out)
    print(f"pretrained on {len(y)} rows x {x.shape[1]} components -> {args.model_out}")
    return 0


def cmd_transfer(args) -> int:
    from sklearn.base import clone
    from sklearn.model_selection import KFold, cross_val_predict

    from sbmlhybrid.media.estimator import canonical_strategy
    from sbmlhybrid.media.tables import read_table, training_table, write_csv

    torch.set_num_threads(args.threads)
    strategy = canonical_strategy(args.strategy)
    source = _load_model(args.model)
    df = read_table(args.data)
    x, y = training_table(df, args.target, _components(args), _split(args.exclude),
                          str(args.data))
    known = [c for c in x.columns if c in source.columns_]
    if not known:
        raise InputError([Issue("no column matches a component of the pretrained model "
                                f"({', '.join(source.columns_)})", file=str(args.data),
                                column=c) for c in x.columns])
    model = clone(source).set_params(source=source, strategy=strategy, guard=args.guard,
                                     random_state=args.seed)
    model.fit(x, y)
    mean, std = model.predict(x, return_std=True)
    out = pd.DataFrame({"row": np.arange(1, len(y) + 1), "measured": y, "predicted": mean,
                        "std": std})
    if args.cv:
        folds = KFold(min(args.cv, len(y)), shuffle=True, random_state=args.seed)
        out["cv_predicted"] = cross_val_predict(clone(model), x, y, cv=folds)
    _save_model(model, args.model_out)
    write_csv(out, args.out)
    print(f"strategy {model.strategy_} (guard fired: {model.guard_fired_}); "
          f"{100 * model.out_of_range_fraction_:.1f} % of entries outside the source range")
    return 0


def cmd_propose(args) -> int:
    from sbmlhybrid.media.campaign import Campaign, propose
    from sbmlhybrid.media.candidates import SearchSpace, constraints_from_table
    from sbmlhybrid.media.tables import read_table, write_csv

    torch.set_num_threads(args.threads)
    model = _load_model(args.model)
    space = SearchSpace.from_table(read_table(args.space), str(args.space))
    missing = [c for c in model.input_columns_ if c not in space.components]
    if missing:
        raise InputError([Issue("model component is missing from the search space",
                                file=str(args.space), column=c) for c in missing])
    cons = (constraints_from_table(read_table(args.constraints), space, str(args.constraints))
            if args.constraints else [])
    if args.campaign:
        path = Path(args.campaign)
        camp = Campaign.load(path) if path.exists() else Campaign(
            space, model, cons, plate_size=args.n, acquisition=args.acquisition,
            beta=args.beta, n_candidates=args.candidates, seed=args.seed)
        plate = camp.ask(args.n)
        camp.save(path)
    else:
        plate = propose(model, space, args.n, np.random.default_rng(args.seed), cons,
                        args.candidates, args.acquisition, args.beta)
    write_csv(plate, args.out)
    print(f"{len(plate)} proposals -> {args.out}")
    return 0


def cmd_resave(args) -> int:
    from sbmlhybrid.media.modelfile import resave_trusted_pickle

    if not args.trust_pickle:
        raise InputError(Issue("resave unpickles the old file, which runs any code it "
                               "carries; pass --trust-pickle if you trust where it came from",
                               file=str(args.old)))
    if not Path(args.old).exists():
        raise FileNotFoundError(2, "No such file", str(args.old))
    kind = resave_trusted_pickle(args.old, args.new)
    print(f"{kind} {args.old} -> {args.new} (current format)")
    return 0


def register(subparsers) -> None:
    """Add the ``media`` command and its pretrain/transfer/propose sub-commands."""
    media = subparsers.add_parser("media", help="transfer-learned culture-medium predictor")
    sub = media.add_subparsers(dest="media_command", metavar="SUBCOMMAND")
    media.set_defaults(func=lambda a: (media.print_help(), 2)[1])

    def common(p: argparse.ArgumentParser, data: bool = True) -> None:
        if data:
            p.add_argument("--data", type=Path, required=True, help="CSV or Excel table")
            p.add_argument("--target", default="yield", help="outcome column (default: yield)")
            p.add_argument("--components", help="comma-separated component columns")
            p.add_argument("--space", type=Path, help="search-space table naming the components")
            p.add_argument("--exclude", help="comma-separated columns to ignore")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=1, help="torch CPU threads")

    p = sub.add_parser("pretrain", help="pretrain the deep ensemble on source formulations")
    common(p)
    p.add_argument("--model-out", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="learning-curve CSV")
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--width", type=int, default=24)
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--epochs", type=int, default=200)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("transfer", help="transfer a pretrained model to a new cell line")
    common(p)
    p.add_argument("--model", type=Path, required=True, help="pretrained model file")
    p.add_argument("--strategy", default="lp-ft",
                   help=STRATEGY_HELP)
    p.add_argument("--guard", action="store_true", help="fall back to target-only if better")
    p.add_argument("--cv", type=int, default=0, help="add K-fold CV predictions")
    p.add_argument("--model-out", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="predictions CSV")
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("propose", help="propose a plate of new formulations")
    common(p, data=False)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--space", type=Path, required=True,
                   help="table: component, unit, min, max, levels")
    p.add_argument("--constraints", type=Path, help="table: name, lower, upper, <component>...")
    p.add_argument("--n", type=int, default=96, help="plate size")
    p.add_argument("--candidates", type=int, default=100_000)
    p.add_argument("--acquisition", default="ucb", choices=["ucb", "ei", "mean"])
    p.add_argument("--beta", type=float, default=2.0)
    p.add_argument("--campaign", type=Path, help="campaign state file (created or resumed)")
    p.add_argument("--out", type=Path, required=True, help="proposals CSV")
    p.set_defaults(func=cmd_propose)

    p = sub.add_parser("resave", help="convert a trusted version-1 (pickle) model or "
                       "campaign file to the current format")
    p.add_argument("old", type=Path, help="version-1 pickle file")
    p.add_argument("new", type=Path, help="file to write in the current format")
    p.add_argument("--trust-pickle", action="store_true",
                   help="required: unpickling runs any code the old file carries")
    p.set_defaults(func=cmd_resave)
