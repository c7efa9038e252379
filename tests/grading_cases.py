"""Grader cases for ``tests/test_grading.py``: one row per trap, the expected verdict in each mode.

Each case is ``(id, output, gold, benchmark, {mode: expected}, paper_quirks)``. ``gold`` is one string used by every
mode, or ``{mode: gold}`` where the modes' golds differ (as ``gold_answers`` returns them). The expectations are the
documented behaviour (``cft_lab.eval.grading`` module docs, docs/protocol.md §4.2–§4.5, §9), with the reason in a
comment where a mode deviates; ``paper_quirks`` are the quirk names the paper-mode verdict must carry.
"""

T, F = True, False


def m(paper, strict, math_verify):
    return {"paper": paper, "strict": strict, "math_verify": math_verify}


MATH_CASES = [
    # --- formats every mode reads the same way
    (
        "boxed_tuple_left_right",
        r"So the point is $\boxed{\left( 3, \frac{\pi}{2} \right)}$.",
        {
            "paper": r"(3,\frac{\pi}{2})",
            "strict": r"(3,\frac{\pi}{2})",
            "math_verify": r"\left( 3, \frac{\pi}{2} \right)",
        },
        "math500",
        m(T, T, T),
        (),
    ),
    ("dfrac_vs_frac", r"Hence $\boxed{\dfrac{3}{4}}$.", r"\frac{3}{4}", "math", m(T, T, T), ()),
    ("nested_frac_value", r"$\boxed{\frac{1}{\frac{1}{2}}}$", "2", "math", m(T, T, T), ()),
    ("polynomial_expanded", r"$\boxed{x^2+2x+1}$", "(x+1)^2", "math", m(T, T, T), ()),
    ("interval", r"The solution set is $\boxed{(-\infty, 2]}$.", r"(-\infty,2]", "math", m(T, T, T), ()),
    (
        "matrix_same",
        r"$\boxed{\begin{pmatrix}1\\2\end{pmatrix}}$",
        r"\begin{pmatrix}1\\2\end{pmatrix}",
        "math",
        m(T, T, T),
        (),
    ),
    (
        "matrix_decimal_vs_fraction",
        r"$\boxed{\begin{pmatrix}0.5\\2\end{pmatrix}}$",
        r"\begin{pmatrix}\frac{1}{2}\\2\end{pmatrix}",
        "math",
        m(T, T, T),
        (),
    ),
    # strip_string drops the percent sign; math-verify reads 50\% as 0.5
    ("percent_sign_dropped", r"The rate is $\boxed{50\%}$.", "50", "math", m(T, T, F), ()),
    ("units_text_cm", r"The side is $\boxed{5 \text{ cm}}$.", "5", "math", m(T, T, T), ()),
    ("degree_sign", r"The angle is $\boxed{30^\circ}$.", "30", "math", m(T, T, T), ()),
    ("sci_times_vs_plain", r"$\boxed{3 \times 10^{5}}$", "300000", "math", m(T, T, T), ()),
    ("true_false", r"The statement holds, so $\boxed{True}$.", "True", "theoremqa", m(T, T, T), ()),
    ("true_vs_false", r"The statement fails, so $\boxed{False}$.", "True", "theoremqa", m(F, F, F), ()),
    ("gsm8k_commas_last_number", "She pays 1,000 first and 2,125 dollars in total", "2,125", "gsm8k", m(T, T, T), ()),
    ("gsm8k_commas_boxed", r"$\boxed{2,125}$", "2,125", "gsm8k", m(T, T, T), ()),
    (
        "minerva_final_answer",
        "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.",
        r"\frac{1}{2}",
        "minerva_math",
        m(T, T, T),
        (),
    ),
    ("the_answer_is", "The answer is 12.", "12", "aime24", m(T, T, T), ()),
    ("assignment_rhs", r"$\boxed{y = 2x + 3}$", "2x+3", "math", m(T, T, T), ()),
    ("wrong_number", r"$\boxed{7}$", "8", "math", m(F, F, F), ()),
    ("wrong_fraction", r"$\boxed{\frac{1}{3}}$", r"\frac{1}{2}", "math", m(F, F, F), ()),
    ("empty_box", r"$\boxed{}$", "5", "math", m(F, F, F), ()),
    # --- leniencies: gold/100 and gold*100 are upstream behaviour; math-verify has none
    ("percent_as_fraction", r"$\boxed{0.5}$", "50", "math", m(T, T, F), ("percent",)),
    # --- CFT-only leniencies: paper True, upstream (strict) False
    # round_to_two_decimals rounds to ONE decimal: 0.12 and 0.14 both become 0.1
    ("round_one_decimal", "The final answer is 0.12", "0.14", "gsm8k", m(T, F, F), ("round_one_decimal",)),
    # TheoremQA's Python-style 4e-05: the CFT grader reads both as numbers; LaTeX parsing reads "4e-05" as 4e - 5
    ("sci_notation_theoremqa", r"$\boxed{4\times10^{-5}}$", "4e-05", "theoremqa", m(T, F, T), ("sci_notation",)),
    # different functions, same right-hand side: the CFT "=" split compares x+1 with x+1
    ("rhs_split", r"$\boxed{p(x)=x+1}$", "q(x)=x+1", "math", m(T, F, F), ("rhs_split",)),
    # "5\," is no float for the numeric step, but is_numbers_equal_post drops the backslash and allows 1 sig. digit
    ("sig_digits", r"$\boxed{5\,}$", "5.04", "math", m(T, F, F), ("sig_digits",)),
    # --- gold-mangling quirks (paper golds as gold_answer returns them for the real records)
    # MATH #3526: \mbox{Saturday} is emptied; an empty gold matches any prediction without a capital A-E ...
    (
        "emptied_gold_matches_anything",
        r"$\boxed{Tuesday}$",
        {"paper": "", "strict": "Saturday", "math_verify": r"\mbox{Saturday}"},
        "math",
        m(T, F, F),
        ("gold_emptied",),
    ),
    # ... but not one with a capital A-E, which the letter rule keeps ("East" -> "E"); the other modes keep the
    # gold "east" and compare case-insensitively
    (
        "emptied_gold_capital_e",
        r"$\boxed{East}$",
        {"paper": "", "strict": "east", "math_verify": r"\text{east}"},
        "math500",
        m(F, T, T),
        ("gold_emptied",),
    ),
    # MATH #2802: the unit word "a" is deleted from gold and prediction alike; "c" too
    (
        "unit_words_deleted",
        r"$\boxed{(c+5)(b+2)}$",
        {"paper": "(+5)(b+2)", "strict": "(a+5)(b+2)", "math_verify": "(a+5)(b+2)"},
        "math",
        m(T, F, F),
        ("unit_word_deleted",),
    ),
    # MATH #4864: \sec x -> \x; the right answer still matches in every mode
    (
        "sec_x_right",
        r"$\boxed{\sec x}$",
        {"paper": r"\x", "strict": r"\secx", "math_verify": r"\sec x"},
        "math",
        m(T, T, T),
        ("unit_word_deleted",),
    ),
    # TheoremQA option golds (a)/(c)/(d) all collapse to "()", and so does an (a)/(c)/(d) prediction
    (
        "theoremqa_option_right",
        r"$\boxed{(c)}$",
        {"paper": "()", "strict": "(c)", "math_verify": "(c)"},
        "theoremqa",
        m(T, T, T),
        ("unit_word_deleted",),
    ),
    (
        "theoremqa_option_wrong",
        r"$\boxed{(d)}$",
        {"paper": "()", "strict": "(c)", "math_verify": "(c)"},
        "theoremqa",
        m(T, F, F),
        ("unit_word_deleted",),
    ),
    # (b) is no unit word: it survives, and cannot match the collapsed "()"
    (
        "theoremqa_option_b",
        r"$\boxed{(b)}$",
        {"paper": "()", "strict": "(c)", "math_verify": "(c)"},
        "theoremqa",
        m(F, F, F),
        (),
    ),
    # letter golds (MATH #315 is "C"): the letter is re-extracted from the whole output
    ("letter_gold", r"The answer is \text{(C)}", "C", "math", m(T, T, F), ("letter_gold",)),
    ("empty_output", "", "5", "math", m(F, F, F), ()),
]

