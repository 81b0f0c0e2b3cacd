"""mmd: a live paper market-making daemon for Bybit V5."""

__version__ = "0.1.0"
