"""The macula finder on 20 graded photographs drawn at random (seed 0): a contact sheet to look at.

    .venv/bin/python campaign/exudates/macula_sheet.py 0 docs/model-card-gpu/exudates/macula-check.jpg
"""
import cv2, numpy as np, sys
from model.formats.images import read_image
from model.screening.macula import find_macula
from training.referral.grading import list_graded, DEFAULT_ROOT
imgs = list_graded(DEFAULT_ROOT)
rng = np.random.default_rng(int(sys.argv[1]))
pick = rng.choice(len(imgs), 20, replace=False)
tiles = []
for i in pick:
    im = read_image(imgs[i].path)
    m = find_macula(im)
    s = 300 / im.shape[1]
    small = cv2.resize(im, (300, round(im.shape[0] * s)), interpolation=cv2.INTER_AREA)
    cv2.circle(small, (round(m.x * s), round(m.y * s)), round(m.radius * s), (0, 255, 0), 2)
    cv2.drawMarker(small, (round(m.x * s), round(m.y * s)), (255, 255, 255), cv2.MARKER_CROSS, 10, 1)
    cv2.putText(small, imgs[i].name[-3:], (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    tiles.append(small[:199])
rows = [np.hstack(tiles[r * 5:(r + 1) * 5]) for r in range(4)]
cv2.imwrite(sys.argv[2], cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
