"""vpkit: pixel-level visual prompts for NR-IQA."""
__version__ = "0.1.0"
