"""A contact sheet of training patches, each without and with the camera augmentation of a run config:
to look at what the network is shown before trusting the numbers.

    python campaign/joint-finetune/camera_sheet.py configs/probes/joint-four-lesions-cameras.yaml campaign/joint-finetune/camera-patches.jpg
"""

import sys
from dataclasses import replace

import cv2
import numpy as np

from training.config import load_config
from training.data.dataset import PatchDataset
from training.engine import select_samples, to_working_scale

config = load_config(sys.argv[1])
train, _ = select_samples(config.data, config.model)
items = to_working_scale(train[:12], config.data, config.model)
plain = replace(config.augment, brightness=0, contrast=0, gamma=0, resolution=0, blur=0, white_balance=0, vignetting=0,
                jpeg_quality=100)  # the same crops, as taken
pairs = []
for index in range(8):
    before = PatchDataset(items, 256, 0.5, plain, seed=1)[index][0]
    after = PatchDataset(items, 256, 0.5, config.augment, seed=1)[index][0]
    pairs.append(np.concatenate([before.permute(1, 2, 0).numpy(), after.permute(1, 2, 0).numpy()], axis=0))
sheet = np.concatenate(pairs, axis=1).clip(0, 255).astype(np.uint8)
cv2.imwrite(sys.argv[2], cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
print(f"{sys.argv[2]}: top row as IDRiD's camera took them, bottom row through the config's augmentation")
