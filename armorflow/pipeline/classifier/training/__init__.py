"""Training-data gathering, training and evaluation of the span model."""
