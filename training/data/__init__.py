"""Training data: IDRiD's layout, the crop dataset, the working-scale cache and data packs, the disc reference."""
