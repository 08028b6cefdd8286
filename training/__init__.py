"""Training Red-Seg on IDRiD: data, losses, the two-stage trainer and evaluation."""
