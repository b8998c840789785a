"""A third-party package adding a volume format and a predictor through entry points only."""
