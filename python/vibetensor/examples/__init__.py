"""Training examples shipped with vibetensor: `python -m vibetensor.examples.minigpt`,
`... .reverse` (sequence reversal) and `... .vit` (ViT on digits or CIFAR-10)."""
