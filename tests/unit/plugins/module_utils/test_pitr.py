"""Pure logic of point-in-time recovery: targets, WAL names and ranges, the backup a target needs, the
configuration a throwaway cluster must not inherit, and the archive tools' pins."""

import datetime
import os
import re
import shlex
from pathlib import Path

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.pitr import (
    ArchiveConfig,
    _filter_conf,
    choose_backup,
    missing_segments,
    parse_segment,
    parse_target,
    private_work_dir,
    ranges,
    remove_leftovers,
    segment_name,
    segment_of,
    wal_plan,
)

NOW = datetime.datetime(2026, 11, 25, 15, 0, tzinfo=datetime.UTC)
ROOT = Path(__file__).resolve().parents[4]


def at(hour, minute=0):
    return datetime.datetime(2026, 11, 25, hour, minute, tzinfo=datetime.UTC)


BACKUPS = [
    {"id": "b1", "timeline": 1, "begin_wal": "000000010000000000000002", "end_lsn": "0/2000100",
     "end_time": at(1), "size_bytes": 10},
    {"id": "b2", "timeline": 1, "begin_wal": "000000010000000000000010", "end_lsn": "0/10000100",
     "end_time": at(9), "size_bytes": 20},
]


@pytest.mark.parametrize(("kwargs", "kind", "value"), [
    ({"target_time": "2026-11-25T14:02:00Z"}, "time", "2026-11-25T14:02:00.000000Z"),
    ({"target_time": "2026-11-25 15:02:00+01:00"}, "time", "2026-11-25T14:02:00.000000Z"),
    ({"target_time": "2026-11-25T13:02:00.5-0100"}, "time", "2026-11-25T14:02:00.500000Z"),
    ({"target_lsn": "0/3000148"}, "lsn", "0/3000148"),
    ({"target_lsn": "a/ff"}, "lsn", "A/FF"),
    ({"target_name": "runbook-recover-db-20261125T140300Z"}, "name", "runbook-recover-db-20261125T140300Z"),
    ({"target": "latest"}, "latest", None),
])
def test_targets_parse(kwargs, kind, value):
    target = parse_target(**kwargs, now=NOW)
    assert (target.kind, target.value) == (kind, value)


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"target_time": "2026-11-25T14:02:00"}, "no time zone"),
    ({"target_time": "2026-11-25 14:02"}, "no time zone"),
    ({"target_time": "14:02 yesterday"}, "not a date and time"),
    ({"target_time": "2026-13-45T14:02:00Z"}, "not a valid date and time"),
    ({"target_time": "2026-11-25T15:00:01Z"}, "in the future"),
    ({"target_lsn": "3000148"}, "not an LSN"),
    ({"target_lsn": "0/3000148; DROP"}, "not an LSN"),
    ({"target_name": "x'y"}, "cannot be a restore point name"),
    ({"target_name": "n" * 64}, "cannot be a restore point name"),
    ({"target": "earliest"}, "is not known"),
    ({"target_time": "2026-11-25T14:02:00Z", "target_lsn": "0/1"}, "give one recovery target, not"),
    ({}, "give a recovery target"),
])
def test_bad_targets_are_refused_with_the_reason(kwargs, says):
    with pytest.raises(RunbookError, match=re.escape(says)):
        parse_target(**kwargs, now=NOW)


def test_time_target_is_written_the_way_postgresql_reads_it():
    assert parse_target(target_time="2026-11-25T14:02:00Z", now=NOW).settings() == {
        "recovery_target_time": "2026-11-25 14:02:00.000000+00"}
    assert parse_target(target="latest", now=NOW).settings() == {}


def test_segment_names_round_trip():
    assert parse_segment("000000010000000A000000FF") == (1, 10 * 256 + 255)
    assert parse_segment("000000020000000000000003.gz") == (2, 3)
    assert parse_segment("00000002.history") is None
    assert segment_name(1, 10 * 256 + 255) == "000000010000000A000000FF"
    assert segment_of("0/3000148") == 3 and segment_of("1/0") == 256
    # 64 MiB segments: 64 per 4 GiB
    assert parse_segment("000000010000000100000003", 64 * 1024 * 1024) == (1, 67)


