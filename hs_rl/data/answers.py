"""The single place model answers are parsed and compared, shared by the accuracy reward and the scorer.

Keeping one implementation means the number a checkpoint is trained towards and the number it is
reported with can never drift apart.

Decisions (documented here because both training and evaluation inherit them):

* ``extract_answer`` takes the LAST complete ``<answer>...</answer>`` block; without one, the whole text.
* Choice answers are read strictly: a bare letter, letters in a list ("A, C", "AC", "A and C", "A B"),
  or a letter followed by option text ("B. sad", "B) sad", "(B) sad", "B: sad"). A letter followed
  only by a space ("B sad", "A person ...") counts only when the rest IS that option's text, so that
  sentences beginning with a capital "A"/"I" are not read as choices. Sentences are never searched for
  letters: "Both are sad" is not "B".
* Letters outside the question's option letters make the answer wrong ("E" with options A-D).
* Numbers: the answer must contain exactly one integer (``"10"`` is ten, ``"3 people"`` is three,
  ``"3 or 4"`` is unreadable); a lone number word "zero".."ten" is also read.
* Yes/no: equality after dropping case, whitespace and punctuation ("Yes." == "yes").
* An empty or unreadable answer is wrong (0.0), never skipped.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from hs_rl.data.records import QUESTION_TYPES

# The exact question_pattern strings of the HumanSense files, shared with the converter.
PATTERN_TO_TYPE: dict[str, str] = {
    "Multiple-choice question (select one answer choice)": "single_choice",
    "Multiple-choice question (select one or more answer choices)": "multi_choice",
    "Question and answer (Arabic numerals)": "number",
    "Judgment question (Yes or No)": "yes_no",
}

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_OPEN_TAG = re.compile(r"<answer>", re.IGNORECASE)
_OPTION = re.compile(r"^\s*\(?([A-Za-z])\s*[.):：]\s*(.*)$", re.DOTALL)
_PREFIX = re.compile(r"^(?:the\s+)?(?:correct\s+|final\s+)?(?:answer|option|choice)s?\s*(?:is|are|:)\s*", re.I)
_LETTER_LIST = re.compile(r"^\(?[A-Z]\)?(?:\s*(?:,|;|/|&|\+|\band\b|\s)\s*\(?[A-Z]\)?)*$")
_CONCAT = re.compile(r"^[A-Z]{2,}$")
_LETTER = re.compile(r"[A-Z]")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
_SEGMENT_SPLIT = re.compile(r"\s*(?:[,;\n]|\band\b|&)\s*")
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten".split())}


def question_type_from_pattern(pattern: str) -> str:
    """Map an upstream question_pattern to our question type (tolerant of case and spacing)."""
    if pattern in PATTERN_TO_TYPE:
        return PATTERN_TO_TYPE[pattern]
    wanted = " ".join(str(pattern).split()).lower()
    for known, qtype in PATTERN_TO_TYPE.items():
        if known.lower() == wanted:
            return qtype
    raise ValueError(f"unknown question_pattern {pattern!r}; known: {sorted(PATTERN_TO_TYPE)}")


def extract_answer(text: str | None) -> str:
    """The last complete <answer> block's text, or the whole text, stripped (so bare answers work)."""
    if not text:
        return ""
    text = str(text)
    blocks = list(_ANSWER_BLOCK.finditer(text))
    if not blocks:
        return text.strip()
    # A nested "<answer>x<answer>B</answer>" keeps what follows the innermost opening tag.
    inner = blocks[-1].group(1)
    opens = list(_OPEN_TAG.finditer(inner))
    if opens:
        inner = inner[opens[-1].end():]
    return inner.strip()


def has_answer_block(text: str | None) -> bool:
    """Whether the text holds at least one complete <answer> block (the strict, tagged reading)."""
    return bool(text) and _ANSWER_BLOCK.search(str(text)) is not None


def option_map(options: Sequence[str] | None) -> dict[str, str]:
    """Letter -> option text for options written "A. happy" or "A.son/father"."""
    mapping: dict[str, str] = {}
    for option in options or []:
        match = _OPTION.match(str(option))
        if match and match.group(1).isupper():
            mapping.setdefault(match.group(1), match.group(2).strip())
    return mapping


def option_letters(options: Sequence[str] | None) -> list[str]:
    """The option letters, in order, read from options like "A. happy" or "A.son/father"."""
    return list(option_map(options))


