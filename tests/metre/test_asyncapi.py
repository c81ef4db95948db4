"""docs/asyncapi.yaml and docs/schemas/ against the code: they are what `metre asyncapi` writes
today, the document is valid AsyncAPI 3.0 (the AsyncAPI Initiative's own JSON Schema, vendored
in tests/vendor/asyncapi), and what the producers encode validates against the payload schemas,
as do the examples of docs/events.md (records of earlier releases stay valid within v1)."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import jsonschema_rs
import orjson
import pytest
import yaml
from hypothesis import given

from metre import asyncapi
from metre.cli import main
from metre.contracts.bus import Record
from metre.contracts.events import (
    BlobDelta,
    CommitEvent,
    EventError,
    FileChange,
    MergeFile,
    Person,
    RetractEvent,
    decode_event,
    encode,
)
from metre.contracts.tags import ReleaseTag, TagsEvent, encode_tags
from metre.contracts.wire import VERSION, EventRecord
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


def test_the_reader_validates_with_the_schemas_own_shapes() -> None:
    """decode_event's validator is a union of exactly the shapes the commits topic's payload
    schemas are generated from (so a constraint added to one is in the other)."""
    union, _ = get_args(EventRecord)
    assert get_args(union) == tuple(
        asyncapi.PAYLOADS[s] for s in ("commit-event", "retract-event", "tags-event")
    )


SHA = "0123456789abcdef" * 2 + "01234567"


def _commit_record() -> dict[str, Any]:
    t = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    ada = Person("Ada", "ada@example.org", t, "99999999999999 +0000")
    blob = BlobDelta(5, 0, 5, 2)
    f = FileChange("caf\\xe9.txt", 3, 1, False, "M", blob)
    merge = MergeFile("a", -2, 1, BlobDelta(-5, 1, 0))
    return orjson.loads(encode(CommitEvent(42, SHA, (SHA, SHA), ada, ada, "s", (f,), (merge,))))  # type: ignore[no-any-return]


def _tags_record() -> dict[str, Any]:
    t = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    return orjson.loads(encode_tags(TagsEvent(42, (ReleaseTag("v1", SHA, t, True),))))  # type: ignore[no-any-return]


def _at(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`d` with the key at dotted `path` (list indexes as numbers) set, or removed (DROP)."""
    d = copy.deepcopy(d)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = d
    for p in parents:
        node = node[p]
    if value is DROP:
        del node[last]
    else:
        node[last] = value
    return d


DROP = object()
BIG = 2**63

AGREED = [
    # the reader and the schemas accept these ...
    ("commit", "note", "unknown fields are ignored", True),
    ("commit", "path_form", 1, True),
    ("commit", "files.0.blob", DROP, True),
    ("commit", "files.0.blob.code", DROP, True),
    ("commit", "author.time_raw", DROP, True),
    ("commit", "author.time_raw", "x" * 64, True),
    ("commit", "files.0.added", BIG - 1, True),
    ("commit", "merge_files.0.lines", -BIG, True),
    ("commit", "merge_files", DROP, True),
    ("commit", "path_form", DROP, True),
    ("tags", "tags", [], True),
    # ... and both refuse these
    ("commit", "v", 2, False),
    ("commit", "v", True, False),
    ("commit", "repo_id", 0, False),
    ("commit", "repo_id", "42", False),
    ("commit", "repo_id", True, False),
    ("commit", "repo_id", BIG, False),
    ("commit", "sha", SHA.upper(), False),
    ("commit", "sha", SHA + "\n", False),
    ("commit", "parents.0", "nope", False),
    ("commit", "parents", DROP, False),
    ("commit", "author", DROP, False),
    ("commit", "author.email", 5, False),
    ("commit", "author.time", "yesterday", False),
    ("commit", "author.time", "2024-03-01T09:30:00", False),
    ("commit", "committer.time", "2024-03-01T09:30:00+01:00[Europe/Paris]", False),
    ("commit", "author.time_raw", "x" * 65, False),
    ("commit", "summary", None, False),
    ("commit", "path_form", 3, False),
    ("commit", "path_form", "2", False),
    ("commit", "path_form", True, False),
    ("commit", "files", "f", False),
    ("commit", "files.0.path", "", False),
    ("commit", "files.0.added", -1, False),
    ("commit", "files.0.added", 1.5, False),
    ("commit", "files.0.removed", BIG, False),
    ("commit", "files.0.binary", 0, False),
    ("commit", "files.0.change", "R", False),
    ("commit", "files.0.change", [], False),
    ("commit", "files.0.blob", [5, 0, 5], False),
    ("commit", "files.0.blob.bytes", "5", False),
    ("commit", "files.0.blob.text_bytes", DROP, False),
    ("commit", "files.0.blob.code", "1", False),
    ("commit", "merge_files", None, False),
    ("commit", "merge_files.0.presence", False, False),
    ("tags", "tags.0.name", "", False),
    ("tags", "tags.0.sha", "v1", False),
    ("tags", "tags.0.time", "yesterday", False),
    ("tags", "tags.0.annotated", 1, False),
    ("tags", "repo_id", -1, False),
]


