"""convscope: fine-tune convnets on your own image classes and see what they learned."""

__version__ = "0.1.0"
