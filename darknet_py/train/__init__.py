"""Training: Darknet's datasets, augmentation, loss, schedule and loop."""
