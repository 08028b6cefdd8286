"""New output branches on a trained network's frozen encoder (the exudates of issue 25).

The encoder's stage outputs are computed once per training photograph at the working scale
(``features``), new side-output branches are trained on crops of them (``fit``), and the trained
branches are added to a copy of the checkpoint whose other weights stay exactly as they were
(``merge``). ``redseg-train-branches`` (``cli``) runs the three.
"""