@pytest.mark.parametrize(("kind", "path", "value", "valid"), AGREED)
def test_the_reader_and_the_schemas_agree(kind: str, path: str, value: Any, valid: bool) -> None:
    base = _commit_record() if kind == "commit" else _tags_record()
    assert errors_of(base) == []
    decode_event(orjson.dumps(base))
    d = _at(base, path, value)
    assert (errors_of(d) == []) is valid
    if valid:
        decode_event(orjson.dumps(d))
    else:
        with pytest.raises(EventError, match=_where(path)):
            decode_event(orjson.dumps(d))


def _where(path: str) -> str:
    """What a refusal of the key at dotted `path` starts its reason with (`files[0].added:`),
    or says of the version."""
    if path == "v":
        return "version"
    where = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path.split(".")).lstrip(".")
    return re.escape(where) + ":"


READER_ONLY = [
    # rules a schema cannot spell: the reader refuses, the schemas accept
    ("commit", "files.0.path", "a\\b", False),  # not in path form 2
    ("commit", "parents", [SHA], False),  # merge_files on a commit that is not a merge
    ("commit", "files.0.blob.binary", 2, False),  # a file's blob.binary is a difference of 0/1
    ("commit", "v", 1.0, False),  # JSON Schema's const 1 takes 1.0; the reader wants the integer
    ("tags", "tags", [_tags_record()["tags"][0]] * 2, False),  # a name twice
    # the reader's leniencies (docs/events.md): it accepts, the schemas refuse
    ("commit", "files.0.binary", DROP, True),
    ("commit", "files.0.change", DROP, True),
    ("commit", "summary", DROP, True),
    ("commit", "files", DROP, True),
    ("commit", "id", DROP, True),
    ("commit", "id", 5, True),
    ("commit", "is_merge", "yes", True),
    ("commit", "author.time_raw", None, True),
    ("commit", "author.time", "2024-03-01 09:30:00+00:00", True),  # fromisoformat's forms
    ("commit", "author.time", "20240301T093000+0000", True),
    ("commit", "files.0.blob", None, True),
    ("commit", "files.0.blob.code", None, True),
    ("tags", "id", DROP, True),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "path", "value", "accepted"), READER_ONLY)
def test_where_the_reader_and_the_schemas_differ(
    kind: str, path: str, value: Any, accepted: bool
) -> None:
    base = _commit_record() if kind == "commit" else _tags_record()
    d = _at(base, path, value)
    assert (errors_of(d) == []) is not accepted
    if accepted:
        decode_event(orjson.dumps(d))
    else:
        with pytest.raises(EventError):
            decode_event(orjson.dumps(d))


def test_dead_letter_headers_validate() -> None:
    record = Record("metre.commits", 3, 1234, b"7", b"not json", (("trace", b"x"),))
    headers = dict(dlq_message(record, "not JSON: unexpected character").headers)
    assert headers["trace"] == b"x"  # the original headers come first, kept
    added = {k: v.decode() for k, v in headers.items() if k != "trace"}
    assert list(payload_validator("dead-letter-headers").iter_errors(added)) == []
    assert (added["partition"], added["offset"]) == ("3", "1234")
