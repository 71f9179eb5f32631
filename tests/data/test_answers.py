"""Answer parsing and scoring: the semantics shared by the accuracy reward and the scorer."""
from __future__ import annotations

import pytest

from hs_rl.data.answers import (
    PATTERN_TO_TYPE,
    extract_answer,
    normalize_key,
    option_letters,
    parse_letters,
    parse_number,
    question_type_from_pattern,
    score_answer,
)

OPTS = ["A. happy", "B. sad", "C. angry", "D. calm"]


@pytest.mark.parametrize("text, expected", [
    ("<think>x</think><answer> B </answer>", "B"),
    ("<answer>A</answer> then <answer>C</answer>", "C"),
    ("<answer>x<answer>D</answer></answer>", "D"),
    ("  B. sad ", "B. sad"),
    ("<answer>B", "<answer>B"),
    ("", ""),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_option_letters_with_and_without_space():
    assert option_letters(["A.son/father", "B.mother/son", "C. friends"]) == ["A", "B", "C"]


@pytest.mark.parametrize("answer, expected", [
    ("B", ["B"]), ("b", ["B"]), ("B.", ["B"]), ("B. sad", ["B"]), ("B) sad", ["B"]), ("(B)", ["B"]),
    ("B sad", ["B"]), ("B: sad", ["B"]), ("**B**", ["B"]), ("Answer: B", ["B"]),
    ("A, C", ["A", "C"]), ("AC", ["A", "C"]), ("A and C", ["A", "C"]), ("A B C D", list("ABCD")),
    ("ABCD", list("ABCD")), ("A. happy, C. angry", ["A", "C"]),
    ("Both are sad", []), ("A person is sad", []), ("E", []), ("A, E", []), ("B. happy", []), ("", []),
])
def test_parse_letters(answer, expected):
    assert parse_letters(answer, option_letters(OPTS), OPTS) == expected


@pytest.mark.parametrize("answer, expected", [
    ("3", 3), ("10", 10), ("3 people", 3), ("three", 3), ("3.", 3), ("3 or 4", None), ("many", None), ("", None),
])
def test_parse_number(answer, expected):
    assert parse_number(answer) == expected


@pytest.mark.parametrize("pred, key, qtype, expected", [
    ("B", "B", "single_choice", 1.0),
    ("<answer>B. sad</answer>", "B", "single_choice", 1.0),
    ("A B C D", "B", "single_choice", 0.0),
    ("ABCD", "B", "single_choice", 0.0),
    ("A, B", "B", "single_choice", 0.0),
    ("C", "B", "single_choice", 0.0),
    ("E", "B", "single_choice", 0.0),
    ("", "B", "single_choice", 0.0),
    ("A and C", "AC", "multi_choice", 1.0),
    ("CA", "AC", "multi_choice", 1.0),
    ("C", "AC", "multi_choice", 0.5),
    ("A, B", "AC", "multi_choice", 0.0),
    ("A, C, E", "AC", "multi_choice", 0.0),
    ("", "AC", "multi_choice", 0.0),
    ("10", "10", "number", 1.0),
    ("1", "10", "number", 0.0),
    ("3 people", "3", "number", 1.0),
    (" Yes. ", "yes", "yes_no", 1.0),
    ("NO", "No", "yes_no", 1.0),
    ("Yes, he is", "Yes", "yes_no", 0.0),
])
def test_score_answer(pred, key, qtype, expected):
    assert score_answer(pred, key, qtype, OPTS if "choice" in qtype else [], tagged=False) == expected


def test_tagged_requires_answer_block():
    assert score_answer("B", "B", "single_choice", OPTS, tagged=True) == 0.0
    assert score_answer("<answer>B</answer>", "B", "single_choice", OPTS, tagged=True) == 1.0


def test_normalize_key_and_patterns():
    assert normalize_key("A,C", "multi_choice") == "AC"
    assert normalize_key("ca", "multi_choice") == "AC"
    assert normalize_key(7, "number") == "7"
    assert normalize_key("Yes", "yes_no") == "yes"
    assert set(PATTERN_TO_TYPE.values()) == {"single_choice", "multi_choice", "number", "yes_no"}
    assert question_type_from_pattern("Judgment question (Yes or No)") == "yes_no"
    with pytest.raises(ValueError):
        normalize_key("A", "essay")
    with pytest.raises(ValueError):
        score_answer("A", "A", "essay", OPTS, tagged=False)