CHOICE_CASES = [
    # (id, output, gold letter, benchmark, n_options, {mode: expected}, paper_quirks, {mode: extracted letter})
    (
        "gpqa_the_answer_is",
        "Reasoning... The answer is (C).",
        "C",
        "gpqa",
        None,
        m(T, T, T),
        (),
        {"paper": "C", "strict": "C"},
    ),
    # upper-casing turns the article "a" after "the answer is" into the letter A
    (
        "gpqa_lowercase_article",
        "the answer is a subtle one, but (C) fits best.",
        "C",
        "gpqa",
        None,
        m(F, T, T),
        ("lowercase_letter",),
        {"paper": "A", "strict": "C"},
    ),
    (
        "gpqa_last_letter",
        "Option B is wrong and D is right",
        "D",
        "gpqa",
        None,
        m(T, T, T),
        (),
        {"paper": "D", "strict": "D"},
    ),
    # a trigger twice: only the first paragraph is searched (MAmmoTH's in-context-learning rule)
    (
        "gpqa_icl_split",
        "The answer is B.\n\nOn reflection, The answer is C.",
        "C",
        "gpqa",
        None,
        m(F, T, T),
        ("gpqa_icl_split",),
        {"paper": "B", "strict": "C"},
    ),
    (
        "mmlu_pro_answer_is",
        "Let's think step by step. The answer is (C).",
        "C",
        "mmlu_pro",
        10,
        m(T, T, T),
        (),
        {"paper": "C", "strict": "C"},
    ),
    # the script's ".*[aA]nswer:" takes the first line that has one; math-verify the last answer
    (
        "mmlu_pro_answer_colon",
        "Answer: B\nAnswer: C",
        "B",
        "mmlu_pro",
        10,
        m(T, T, F),
        (),
        {"paper": "B", "strict": "B"},
    ),
    # nothing to extract: paper scores the seeded guess (G for 10 options, D for 4), strict and math-verify do not
    (
        "mmlu_pro_fallback_10",
        "No idea.",
        "G",
        "mmlu_pro",
        10,
        m(T, F, F),
        ("fallback_guess",),
        {"paper": "", "strict": ""},
    ),
    (
        "mmlu_pro_fallback_4",
        "No idea.",
        "D",
        "mmlu_pro",
        4,
        m(T, F, F),
        ("fallback_guess",),
        {"paper": "", "strict": ""},
    ),
    # the pronoun "I" is a standalone letter A-J: "I cannot decide." answers option I in every mode
    ("mmlu_pro_pronoun_i", "I cannot decide.", "I", "mmlu_pro", 10, m(T, T, T), (), {"paper": "I", "strict": "I"}),
    ("mmlu_pro_wrong", "The answer is (A).", "B", "mmlu_pro", 10, m(F, F, F), (), {"paper": "A", "strict": "A"}),
]
