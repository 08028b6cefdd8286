"""Docstrings as command-line help: argparse prints text as it is, so reStructuredText markup is dropped."""

from __future__ import annotations


def plain_help(text: str) -> str:
    """``text`` without reStructuredText's double backticks (``redseg-train`` -> redseg-train)."""
    return text.replace("``", "")