def test_missing_segments_and_ranges():
    available = {(1, n) for n in (2, 3, 4, 7, 9)} | {(2, 8)}
    assert missing_segments(available, 2, 2, 9) == [5, 6]
    assert missing_segments(available, 1, 2, 9) == [5, 6, 8]  # timeline 2's segment serves no timeline 1 replay
    assert ranges([5, 6, 8], 1, 16 * 1024 * 1024) == ["000000010000000000000005..000000010000000000000006",
                                                      "000000010000000000000008"]


def test_the_backup_chosen_is_the_newest_that_ends_before_the_target():
    assert choose_backup(BACKUPS, parse_target(target_time="2026-11-25T14:00:00Z", now=NOW))["id"] == "b2"
    assert choose_backup(BACKUPS, parse_target(target_time="2026-11-25T05:00:00Z", now=NOW))["id"] == "b1"
    assert choose_backup(BACKUPS, parse_target(target_lsn="0/5000000", now=NOW))["id"] == "b1"
    assert choose_backup(BACKUPS, parse_target(target="latest", now=NOW))["id"] == "b2"
    # our restore points carry their time; any other name replays from the oldest backup
    assert choose_backup(BACKUPS, parse_target(target_name="runbook-kill-long-queries-20261125T100000Z",
                                               now=NOW))["id"] == "b2"
    assert choose_backup(BACKUPS, parse_target(target_name="before-migration", now=NOW))["id"] == "b1"
    with pytest.raises(RunbookError, match="before the recoverable window .from 2026-11-25T01:00:00"):
        choose_backup(BACKUPS, parse_target(target_time="2026-11-25T00:30:00Z", now=NOW))
    with pytest.raises(RunbookError, match="no finished base backup"):
        choose_backup([], parse_target(target="latest", now=NOW))


def test_wal_plan_tells_a_gap_from_segments_not_archived_yet():
    available = {(1, n): at(10) for n in range(16, 21)}
    plan = wal_plan(BACKUPS[1], available, 22, 16 * 1024 * 1024)
    assert plan["missing"] == [] and plan["not_archived_yet"] == 2 and plan["segments"] == 7
    del available[(1, 18)]
    assert wal_plan(BACKUPS[1], available, 22, 16 * 1024 * 1024)["missing"] == ["000000010000000000000012"]


def test_the_throwaway_does_not_inherit_what_points_at_the_live_cluster(tmp_path):
    conf = tmp_path / "postgresql.conf"
    conf.write_text("data_directory = '/var/lib/postgresql/15/main'\nshared_buffers = 1GB\nport=5432\n"
                    "archive_command = 'x'\ninclude_dir 'conf.d'\n  hba_file = '/etc/x'\nwork_mem = 4MB\n")
    _filter_conf(str(conf))
    live = [line for line in conf.read_text().splitlines() if not line.startswith("#")]
    assert live == ["shared_buffers = 1GB", "work_mem = 4MB"]


def test_archive_commands_carry_no_secret_and_quote_paths():
    config = ArchiveConfig("s3://bucket/pg", "main", "/opt/tools", "/etc/rr/main")
    config.validate()
    assert config.archive_command() == (
        "AWS_SHARED_CREDENTIALS_FILE=/etc/rr/main/credentials AWS_CONFIG_FILE=/etc/rr/main/config "
        "/opt/tools/bin/barman-cloud-wal-archive -P runbook-archive --gzip s3://bucket/pg main %p")
    assert config.server_prefix() == "pg/main/" and config.bucket == "bucket"
    # A recovery's restore_command: segments fetched ahead are moved into place by the shell.
    assert config.restore_command("/w/spool") == (
        'if [ -f /w/spool/%f ]; then mv /w/spool/%f "%p"; else AWS_SHARED_CREDENTIALS_FILE=/etc/rr/main/credentials '
        "AWS_CONFIG_FILE=/etc/rr/main/config /opt/tools/bin/barman-cloud-wal-restore -P runbook-archive -p 16 "
        "--spool-dir /w/spool s3://bucket/pg main %f %p; fi")
    for bad in (ArchiveConfig("bucket/pg", "main", "/opt/t", "/a"),
                ArchiveConfig("s3://b-1/p", "ma in", "/opt/t", "/a"),
                ArchiveConfig("s3://b-1/p", "main", "relative", "/a")):
        with pytest.raises(RunbookError):
            bad.validate()


