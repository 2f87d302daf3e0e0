"""Emulator extensions for an emergency shutdown that stays shut: API Gateway route and method settings, ECS
Application Auto Scaling, Lambda event source mappings.

What moto lacks or answers unlike AWS, added here following AWS's documented behaviour (nothing yet).
"""

from __future__ import annotations


def install() -> None:
    """Patch moto (called once, before the server starts)."""
