"""initlab: how weight initialization and activation functions shape signal propagation."""

__version__ = "0.2.1"
