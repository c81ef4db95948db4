"""docs/asyncapi.yaml and docs/schemas/ against the code: they are what `metre asyncapi` writes
today, the document is valid AsyncAPI 3.0 (the AsyncAPI Initiative's own JSON Schema, vendored
in tests/vendor/asyncapi), and what the producers encode validates against the payload schemas,
as do the examples of docs/events.md (records of earlier releases stay valid within v1)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest
import yaml
from hypothesis import given

from metre import asyncapi
from metre.cli import main
from metre.contracts.bus import Record
from metre.contracts.events import RetractEvent, encode
from metre.contracts.wire import VERSION
from metre.processors.runner import dlq_message
from tests.contracts.test_events import events

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
ASYNCAPI_SCHEMA = ROOT / "tests" / "vendor" / "asyncapi" / "3.0.0.json"

SCHEMA_OF_TYPE = {
    "commit": "commit-event",
    "retract": "retract-event",
    "tags": "tags-event",
    "metric-update": "metric-update-event",
}


def payload_validator(stem: str) -> jsonschema_rs.Validator:
    """The checked-in schema `docs/schemas/<stem>.v1.json`, formats (date-time) asserted."""
    schema = orjson.loads((DOCS / "schemas" / f"{stem}.v{VERSION}.json").read_bytes())
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def errors_of(value: dict[str, Any]) -> list[str]:
    """What the schema of `value`'s type finds wrong with it."""
    v = payload_validator(SCHEMA_OF_TYPE[value["type"]])
    return [f"{list(e.instance_path)}: {e.message}" for e in v.iter_errors(value)]


def test_checked_in_files_are_what_the_code_generates() -> None:
    stale = asyncapi.stale(DOCS)
    assert stale == [], f"{stale} differ from the code: run `metre asyncapi` and commit them"


def test_cli_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asyncapi", "--check", "--out", str(tmp_path)]) == 1
    assert "differs from the code" in capsys.readouterr().out
    assert main(["asyncapi", "--out", str(tmp_path)]) == 0
    assert main(["asyncapi", "--check", "--out", str(tmp_path)]) == 0
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")} == set(
        asyncapi.render()
    )
    (tmp_path / "schemas" / f"retract-event.v{VERSION}.json").write_text("{}")
    assert main(["asyncapi", "--check", "--out", str(tmp_path)]) == 1


def asyncapi_validator() -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(orjson.loads(ASYNCAPI_SCHEMA.read_bytes()))


def test_document_is_valid_asyncapi_3() -> None:
    doc = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    assert doc["asyncapi"] == "3.0.0"
    validator = asyncapi_validator()
    assert [list(e.instance_path) for e in validator.iter_errors(doc)] == []
    # The validator can fail: a misspelt field, a binding of the wrong shape, a bad schema.
    for path, value in (
        (("channels", "commits", "adress"), "metre.commits"),
        (("components", "messages", "commitEvent", "bindings", "kafka", "key"), 5),
        (("components", "schemas", "CommitEvent", "required"), "v"),
        (("operations", "publishCommitEvents", "action"), "publish"),
    ):
        broken = copy.deepcopy(doc)
        node = broken
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        assert not validator.is_valid(broken), path


def test_document_covers_every_topic_and_its_messages() -> None:
    doc = asyncapi.document()
    assert {c["address"] for c in doc["channels"].values()} == {
        "{prefix}.commits",
        "{prefix}.commits.dlq",
        "{prefix}.metric-updates",
    }
    assert doc["info"]["version"].startswith(f"{VERSION}.")
    # the component schemas are the standalone files' (same source)
    components = doc["components"]["schemas"]
    for name, schema in asyncapi.payload_schemas().items():
        title = schema["title"]
        assert components[title]["properties"].keys() == schema["properties"].keys(), name


def test_examples_of_the_document_validate() -> None:
    messages = asyncapi.document()["components"]["messages"]
    seen = 0
    for name, message in messages.items():
        for example in message.get("examples", []):
            assert errors_of(example["payload"]) == [], (name, example["name"])
            seen += 1
    assert seen >= 5


def test_examples_of_events_md_validate() -> None:
    """The JSON examples of docs/events.md (some written by earlier releases) stay valid."""
    text = (DOCS / "events.md").read_text()
    blocks = [orjson.loads(b) for b in re.findall(r"```json\n(.*?)```", text, flags=re.S)]
    assert {b["type"] for b in blocks} == set(SCHEMA_OF_TYPE)
    for b in blocks:
        assert errors_of(b) == [], b


@given(events)
def test_every_encoded_commit_event_validates(e: Any) -> None:
    assert errors_of(orjson.loads(encode(e))) == []


def test_the_schemas_refuse_what_decode_refuses() -> None:
    good = orjson.loads(encode(RetractEvent(7, "ab" * 20)))
    assert errors_of(good) == []
    for field, value in (("v", 2), ("repo_id", 0), ("sha", "AB" * 20), ("id", "7:x")):
        assert errors_of({**good, field: value}), field
    assert errors_of({**good, "note": "unknown fields are allowed"}) == []
    commit = asyncapi.document()["components"]["messages"]["commitEvent"]["examples"][0]
    value = commit["payload"]
    assert errors_of(value) == []
    assert errors_of({**value, "author": {**value["author"], "time": "yesterday"}})
    assert errors_of({**value, "files": [{**value["files"][0], "change": "R"}]})
    assert errors_of({**value, "files": [{**value["files"][0], "added": -1}]})


def test_dead_letter_headers_validate() -> None:
    record = Record("metre.commits", 3, 1234, b"7", b"not json", (("trace", b"x"),))
    headers = dict(dlq_message(record, "not JSON: unexpected character").headers)
    assert headers["trace"] == b"x"  # the original headers come first, kept
    added = {k: v.decode() for k, v in headers.items() if k != "trace"}
    assert list(payload_validator("dead-letter-headers").iter_errors(added)) == []
    assert (added["partition"], added["offset"]) == ("3", "1234")
