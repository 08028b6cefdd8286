"""Probe for the int8 path's hard-exudate loss (issue 25): which quantised layers cost it? Quantises a copy
of the default checkpoint with more of the encoder kept in fp32 (NNCF's ignored scope: the shipped
``IGNORED_PATTERNS`` plus the regular expressions given) and/or NNCF's MIXED preset (asymmetric
activations) and/or NNCF's full bias correction (``--full-bias-correction``, instead of the fast one), or with
the encoder's stage 4 quantised after all (``--quantise-stage4``), then runs redseg-evaluate on the copy through
int8 (the hold-out, all four lesions):

    .venv/bin/python campaign/int8-exudates/probe_scope.py runs/int8-stage5 '.*encoder\.features\.(34|37|40)/.*'
    .venv/bin/python campaign/int8-exudates/probe_scope.py runs/int8-mixed --mixed
    .venv/bin/python campaign/int8-exudates/probe_scope.py runs/int8-stage4-fullbc --quantise-stage4 --full-bias-correction
"""

import shutil
import sys
from pathlib import Path

import model.openvino_export as export
from model.checkpoint import DEFAULT_CHECKPOINT
from training.evaluation import evaluate


def quantizer(mixed: bool, full_bias_correction: bool):
    """``export.quantize`` with NNCF's MIXED preset and/or its full bias correction."""
    def quantize(ov_model, inputs):
        import nncf

        return nncf.quantize(ov_model, nncf.Dataset(inputs), subset_size=len(inputs),
                             preset=nncf.QuantizationPreset.MIXED if mixed else None,
                             fast_bias_correction=not full_bias_correction, target_device=nncf.TargetDevice.CPU,
                             ignored_scope=nncf.IgnoredScope(patterns=list(export.IGNORED_PATTERNS), validate=False))
    return quantize


def main(out: Path, extra: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "redseg-default.safetensors"
    shutil.copy(DEFAULT_CHECKPOINT, checkpoint)
    flags = {flag for flag in extra if flag.startswith("--")}
    extra = [pattern for pattern in extra if pattern not in flags]
    if flags & {"--mixed", "--full-bias-correction"}:
        export.quantize = quantizer("--mixed" in flags, "--full-bias-correction" in flags)
        export.RECIPE += "".join(sorted(flags))
    kept = export.IGNORED_PATTERNS
    if "--quantise-stage4" in flags:
        kept = tuple(pattern for pattern in kept if pattern != export.STAGE4_PATTERN)
    export.IGNORED_PATTERNS = (*kept, *extra)
    print(f"kept in fp32: {export.IGNORED_PATTERNS}", flush=True)
    return evaluate.main(["--checkpoint", str(checkpoint), "--backend", "openvino-int8", "--threads", "2",
                          "--holdout", "--no-progress", "--out", str(out / "eval-holdout")])


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
