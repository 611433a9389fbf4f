"""Tests of cdm_exporter.logs: both formats, one line per record whatever the message, redaction."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from cdm_exporter import logs
from cdm_exporter.config import Config, Secret, TargetConfig, TokenAuthConfig
from cdm_exporter.logs import (
    FORMATS,
    JsonFormatter,
    LogfmtFormatter,
    RedactingFilter,
    redact_secrets,
    setup_logging,
)

HOSTILE = [
    "plain",
    "two words",
    'say "hi"',
    "back\\slash",
    "line\nbreak",
    "carriage\r\nreturn",
    "tab\there",
    "nul\x00byte",
    "escape\x1b[31mred",
    "separators\u2028and\u2029more\x85nel\x0bvt\x0cff\x1cfs",
    "ts=2000-01-01T00:00:00.000Z level=error msg=forged",
    '" level=error msg="forged',
    "",
    "ünïcödé 数据迁移 🚀",
    "key=value",
    "%s %d %(name)s",  # format directives in a message logged without args
]


def emit(fmt: str, *messages: str, level: str = "debug", **extra: object) -> str:
    stream = io.StringIO()
    setup_logging(level, fmt, stream)
    log = logging.getLogger("cdm_exporter.test")
    for message in messages:
        log.info(message, extra=extra or None)
    return stream.getvalue()


_LOGFMT_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?: |$)')
_UNESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def parse_logfmt(line: str) -> list[tuple[str, str]]:
    """A strict reader of the format: the whole line must be key=value pairs."""
    pairs, position = [], 0
    while position < len(line):
        match = _LOGFMT_PAIR.match(line, position)
        assert match, f"not logfmt at {position}: {line!r}"
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(
                r"\\(u[0-9a-f]{4}|.)",
                lambda m: chr(int(m.group(1)[1:], 16)) if len(m.group(1)) == 5 else _UNESCAPES[m.group(1)],
                value[1:-1],
            )
        pairs.append((match.group(1), value))
        position = match.end()
    return pairs


# --------------------------------------------------------------------------- text (logfmt)


def test_text_line_shape() -> None:
    line = emit("text", "collection done", target="prod", status=200, request_id="r-1")
    assert re.fullmatch(
        r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=info logger=cdm_exporter\.test "
        r'msg="collection done" target=prod status=200 request_id=r-1\n',
        line,
    ), line


@pytest.mark.parametrize("message", HOSTILE)
def test_text_keeps_any_message_on_one_line_and_round_trips(message: str) -> None:
    output = emit("text", message, message, target=message)
    lines = output.split("\n")
    assert lines[-1] == ""
    assert len(lines) == 3
    assert len(output.splitlines()) == 2  # no Unicode line break either
    for line in lines[:2]:
        fields = parse_logfmt(line)
        assert [key for key, _ in fields] == ["ts", "level", "logger", "msg", "target"]
        assert dict(fields)["msg"] == message
        assert dict(fields)["target"] == message
        assert dict(fields)["level"] == "info"


def test_text_exception_stays_on_one_line() -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream)
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logging.getLogger("x").exception("failed")
    (line,) = stream.getvalue().splitlines()
    fields = dict(parse_logfmt(line))
    assert fields["level"] == "error"
    assert fields["exc"].startswith("Traceback (most recent call last):\n")
    assert fields["exc"].endswith("ValueError: bad\nthing")


def test_extras_cannot_forge_fixed_fields() -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream)
    extra = {"level": "error", "ts": "x", "logger": "y", "odd key=": "v"}
    logging.getLogger("x").info("m", extra=extra)
    fields = parse_logfmt(stream.getvalue().rstrip("\n"))
    assert [key for key, _ in fields] == [
        "ts",
        "level",
        "logger",
        "msg",
        "extra_level",
        "extra_ts",
        "extra_logger",
        "odd_key_",
    ]
    assert dict(fields)["level"] == "info"


@pytest.mark.parametrize("fmt", FORMATS)
def test_fields_without_a_value_are_left_out(fmt: str) -> None:
    (line,) = emit(fmt, "API call failed", status=None, code=None, error="refused", repeats=0).splitlines()
    assert "None" not in line and "null" not in line
    assert "status" not in line and "code" not in line
    assert "refused" in line and "repeats" in line  # 0 is a value


# --------------------------------------------------------------------------- json


def test_json_line_shape() -> None:
    (line,) = emit("json", "collection done", target="prod", status=429, kind="throttled").splitlines()
    record = json.loads(line)
    assert list(record) == ["ts", "level", "logger", "msg", "target", "status", "kind"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])
    assert record["level"] == "info"
    assert record["logger"] == "cdm_exporter.test"
    assert record["msg"] == "collection done"
    assert (record["target"], record["status"], record["kind"]) == ("prod", 429, "throttled")


@pytest.mark.parametrize("message", HOSTILE)
def test_json_keeps_any_message_on_one_line_and_round_trips(message: str) -> None:
    output = emit("json", message, message, endpoint=message)
    assert len(output.splitlines()) == 2
    for line in output.splitlines():
        record = json.loads(line)
        assert (record["msg"], record["endpoint"]) == (message, message)


def test_json_copes_with_values_json_cannot_hold() -> None:
    output = emit("json", "m", ratio=float("nan"), obj=object(), nested={(1, 2): "tuple key"})
    record = json.loads(output, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert record["ratio"] == "nan"
    assert record["obj"].startswith("<object object")


def test_lone_surrogates_do_not_break_the_stream() -> None:
    for fmt in ("text", "json"):
        output = emit(fmt, "bad \udcff name")
        output.encode("utf-8")  # would raise if a surrogate got through
        assert "\\udcff" in output


def test_exception_in_json() -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream)
    try:
        raise KeyError("k")
    except KeyError:
        logging.getLogger("x").error("failed", exc_info=True)
    record = json.loads(stream.getvalue())
    assert "KeyError: 'k'" in record["exc"]


# --------------------------------------------------------------------------- setup


def test_level_filters_records() -> None:
    stream = io.StringIO()
    setup_logging("WARNING", "text", stream)
    logging.getLogger("a").info("hidden")
    logging.getLogger("a.b").warning("shown")
    assert [dict(parse_logfmt(line))["msg"] for line in stream.getvalue().splitlines()] == ["shown"]


@pytest.mark.parametrize(
    ("level", "fmt", "fragment"),
    [
        ("verbose", "text", "invalid log level 'verbose'; choose one of debug, info, warning, error"),
        ("info", "logfmt", "invalid log format 'logfmt'; choose one of text, json"),
    ],
)
def test_bad_level_or_format(level: str, fmt: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        setup_logging(level, fmt, io.StringIO())


def test_setup_twice_replaces_its_handler_keeps_others_and_filters() -> None:
    root = logging.getLogger()
    # another test may have run setup_logging already: its handler is ours, not foreign
    foreign = len([h for h in root.handlers if h.get_name() != logs._HANDLER_NAME])
    first = io.StringIO()
    setup_logging("info", "text", first)
    redact_secrets(["SECRET-again"])
    second = io.StringIO()
    setup_logging("info", "json", second)
    assert len(root.handlers) == foreign + 1
    logging.getLogger("x").info("value SECRET-again")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["msg"] == "value ***"


def test_warnings_module_is_captured() -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream)
    logging.captureWarnings(True)
    import warnings

    warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    assert "deprecated thing" in stream.getvalue()
    assert "logger=py.warnings" in stream.getvalue()


def test_formatters_are_usable_alone() -> None:
    record = logging.LogRecord("n", logging.ERROR, __file__, 1, "a %s", ("b",), None)
    assert 'msg="a b"' in LogfmtFormatter().format(record)
    assert json.loads(JsonFormatter().format(record))["msg"] == "a b"


# --------------------------------------------------------------------------- redaction


def _record(msg: str, args: tuple[object, ...] = (), **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("n", logging.INFO, __file__, 1, msg, args or None, None)
    record.__dict__.update(extra)
    return record


def test_redacts_message_and_args() -> None:
    redacting = RedactingFilter(["SECRET-1", "SECRET-2"])
    record = _record("token %s and %s and SECRET-2", ("SECRET-1", 5))
    assert redacting.filter(record) is True
    assert record.getMessage() == "token *** and 5 and ***"


def test_redacts_extras_exceptions_and_stacks() -> None:
    redacting = RedactingFilter(["SECRET-1"])
    try:
        raise RuntimeError("auth failed with SECRET-1")
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "n", logging.ERROR, __file__, 1, "m", None, sys.exc_info(), sinfo="at SECRET-1"
        )
    record.__dict__.update(endpoint="https://SECRET-1@x", error=RuntimeError("SECRET-1"), status=401)
    redacting.filter(record)
    for formatter in (LogfmtFormatter(), JsonFormatter(), logging.Formatter()):
        assert "SECRET-1" not in formatter.format(record)
    assert record.__dict__["endpoint"] == "https://***@x"
    assert record.__dict__["status"] == 401  # untouched, not turned into a string


def test_longest_secret_wins_and_empty_ones_are_ignored() -> None:
    redacting = RedactingFilter(["abc", "abcdef", ""])
    assert redacting.redact("xabcdefx abc") == "x***x ***"  # not "x***defx"
    assert RedactingFilter(["", ""]).redact("nothing to hide") == "nothing to hide"


def test_regex_characters_in_secrets_are_literal() -> None:
    assert RedactingFilter(["a.c|d*"]).redact("abc a.c|d* d") == "abc *** d"


def test_broken_record_does_not_raise_from_the_filter() -> None:
    record = _record("%d", ("not a number",))
    assert RedactingFilter(["x"]).filter(record) is True


def test_config_secrets_are_redacted_from_output() -> None:
    pid = "0123456789abcdef0123456789abcdef"
    config = Config(
        targets=(
            TargetConfig(
                pid, "cn-north-4", pid, "https://a.b", "https://c.d", TokenAuthConfig(Secret("tok-SECRET"))
            ),
        )
    )
    stream = io.StringIO()
    setup_logging("debug", "text", stream)
    installed = redact_secrets(config.secret_values())
    assert any(installed in h.filters for h in logging.getLogger().handlers)
    logging.getLogger("cdm_exporter.api.client").warning(
        "IAM said %s", "bad token tok-SECRET", extra={"hdr": "tok-SECRET"}
    )
    output = stream.getvalue()
    assert "tok-SECRET" not in output
    assert 'msg="IAM said bad token ***" hdr=***' in output


def test_redaction_can_be_replaced() -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream)
    redact_secrets(["old-secret"])
    redact_secrets(["new-secret"])
    logging.getLogger("x").info("old-secret new-secret")
    assert 'msg="old-secret ***"' in stream.getvalue()


def test_secrets_can_be_reassigned_after_a_reload() -> None:
    redacting = RedactingFilter(["old-secret"])
    redacting.secrets = ("new-secret", "")
    assert redacting.secrets == ("new-secret", "")
    assert redacting.redact("old-secret new-secret") == "old-secret ***"
