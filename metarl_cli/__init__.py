"""metarl-cli: a command-line experiment runner for meta-reinforcement learning."""

__version__ = "0.1.0"
