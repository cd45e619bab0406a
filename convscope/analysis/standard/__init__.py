"""Per-model standard analyses: filters, activations, feature visualisation, t-SNE, top images, confusion, curves, change from the starting base."""
