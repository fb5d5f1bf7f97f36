"""The Bayes-limit domain: class-conditional Gaussian mixtures, where every denoiser, the classifier and the
best accuracy any method can reach from the degraded input are closed-form (issue 18, item 4)."""
