"""Image priors attacks search in: pretrained face generators (their latent spaces give faces, not noise)."""
