"""Emulator extensions for DynamoDB restore fidelity (TTL, streams, deletion protection, tags, PITR) and the
Application Auto Scaling and CloudWatch alarm calls a faithful restore needs.

What moto lacks or answers unlike AWS, added here following AWS's documented behaviour (nothing yet).
"""

from __future__ import annotations


def install() -> None:
    """Patch moto (called once, before the server starts)."""
