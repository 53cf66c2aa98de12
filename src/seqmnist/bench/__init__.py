"""`seqmnist bench`: training and inference speed against a typical PyTorch loop, and time to accuracy."""
