"""The working-scale hold-out validation of a checkpoint, exactly as redseg-train's validation runs it
(the trainer logs none before its first step): the starting point of a fine-tune probe.

    python campaign/joint-finetune/baseline.py checkpoints/redseg-default.safetensors configs/probes/joint-four-lesions.yaml
"""

import json
import sys

from model.checkpoint import load_checkpoint
from training.config import load_config
from training.engine import select_samples, to_working_scale, validate
from training.train import validation_tiles

checkpoint, config_path = sys.argv[1], sys.argv[2]
config = load_config(config_path)
_, holdout = select_samples(config.data, config.model)
items = to_working_scale(holdout, config.data, config.model)
model = load_checkpoint(checkpoint, fold=False).model
metrics = validate(model, items, __import__("torch").device("cpu"), validation_tiles(config))
print(json.dumps({lesion: round(metrics[lesion]["average_precision"], 4) for lesion in config.model.lesions}
                 | {"mean_ap": round(metrics["mean_ap"], 4)}))
