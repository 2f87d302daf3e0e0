import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    derived_name,
    failure_details,
    parse_duration,
    parse_size,
    validate_name,
)


@pytest.mark.parametrize("value, seconds", [
    ("90", 90), (90, 90), ("90s", 90), ("10m", 600), ("10min", 600), ("12h", 43200), ("7d", 604800),
    ("1w", 604800), ("1.5h", 5400), ("250ms", 0.25), (" 3 h ", 10800),
])
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["-5m", "soon", "5 parsecs", "", True, -1])
def test_parse_duration_refuses(value):
    with pytest.raises(RunbookError):
        parse_duration(value)


@pytest.mark.parametrize("value, size", [
    ("0", 0), ("512", 512), ("1k", 1024), ("512MB", 512 * 1024 ** 2), ("2GiB", 2 * 1024 ** 3), ("1.5G", 1610612736),
    ("100PB", 100 * 1024 ** 5),
])
def test_parse_size(value, size):
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["lots", "-1GB", "1XB"])
def test_parse_size_refuses(value):
    with pytest.raises(RunbookError):
        parse_size(value)


@pytest.mark.parametrize("name", ["chat", "chat_dev", "Chat-2", "_x", "a" * 63, "données", "my chat", "chat.db",
                                  "1chat", "é" * 31 + "a", "日本語"])
def test_validate_name_accepts_what_postgres_accepts(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "chat'; DROP TABLE x; --", "a;b", '"q"', "../x", "x/y", "a\\b", "a`b",
                                  "tab\there", "new\nline", "nul\x00", ".", "..", " chat", "a" * 64, "é" * 32])
def test_validate_name_refuses(name):
    with pytest.raises(RunbookError) as info:
        validate_name(name)
    assert repr(name) in str(info.value) or not name


def test_a_name_over_63_bytes_is_refused_saying_bytes():
    with pytest.raises(RunbookError, match="64 bytes long in UTF-8"):
        validate_name("é" * 32)


@pytest.mark.parametrize("base", ["chat", "d" * 63, "é" * 31, "données" * 9])
@pytest.mark.parametrize("suffix", ["__recovery_staging", "__pre_recovery_20261123T051200Z", "__verify_abcdef"])
def test_derived_names_fit_and_stay_distinct(base, suffix):
    name = derived_name(base, suffix)
    assert len(name.encode()) <= 63 and name.endswith(suffix)
    assert derived_name(base, suffix) == name  # the same base always gives the same name


def test_long_names_that_share_a_beginning_get_different_derived_names():
    first, second = "a" * 50 + "_orders", "a" * 50 + "_people"
    assert derived_name(first, "__recovery_staging") != derived_name(second, "__recovery_staging")


def test_short_names_are_kept_as_they_are():
    assert derived_name("chat", "__recovery_staging") == "chat__recovery_staging"


def test_failure_details_drops_msg():
    assert failure_details({"msg": "plan", "a": 1}, {"b": 2}) == {"a": 1, "b": 2}
