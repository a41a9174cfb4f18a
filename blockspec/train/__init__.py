"""Training: device choice, the loop, checkpoints, records and plots for a spec."""
