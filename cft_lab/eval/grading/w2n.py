"""``word_to_num``: English number words to a number, exactly as the ``word2number`` package (1.1) does it.

The paper harness's ``strip_string`` calls ``w2n.word_to_num`` on every answer and keeps the original text when it
raises. ``word2number`` is not installed in this environment (and is not worth a dependency for 60 lines), so
its function is adapted here unchanged in behaviour, quirks included: non-number words are silently dropped, so
``"one way"`` becomes 1 and a lone ``"point"`` becomes 0.

Adapted from akshaynagpal/w2n ``word2number/w2n.py`` (MIT License, Copyright (c) 2016 Akshay Nagpal).

>>> word_to_num("two hundred and five")
205
>>> word_to_num("025")
25
>>> word_to_num("point")
0
"""

from __future__ import annotations

AMERICAN_NUMBER_SYSTEM = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "thousand": 1000,
    "million": 1000000,
    "billion": 1000000000,
    "point": ".",
}
DECIMAL_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _number_formation(number_words: list[str]) -> int:
    numbers = [AMERICAN_NUMBER_SYSTEM[w] for w in number_words]
    if len(numbers) == 4:
        return (numbers[0] * numbers[1]) + numbers[2] + numbers[3]
    if len(numbers) == 3:
        return numbers[0] * numbers[1] + numbers[2]
    if len(numbers) == 2:
        return numbers[0] * numbers[1] if 100 in numbers else numbers[0] + numbers[1]
    return numbers[0]


def _decimal_sum(decimal_digit_words: list[str]) -> float:
    digits = []
    for word in decimal_digit_words:
        if word not in DECIMAL_WORDS:
            return 0
        digits.append(AMERICAN_NUMBER_SYSTEM[word])
    return float("0." + "".join(map(str, digits)))


def word_to_num(number_sentence: str) -> int | float:
    """The number that ``number_sentence`` spells; raises ``ValueError`` like word2number when there is none."""
    if not isinstance(number_sentence, str):
        raise ValueError("Type of input is not string!")
    number_sentence = number_sentence.replace("-", " ").lower()
    if number_sentence.isdigit():
        return int(number_sentence)
    clean = [w for w in number_sentence.strip().split() if w in AMERICAN_NUMBER_SYSTEM]
    if not clean:
        raise ValueError("No valid number words found!")
    if (
        clean.count("thousand") > 1
        or clean.count("million") > 1
        or clean.count("billion") > 1
        or clean.count("point") > 1
    ):
        raise ValueError("Redundant number word!")
    decimals: list[str] = []
    if clean.count("point") == 1:
        decimals = clean[clean.index("point") + 1 :]
        clean = clean[: clean.index("point")]
    b = clean.index("billion") if "billion" in clean else -1
    m = clean.index("million") if "million" in clean else -1
    t = clean.index("thousand") if "thousand" in clean else -1
    if (t > -1 and (t < m or t < b)) or (m > -1 and m < b):
        raise ValueError("Malformed number!")
    total: int | float = 0
    if clean:
        if len(clean) == 1:
            total += AMERICAN_NUMBER_SYSTEM[clean[0]]
        else:
            if b > -1:
                total += _number_formation(clean[0:b]) * 1000000000
            if m > -1:
                total += _number_formation(clean[b + 1 : m] if b > -1 else clean[0:m]) * 1000000
            if t > -1:
                if m > -1:
                    mult = _number_formation(clean[m + 1 : t])
                elif b > -1:
                    mult = _number_formation(clean[b + 1 : t])
                else:
                    mult = _number_formation(clean[0:t])
                total += mult * 1000
            if t > -1 and t != len(clean) - 1:
                hundreds = _number_formation(clean[t + 1 :])
            elif m > -1 and m != len(clean) - 1:
                hundreds = _number_formation(clean[m + 1 :])
            elif b > -1 and b != len(clean) - 1:
                hundreds = _number_formation(clean[b + 1 :])
            elif t == -1 and m == -1 and b == -1:
                hundreds = _number_formation(clean)
            else:
                hundreds = 0
            total += hundreds
    if decimals:
        total += _decimal_sum(decimals)
    return total
