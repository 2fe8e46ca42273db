"""Parsers and handlers of the compliance commands (audit, export, retention, keys, verify)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the compliance sub-commands (filled in by the erasure and audit issues)."""
