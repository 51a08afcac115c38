"""kanbench: fair, reproducible comparisons of KAN implementations and MLPs."""

__version__ = "0.1.0"