def _norm_text(text: str) -> str:
    """Lowercase alphanumerics only, so option text compares despite punctuation and spacing."""
    return re.sub(r"[\W_]+", "", text.lower())


def _clean(answer: str) -> str:
    """Drop markdown emphasis, quotes, an "Answer:" prefix and trailing full stops."""
    text = answer.strip().strip("*`\"'“”‘’ \t\r\n")
    text = _PREFIX.sub("", text).strip().strip("*`\"'“”‘’ ")
    return text.rstrip(".。!").strip()


def _one_option(segment: str, texts: dict[str, str], allowed: set[str]) -> str | None:
    """The letter of one segment: bare, "(B)", "B." / "B)" / "B:" + text, or "B " + that option's text."""
    segment = segment.strip().rstrip(".")
    if len(segment) == 1 and segment.isalpha():
        letter = segment.upper()
        return letter if letter in allowed else None
    match = re.match(r"^\(([A-Z])\)\s*(.*)$", segment, re.DOTALL) or re.match(
        r"^([A-Z])\s*[.):：\-]\s*(.*)$", segment, re.DOTALL)
    if match:
        letter, rest = match.group(1), match.group(2).strip()
        if letter not in allowed:
            return None
        # Text that is exactly ANOTHER option's text contradicts the letter.
        norm = _norm_text(rest)
        if norm and norm != _norm_text(texts.get(letter, "")) and any(
                norm == _norm_text(t) for other, t in texts.items() if other != letter):
            return None
        return letter
    match = re.match(r"^([A-Z])\s+(.+)$", segment, re.DOTALL)
    if match and match.group(1) in allowed and texts.get(match.group(1)):
        if _norm_text(match.group(2)) == _norm_text(texts[match.group(1)]):
            return match.group(1)
    return None


def parse_letters(answer: str | None, option_letters: Sequence[str] | None = None,
                  options: Sequence[str] | None = None) -> list[str]:
    """The sorted, distinct option letters an answer names; [] when it names none or is unreadable.

    ``option_letters`` bounds the letters (empty: any A-Z); ``options`` (full option strings) lets
    "B sad" be checked against option B's text. Any letter outside the bound makes the answer unreadable.
    """
    if not answer:
        return []
    texts = option_map(options)
    allowed = set(option_letters or texts or [chr(c) for c in range(ord("A"), ord("Z") + 1)])
    text = _clean(str(answer))
    if not text:
        return []
    found: list[str] | None = None
    if len(text) == 1 and text.isalpha():
        found = [text.upper()]
    elif _LETTER_LIST.match(text):
        found = _LETTER.findall(text)
    elif _CONCAT.match(text) and all(c in allowed for c in text) and not texts_contain(texts, text):
        found = list(text)
    if found is not None:
        return sorted(set(found)) if all(c in allowed for c in found) else []
    segments = [s for s in _SEGMENT_SPLIT.split(text) if s.strip()]
    if len(segments) > 1:
        letters = [_one_option(s, texts, allowed) for s in segments]
        if all(letters):
            return sorted(set(letters))  # type: ignore[arg-type]
    letter = _one_option(text, texts, allowed)
    return [letter] if letter else []


def texts_contain(texts: dict[str, str], word: str) -> bool:
    """Whether a capitalised run like "ACE" is really the text of an option (then it is not letters)."""
    return any(_norm_text(t) == word.lower() for t in texts.values())


def parse_number(answer: str | None) -> int | None:
    """The single integer an answer holds ("10", "3 people", "three"); None if none or several."""
    if not answer:
        return None
    text = _clean(str(answer))
    numbers = _NUMBER.findall(text)
    if len(numbers) == 1:
        value = float(numbers[0])
        return int(value) if value.is_integer() else None
    if not numbers:
        word = _norm_text(text)
        return _NUMBER_WORDS.get(word)
    return None


def parse_yes_no(answer: str | None) -> str | None:
    """ "yes" or "no" when the answer is exactly that word up to case and punctuation, else None."""
    word = _norm_text(str(answer or ""))
    return word if word in ("yes", "no") else None


