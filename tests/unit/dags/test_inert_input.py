"""A value from a form or a run's conf is data: template openers are refused naming the field, every string is
written !unsafe for Ansible, and each free-text form field's pattern refuses templates, quotes and semicolons."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "dags"))

from runbook_airflow import NO_TEMPLATE, PATTERNS, InputRefused, refuse_templates, unsafe_yaml  # noqa: E402

PAYLOADS = ["chat{{ lookup('pipe', 'touch /tmp/F') }}", "{% for x in range(3) %}x{% endfor %}", "a{# c #}"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_template_opener_is_refused_naming_the_field(payload):
    with pytest.raises(InputRefused, match=r"'services\[1\]\.name' holds a template opener.*Nothing was run"):
        refuse_templates({"database": "chat", "services": [{"name": "ok"}, {"name": payload}]})
    refuse_templates({"database": "données", "reason": "INC-1 {braces} and 100% sure #1"})


def test_unsafe_yaml_tags_every_string_and_keeps_the_rest():
    values = {"database": "chat{{ x }}", "n": 3, "on": True, "none": None, "list": ["a", 2], "nested": {"k": "v"},
              "quote": 'say "hi"\n\tand \\ é'}
    text = unsafe_yaml(values)
    assert text.count("!unsafe") == 4
    loaded = yaml.safe_load(text.replace("!unsafe ", ""))
    assert loaded == values


@pytest.mark.parametrize("field", sorted(PATTERNS))
@pytest.mark.parametrize("payload", PAYLOADS + ["chat'; DROP DATABASE chat; --", "a\"b", "x;y", "a{b}"])
def test_every_free_text_pattern_refuses_templates_and_syntax(field, payload):
    assert not re.search(PATTERNS[field], payload), (field, payload)


@pytest.mark.parametrize(("field", "value"), [
    ("database", "chat"), ("database", "données"), ("database", "s2_db03"), ("database", "my app"),
    ("inventory_name", "chatbot"), ("inventory_name", "chat/backend"), ("inventory_name", "chat-backend-compose"),
    ("restore_point", ""), ("restore_point", "runbook-recover-db-20261207T030000Z"),
    ("dynamodb_table", "terraform-locks"), ("lock_id", "4f1c0a4e-5b1d-4b3e-9a31-7a9f3e2c1d00"),
    ("lock_path", "acme-tfstate/network/terraform.tfstate"),
])
def test_the_names_the_inventory_uses_are_accepted(field, value):
    assert re.search(PATTERNS[field], value)


def test_the_reason_is_free_text_without_templates():
    reason = NO_TEMPLATE + r"[\s\S]*$"
    assert re.search(reason, "INC-4712: chat_messages emptied {again}, 100% sure")
    assert not any(re.search(reason, f"INC-1 {payload}") for payload in PAYLOADS)
