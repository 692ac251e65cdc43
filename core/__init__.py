"""The figurine latent-space explorer's engine: datasets, the AAE, training, encodings. No UI here."""