def _key_letters(text: str, question_type: str, options: Sequence[str] | None) -> list[str]:
    """The letters a key names: letters ("A,C", "(b)", "B. sad"), else exactly one option's text ("sad")."""
    letters = parse_letters(text.upper(), option_letters(options), options)
    if not letters and options:
        named = [letter for letter, t in option_map(options).items() if _norm_text(t) == _norm_text(text)]
        letters = named if len(named) == 1 else []
    return letters if question_type == "multi_choice" or len(letters) == 1 else []


def _yes_no_key(answer: Any, options: Sequence[str] | None) -> str | None:
    """ "yes"/"no" from the word, a bool, or the letter of an option that says yes or no ("A" with "A. Yes")."""
    if isinstance(answer, bool):
        return "yes" if answer else "no"
    word = parse_yes_no(str(answer))
    if word is None and options:
        letters = parse_letters(str(answer).strip().upper(), option_letters(options))
        word = parse_yes_no(option_map(options).get(letters[0], "")) if len(letters) == 1 else None
    return word


def normalize_key(answer: str | int | Sequence[str] | None, question_type: str,
                  options: Sequence[str] | None = None, *, strict: bool = False) -> str:
    """The canonical form of an answer key: "B" / "AC" for letters, "3" for numbers, "yes"/"no".

    Scoring reads keys leniently: an unreadable key is "" (every prediction then scores 0). ``strict=True``
    (the converter, on a dataset's keys) raises a ValueError naming the key instead, and asks a single-choice
    key for exactly one letter. ``options`` lets a key name an option by its text or, for yes/no, its letter.
    """
    if question_type not in QUESTION_TYPES:
        raise ValueError(f"unknown question_type {question_type!r}; known: {list(QUESTION_TYPES)}")
    if answer is None:
        key = ""
    elif question_type in ("single_choice", "multi_choice"):
        text = ",".join(str(a) for a in answer) if isinstance(answer, (list, tuple)) else str(answer)
        if strict:
            key = "".join(_key_letters(text.strip(), question_type, options))
        else:
            key = "".join(parse_letters(text.strip().upper()))
    elif question_type == "number":
        number = None if isinstance(answer, bool) else parse_number(str(answer))
        key = "" if number is None else str(number)
    else:
        key = (_yes_no_key(answer, options) if strict else parse_yes_no(str(answer))) or ""
    if strict and not key:
        wanted = {"single_choice": "one option letter", "multi_choice": "option letters",
                  "number": "one integer", "yes_no": "yes or no"}[question_type]
        raise ValueError(f"answer {answer!r} is not {wanted}")
    return key


def score_answer(prediction_text: str | None, key: str | int | Sequence[str] | None, question_type: str,
                 options: Sequence[str] | None = None, *, tagged: bool = False) -> float:
    """Score one prediction against its key: 1.0, 0.5 (multi-choice strict subset) or 0.0.

    ``tagged=True`` demands a complete <answer> block (no block scores 0); ``tagged=False`` uses the
    last block when there is one and the whole text otherwise. Raises ValueError for an unknown
    question_type.
    """
    gold = normalize_key(key, question_type)
    if tagged and not has_answer_block(prediction_text):
        return 0.0
    answer = extract_answer(prediction_text)
    if not answer or not gold:
        return 0.0
    if question_type in ("single_choice", "multi_choice"):
        letters = parse_letters(answer, option_letters(options), options)
        if not letters:
            return 0.0
        if question_type == "single_choice":
            return 1.0 if len(letters) == 1 and letters[0] == gold else 0.0
        predicted, wanted = set(letters), set(gold)
        if predicted == wanted:
            return 1.0
        return 0.5 if predicted < wanted else 0.0
    if question_type == "number":
        number = parse_number(answer)
        return 1.0 if number is not None and str(number) == gold else 0.0
    return 1.0 if parse_yes_no(answer) == gold else 0.0


def is_well_formed(answer: str | None, question_type: str, options: Sequence[str] | None = None) -> bool:
    """Whether an (extracted) answer is readable for its question type, right or wrong."""
    if question_type == "single_choice":
        return len(parse_letters(answer, option_letters(options), options)) == 1
    if question_type == "multi_choice":
        return bool(parse_letters(answer, option_letters(options), options))
    if question_type == "number":
        return parse_number(answer) is not None
    if question_type == "yes_no":
        return parse_yes_no(answer) is not None
    raise ValueError(f"unknown question_type {question_type!r}; known: {list(QUESTION_TYPES)}")
