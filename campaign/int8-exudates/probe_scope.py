"""Probe for the int8 path's hard-exudate loss (issue 25): which quantised layers cost it? Quantises a copy
of the default checkpoint with more of the encoder kept in fp32 (NNCF's ignored scope: the shipped
``IGNORED_PATTERNS`` plus the regular expressions given) and/or NNCF's MIXED preset (asymmetric
activations), then runs redseg-evaluate on the copy through int8 (the hold-out, all four lesions):

    .venv/bin/python campaign/int8-exudates/probe_scope.py runs/int8-stage5 '.*encoder\.features\.(34|37|40)/.*'
    .venv/bin/python campaign/int8-exudates/probe_scope.py runs/int8-mixed --mixed
"""

import shutil
import sys
from pathlib import Path

import model.openvino_export as export
from model.checkpoint import DEFAULT_CHECKPOINT
from training.evaluation import evaluate


def quantize_mixed(ov_model, inputs):
    import nncf

    return nncf.quantize(ov_model, nncf.Dataset(inputs), subset_size=len(inputs), preset=nncf.QuantizationPreset.MIXED,
                         target_device=nncf.TargetDevice.CPU,
                         ignored_scope=nncf.IgnoredScope(patterns=list(export.IGNORED_PATTERNS), validate=False))


def main(out: Path, extra: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "redseg-default.safetensors"
    shutil.copy(DEFAULT_CHECKPOINT, checkpoint)
    if "--mixed" in extra:
        extra.remove("--mixed")
        export.quantize = quantize_mixed
        export.RECIPE += "-mixed"
    export.IGNORED_PATTERNS = (*export.IGNORED_PATTERNS, *extra)
    print(f"kept in fp32: {export.IGNORED_PATTERNS}", flush=True)
    return evaluate.main(["--checkpoint", str(checkpoint), "--backend", "openvino-int8", "--threads", "2",
                          "--holdout", "--no-progress", "--out", str(out / "eval-holdout")])


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