@pytest.mark.parametrize("destination", ["s3://bucket/pg;touch${IFS}/tmp/x", "s3://bucket/$(id)", "s3://b/p|sh",
                                         "s3://b/p`id`", "s3://b/p&&id", "s3://b/p>x", "s3://b/p\\x"])
def test_a_shell_character_in_the_archive_destination_is_refused_and_would_be_quoted(destination):
    """archive_command runs through PostgreSQL's shell as the server's OS user: the destination may hold none of a
    shell's special characters, and every word of the command is quoted besides."""
    config = ArchiveConfig(destination, "main", "/opt/tools", "/etc/rr/main")
    with pytest.raises(RunbookError, match="is not an S3 URL"):
        config.validate()
    words = shlex.split(config.archive_command())
    assert words[2:] == ["/opt/tools/bin/barman-cloud-wal-archive", "-P", "runbook-archive", "--gzip", destination,
                         "main", "%p"], words
    assert shlex.split(config.restore_command("/w/spool dir"))[3] == "/w/spool dir/%f"


def test_the_archive_tools_pins_agree_with_requirements_lock():
    """The tools' own virtualenv (roles/pg_archive/files/barman-cloud.lock) and the project's lock pin the same
    versions of what both hold."""
    def pins(path):
        out = {}
        for line in path.read_text().splitlines():
            pinned = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==([^\s\\;]+)", line)
            if pinned:
                out[pinned.group(1).lower().replace("_", "-").replace(".", "-")] = pinned.group(2)
        return out
    tools = pins(ROOT / "roles/pg_archive/files/barman-cloud.lock")
    project = pins(ROOT / "requirements-dev.lock")
    assert tools["barman"] == "3.19.1"  # 3.20 needs Python 3.12
    # Every pin carries its hashes: pip installs the tools in hash-checking mode.
    text = (ROOT / "roles/pg_archive/files/barman-cloud.lock").read_text()
    assert text.count("--hash=sha256:") >= len(tools) and len(tools) >= 8, tools
    assert {name: (version, project[name]) for name, version in tools.items()
            if name in project and project[name] != version} == {}


def test_retention_runs_the_engine_only_when_the_window_can_remove_something():
    from ansible_collections.runbook.recovery.plugins.module_utils.pg_archive import retention_may_delete

    def ended(*days_ago):
        return [{"end_time": NOW - datetime.timedelta(days=d)} for d in days_ago]

    assert not retention_may_delete(ended(1, 2, 3), 7, 1, NOW)  # all inside the window
    assert not retention_may_delete(ended(1, 8), 7, 1, NOW)  # the one before the window is kept
    assert retention_may_delete(ended(1, 8, 9), 7, 1, NOW)
    assert not retention_may_delete(ended(8, 9), 7, 2, NOW)  # the minimum redundancy keeps both


def test_a_work_directory_someone_else_could_have_planted_is_refused_and_links_are_never_followed(tmp_path):
    """The PITR work directory sits at a predictable path: one this run did not make safely (a link, another user's,
    writable by others) is refused; one it makes is 0711; a leftover that is a link is never followed."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    made = tmp_path / "made" / "runbook-pitr"
    assert private_work_dir(str(made)) == str(made)
    assert oct(made.stat().st_mode & 0o777) == "0o711" and made.stat().st_uid == os.geteuid()

    linked = tmp_path / "linked"
    linked.symlink_to(victim)
    with pytest.raises(RunbookError, match="is a symbolic link"):
        private_work_dir(str(linked))
    open_to_all = tmp_path / "open"
    open_to_all.mkdir()
    open_to_all.chmod(0o777)
    with pytest.raises(RunbookError, match="may be written by others"):
        private_work_dir(str(open_to_all))
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o755)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(RunbookError, match="belongs to uid 65534"):
            private_work_dir(str(theirs))
        with pytest.raises(RunbookError):
            remove_leftovers(str(theirs), None)

    (made / "runbook-pitr-planted").symlink_to(victim)
    assert remove_leftovers(str(made), None) == []
    assert (victim / "precious").read_text() == "keep me" and sorted(p.name for p in victim.iterdir()) == ["precious"]
