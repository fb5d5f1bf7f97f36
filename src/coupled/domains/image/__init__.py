"""Image domain: data, corruptions, classifier and denoiser networks, metrics."""
