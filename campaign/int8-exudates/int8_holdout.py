"""What the int8 probes (``probe_scope.py``, ``probe_pack.py``, ``probe_equalise.py``) share: a copy of a
checkpoint in the probe's folder, so that its IR is made there as the probe has set ``model.openvino_export``
up, and that copy's hold-out (all four lesions) through int8."""

import shutil
from pathlib import Path

from training.evaluation import evaluate


def copy_into(out: Path, checkpoint: Path) -> Path:
    """``checkpoint`` copied into ``out`` (made if missing): its IR goes beside the copy, not the original."""
    out.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(checkpoint, out / checkpoint.name))


def int8_holdout(out: Path, checkpoint: Path) -> int:
    """``redseg-evaluate`` on the hold-out through int8, its report in ``out/eval-holdout``."""
    return evaluate.main(["--checkpoint", str(checkpoint), "--backend", "openvino-int8", "--threads", "2",
                          "--holdout", "--no-progress", "--out", str(out / "eval-holdout")])
