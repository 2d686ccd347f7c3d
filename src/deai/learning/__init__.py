"""Learning plane: datasets, partitioners, models, local training, algorithms."""
