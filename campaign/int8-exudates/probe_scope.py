"""Probe for the int8 path's hard-exudate loss (issue 25): which quantised layers cost it? Quantises a copy
of the default checkpoint with more of the encoder kept in fp32 (NNCF's ignored scope: the shipped
``IGNORED_PATTERNS`` plus the regular expressions given) and/or NNCF's MIXED preset (asymmetric
activations) and/or NNCF's full bias correction (``--full-bias-correction``, instead of the fast one) and/or
without equalising stage 3's output first (``--no-equalise``: the recipes before ``redseg-openvino-6``), then
runs redseg-evaluate on the copy through int8 (the hold-out, all four lesions):

    .venv/bin/python campaign/int8-exudates/probe_scope.py runs/int8-stage5 '.*encoder\.features\.(34|37|40)/.*'
    .venv/bin/python campaign/int8-exudates/probe_scope.py runs/int8-mixed --mixed
    .venv/bin/python campaign/int8-exudates/probe_scope.py runs/int8-stage4-fullbc --no-equalise --full-bias-correction

Before recipe 6 the shipped scope kept ``features.24`` and this took ``--quantise-stage4`` to quantise it;
``--no-equalise`` alone now gives what ``--quantise-stage4`` gave then, and ``--no-equalise`` with
``'.*encoder\.features\.24/.*'`` gives recipe 5.
"""

import sys
from pathlib import Path

import model.openvino_export as export
from int8_holdout import copy_into, int8_holdout
from model.checkpoint import DEFAULT_CHECKPOINT


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
    checkpoint = copy_into(out, DEFAULT_CHECKPOINT)
    flags = {flag for flag in extra if flag.startswith("--")}
    extra = [pattern for pattern in extra if pattern not in flags]
    if flags & {"--mixed", "--full-bias-correction"}:
        export.quantize = quantizer("--mixed" in flags, "--full-bias-correction" in flags)
    if "--no-equalise" in flags:
        export.EQUALISED_STAGES = ()
    export.RECIPE += "".join(sorted(flags))
    export.IGNORED_PATTERNS = (*export.IGNORED_PATTERNS, *extra)
    print(f"kept in fp32: {export.IGNORED_PATTERNS}", flush=True)
    return int8_holdout(out, checkpoint)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
