"""Whose an archive is, without a bucket: the system identifier in a WAL segment's first page header, and which
generation a server binds to (its own name, its own generation, or a refusal naming both identifiers)."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.pitr import (
    Archive,
    ArchiveConfig,
    wal_page_system_identifier,
)

OLD, NEW = "7351111111111111111", "7452222222222222222"


def first_page(sysid: int, info: int = 0x0002) -> bytes:
    """XLogLongPageHeaderData: magic, info, timeline, page address, remaining length, padding; sysid, seg size."""
    return struct.pack("<HHIQI4xQII", 0xD110, info, 1, 0x1000000, 0, sysid, 16 * 1024 * 1024, 8192) + bytes(8160)


def test_the_system_identifier_is_read_from_the_long_page_header_only():
    assert wal_page_system_identifier(first_page(int(NEW))) == NEW
    assert wal_page_system_identifier(first_page(int(NEW), info=0)) is None  # a short header carries none
    assert wal_page_system_identifier(b"\x00" * 10) is None


class Held(Archive):
    """An archive whose contents per server name are given (what the bucket would hold)."""

    def __init__(self, held: dict[str, dict], server_name: str = "chat"):
        super().__init__(ArchiveConfig("s3://bucket/pg", server_name, "/opt/tools", "/etc/aws"))
        self.held = held

    def identities(self) -> dict:
        return self.held.get(self.config.server_name, {})


def test_an_empty_or_own_archive_binds_to_its_name():
    assert Held({}).bind(NEW) == {"server_name": "chat", "state": "empty"}
    assert Held({"chat": {NEW: ["base backup 1"]}}).bind(NEW)["state"] == "this server's"


def test_another_clusters_archive_is_refused_naming_both_and_the_two_ways_out():
    archive = Held({"chat": {OLD: ["base backup 20261201T000000"]}})
    with pytest.raises(RunbookError) as refused:
        archive.bind(NEW)
    message = str(refused.value)
    assert f"system {OLD} (base backup 20261201T000000)" in message and f"this server is system {NEW}" in message
    assert "new pg_archive server_name" in message and "pg_archive_adopt=true" in message
    assert f"chat.{NEW}" in message and archive.config.server_name == "chat"


def test_adopt_starts_a_generation_and_later_runs_find_it_without_adopt():
    started = Held({"chat": {OLD: ["the newest WAL"]}})
    bound = started.bind(NEW, adopt=True)
    assert bound["state"] == "a new generation of this server" and started.config.server_name == f"chat.{NEW}"
    assert bound["other_generation"] == {"server_name": "chat", "systems": [OLD]}
    found = Held({"chat": {OLD: ["the newest WAL"]}, f"chat.{NEW}": {NEW: ["base backup 2"]}}).bind(NEW)
    assert found["server_name"] == f"chat.{NEW}" and found["state"] == "this server's generation"
