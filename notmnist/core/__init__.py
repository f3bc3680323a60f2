"""What the DVC stages import: data, split, models, training, metrics. Never imports notmnist.tools."""
