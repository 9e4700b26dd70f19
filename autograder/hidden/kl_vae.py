"""Lab 02 (KL, VAE): the hidden bar of the trained model, never visible to a graded kernel.

The judge of `kl_vae.check_trained_vae(..., bar="hidden")` computes the lab's loss per image
(squared error of one posterior sample decoded, plus the KL) on the 2000 held-out MNIST test
images (dgmlab.heldout), z drawn by the judge from the exported encoder's (mu, log_var) and
decoded by the exported decoder.

Calibration: the reference solution with the lab's schedule (warm-up 1, annealing 4, 8 epochs)
on CPU, training seeds 1..8, each the mean over 20 judge seeds: 30.59 to 31.36 (mean 30.96,
sd 0.28), worst single judge draw 31.50. The bar leaves 1.14 nats (4 sd of training) above the
worst seed and 1.0 nat above the worst of the 160 scores; the judge's sampling moves one
model's score by sd 0.04 to 0.10. On the full 10 000 test images the old bar, also 32.5, sat
1.2 nats above the worst of five seeds.

Power (the judge's sampling, sd at most kl_vae.JUDGE_SD = 0.10 nats per model): the worst
reference score lies 10 sd under this bar, so sampling alone fails it with a probability far
below 3.8e-8; a model whose expected loss is 0.86 nats (stats.detectable(0.10)) above the bar
fails with probability at least 0.999.
"""

MAX_LOSS = 32.5
