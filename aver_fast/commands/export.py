"""``aver-fast export CKPT --format onnx|exported-program --out FILE [--features]``: a file for deployment, checked
by running it (onnxruntime, or the loaded ExportedProgram) on a batch size other than the one traced."""
from __future__ import annotations

import argparse
import json

from ..export import EXAMPLE_BATCH, FORMATS

HELP = "export a trained model to ONNX or a torch.export program (runs without aver_fast)"
TOLERANCE = 1e-4  # largest |exported - PyTorch| accepted by the check (float32)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint prefix, e.g. runs/aver/best")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--out", required=True, help="file to write (e.g. aver.onnx, aver.pt2)")
    p.add_argument("--features", action="store_true",
                   help="export the fusion model on cached backbone features (inputs v_feat, a_feat) instead of the "
                        "full model (inputs video, audio)")
    p.add_argument("--no-check", action="store_true", help="do not run the exported file against PyTorch")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..export import example_inputs, export_model, run_exported
    from ..inference import load_model

    model, state = load_model(args.checkpoint)
    if "int8" in state:
        raise ValueError(f"{args.checkpoint} is an int8 checkpoint (aver-fast quantize), which export does not "
                         f"write; export its fp32 checkpoint {state['int8']['source']['checkpoint']}")
    done = export_model(model, args.out, args.format, features=args.features)
    report = done.describe()
    if not args.no_check:
        inputs = example_inputs(model, args.features, batch=EXAMPLE_BATCH - 1)
        try:
            got = run_exported(args.out, args.format, inputs)
        except ImportError as e:
            report["check"] = f"skipped: {e.name} is not installed"
        else:
            with torch.no_grad():
                want = (model.forward_features if args.features else model)(*inputs.values())
            diff = (got - want).abs().max().item()
            report["check"] = {"batch": EXAMPLE_BATCH - 1, "max_abs_diff": diff, "tolerance": TOLERANCE}
            if not diff <= TOLERANCE:
                print(json.dumps(report))
                raise ValueError(f"the exported file differs from the PyTorch model by {diff:.3g} (> {TOLERANCE})")
    print(json.dumps(report))
    return 0
