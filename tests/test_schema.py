from __future__ import annotations

from pathlib import Path

import pytest

from annotate.errors import PromptError
from annotate.prompts.rubrics import ParseFailure, load_rubric, parse_output

RUBRICS = Path(__file__).resolve().parent.parent / "rubrics"


def test_json_schema_is_generated_from_the_rubric_values() -> None:
    rubric = load_rubric(RUBRICS / "initial_state.yaml")
    assert rubric.json_schema == {
        "type": "object",
        "properties": {
            "initial_sentiment": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
            "initial_urgency": {"type": "integer", "enum": [1, 2, 3]},
        },
        "required": ["initial_sentiment", "initial_urgency"],
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    "task", ["empathy", "information_seeking", "solution_provision", "proactivity", "initial_state", "round_sentiment"]
)
def test_every_shipped_rubric_loads(task: str) -> None:
    rubric = load_rubric(RUBRICS / f"{task}.yaml")
    assert rubric.task == task
    assert rubric.variables


@pytest.mark.parametrize(
    ("text", "kind", "fragment"),
    [
        ('{"empathy": 4}', "schema_error", "empathy"),
        ('{"empathy": "3"}', "schema_error", "empathy"),
        ('{"empathy": 3, "why": "x"}', "schema_error", "why"),
        ("{}", "schema_error", "empathy"),
        ('{"empathy": 3', "parse_error", "not valid JSON"),
        ("three", "parse_error", "not valid JSON"),
        ("   ", "parse_error", "not valid JSON"),
    ],
)
def test_parse_rejects_answers_outside_the_schema(text: str, kind: str, fragment: str) -> None:
    rubric = load_rubric(RUBRICS / "empathy.yaml")
    with pytest.raises(ParseFailure) as failure:
        parse_output(rubric, text)
    assert failure.value.kind == kind
    assert fragment in failure.value.message


def test_parse_accepts_valid_answers_with_or_without_whitespace() -> None:
    rubric = load_rubric(RUBRICS / "empathy.yaml")
    assert parse_output(rubric, '{"empathy":3}') == {"empathy": 3}
    assert parse_output(rubric, '{ "empathy" : 1 }\n') == {"empathy": 1}


def test_rubric_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "empathy.yaml"
    bad.write_text("task: empathy\ntitle: t\nunit: somewhere\nmeasures: m\nvariables: {}\nthin_evidence: t\n")
    with pytest.raises(PromptError, match=r"empathy.yaml: field 'unit'"):
        load_rubric(bad)
    bad.write_text("task: [unclosed\n")
    with pytest.raises(PromptError, match=r"empathy.yaml: not valid YAML .* at line 2"):
        load_rubric(bad)
    renamed = tmp_path / "other.yaml"
    renamed.write_text((RUBRICS / "empathy.yaml").read_text())
    with pytest.raises(PromptError, match="does not match the task"):
        load_rubric(renamed)
