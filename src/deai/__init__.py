"""deai: decentralized AI where every piece of work is done by someone untrusted,
checked, and paid for by its measured worth."""

__version__ = "0.1.0"
