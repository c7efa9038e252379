"""IF-Eval and MT-Bench (issue 11, item 5; v4 Table 8): IF-Eval's checks on responses with known verdicts, google's
aggregation, the shipped tokenizer data (no download), and MT-Bench's two-turn generation and judging flow against a
loopback judge (``cft_lab.testing.chat_server``: a TEST SERVER whose ratings are a hash of the request)."""

from __future__ import annotations

import json

import pytest

from cft_lab.eval import benchmarks, instruct
from cft_lab.pipeline.plan import plan_cell
from cft_lab.testing.chat_server import ChatServer
from conftest import SMOKE, compose


def test_the_shipped_benchmarks_load_with_their_counts():
    ifeval, mt = benchmarks.items("ifeval"), benchmarks.items("mt_bench")
    assert len(ifeval) == 541 and sum(len(i["instructions"]) for i in ifeval) == 834
    assert len(mt) == 80 and {len(i["turns"]) for i in mt} == {2}
    assert {i["category"] for i in mt} == {
        "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"
    }  # fmt: skip
    # every instruction id of the data has a checker (none is skipped)
    ids = {x for i in ifeval for x in i["instructions"]}
    assert len(ids) == 25 and ids <= set(instruct._registry())


# Responses with known verdicts, one per kind of check (each verdict follows from the instruction's definition).
CASES = [
    ("punctuation:no_comma", {}, "No commas here at all.", True, True),
    ("punctuation:no_comma", {}, "One, two.", False, False),
    ("change_case:english_lowercase", {}, "all lower case text", True, True),
    ("change_case:english_lowercase", {}, "Not lower", False, False),
    ("detectable_format:title", {}, "<<A Title>>\nBody.", True, True),
    (
        "startend:end_checker",
        {"end_phrase": "Is there anything else I can help with?"},
        "Sure.\nIs there anything else I can help with?",
        True,
        True,
    ),  # fmt: skip
    (
        "length_constraints:number_words",
        {"relation": "at least", "num_words": 5},
        "one two three four five",
        True,
        True,
    ),  # fmt: skip
    ("length_constraints:number_words", {"relation": "less than", "num_words": 3}, "one two three", False, False),
    # three sentences by the Punkt model: "Dr." is a known abbreviation, not a sentence end
    (
        "length_constraints:number_sentences",
        {"relation": "less than", "num_sentences": 4},
        "Dr. Smith arrived. He sat down. Then he left.",
        True,
        True,
    ),  # fmt: skip
    (
        "length_constraints:number_sentences",
        {"relation": "at least", "num_sentences": 4},
        "Dr. Smith arrived. He sat down. Then he left.",
        False,
        False,
    ),  # fmt: skip
    # loose passes when the first line (a preamble) is dropped; strict does not
    ("detectable_format:json_format", {}, 'Here it is:\n{"a": 1}', False, True),
    (
        "language:response_language",
        {"language": "de"},
        "Das ist ein ganz normaler deutscher Satz über das Wetter.",
        True,
        True,
    ),  # fmt: skip
]


@pytest.mark.parametrize("iid, kwargs, response, strict, loose", CASES)
def test_ifeval_checks_give_the_known_verdicts(iid, kwargs, response, strict, loose):
    [got] = instruct.ifeval_check(response, "prompt", [iid], [kwargs])
    assert (got["strict"], got["loose"]) == (strict, loose)


def test_ifeval_needs_no_download_and_an_empty_answer_fails_every_instruction(monkeypatch):
    import nltk

    def refuse(*a, **k):
        raise AssertionError("nltk.download called: the tokenizer data must come with the package")

    monkeypatch.setattr(nltk, "download", refuse)
    from if_verifiable.ifeval import instructions_util

    assert instructions_util.count_sentences("Mr. Brown went home. It rained.") == 2
    checks = instruct.ifeval_check("", "p", ["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}])
    assert [(c["strict"], c["loose"]) for c in checks] == [(False, False), (False, False)]


def test_ifeval_aggregation_is_googles(tmp_path):
    items = {it["id"]: it for it in benchmarks.items("ifeval", 3)}
    out = [{"text": t, "tokens": 1, "finish_reason": "stop"} for t in ["", "a response, with a comma", "anything"]]
    rows = [
        {"id": i, "index": it["index"], "prompt": it["question"], "outputs": [o]}
        for (i, it), o in zip(items.items(), out)
    ]
    graded = instruct.grade_ifeval(rows, items)
    s = instruct.aggregate_ifeval("IF-Eval", graded, n_boot=200)
    checks = [c for g in graded for c in g["samples"][0]["instructions"]]
    assert s["n"] == len(checks) == sum(len(it["instructions"]) for it in items.values())  # empty answers count
    assert s["ifeval"]["instruction_strict"] == pytest.approx(100 * sum(c["strict"] for c in checks) / len(checks))
    prompt_strict = [all(c["strict"] for c in g["samples"][0]["instructions"]) for g in graded]
    assert s["ifeval"]["prompt_strict"] == pytest.approx(100 * sum(prompt_strict) / 3)
    assert s["ifeval"]["instruction_loose"] >= s["ifeval"]["instruction_strict"]


def test_mt_bench_judge_prompts_follow_fastchat():
    items = {it["category"]: it for it in benchmarks.items("mt_bench")}
    name, msgs = instruct.judge_messages(items["writing"], ["A1", "A2"], 1)
    assert name == "single-v1" and "[[rating]]" in msgs[0]["content"] + msgs[1]["content"]
    assert "A1" in msgs[1]["content"] and items["writing"]["turns"][0] in msgs[1]["content"]
    name, msgs = instruct.judge_messages(items["math"], ["A1", "A2"], 2)
    ref = instruct.reference_answers()[items["math"]["question_id"]]
    assert name == "single-math-v1-multi-turn" and ref[1] in msgs[1]["content"] and "A2" in msgs[1]["content"]
    assert instruct.parse_rating("Rating: [[8]]") == 8.0 and instruct.parse_rating("none") is None


def test_an_instruct_cell_generates_two_turns_and_is_judged_over_http(outputs, monkeypatch):
    from cft_lab.pipeline.cell import run_cell
    from cft_lab.pipeline.preflight import teacher_estimates
    from cft_lab.pipeline.store import Store, read_jsonl

    with ChatServer() as judge:
        monkeypatch.setenv("CFT_LAB_JUDGE_URL", judge.url)
        over = SMOKE + [f"paths.outputs={outputs}", "objective=base", "eval=testbed_instruct", "eval.limit=3"]
        cfg = compose(over)
        store, plan = Store(outputs), plan_cell(cfg)
        (role, before), *_ = [e for e in teacher_estimates(cfg, store.root) if e[0] == "grade"]
        assert before.requests == 6 and before.cost_usd is None  # two judgments per question; a test server: no price
        result = run_cell(cfg)
        assert result["status"] == "ok", result.get("traceback")
        assert not [e for e in teacher_estimates(cfg, store.root) if e[0] == "grade"]  # judged: nothing left to buy
        rows = list(read_jsonl(store.path("infer", plan.key_of("infer", benchmark="mt_bench")) / "mt_bench.jsonl"))
        assert len(rows) == 3 and all(len(r["turns"]) == 2 for r in rows)
        # turn 2's prompt carries the model's own first answer, in ChatML with the default system text
        assert (
            rows[0]["turns"][0]["text"] in rows[0]["prompt"][1]
            and "You are a helpful assistant." in rows[0]["prompt"][1]
        )
        assert judge.total == 6  # two judgments per question, over HTTP
        scores = result["scores"]
        mt = scores["mt_bench"]
        graded = list(read_jsonl(store.path("grade", plan.key_of("grade")) / "mt_bench.jsonl"))
        ratings = [j["rating"] for g in graded for j in g["judgments"]]
        assert mt["value"] == pytest.approx(sum(ratings) / len(ratings), abs=1e-3) and mt["mt_bench"]["unparsed"] == 0
        assert mt["mt_bench"]["judge"]["model"] == "loopback-judge"
        assert scores["ifeval"]["n"] == sum(len(it["instructions"]) for it in benchmarks.items("ifeval", 3))
        # the judge is part of what the grade key hashes; nothing before it moves
        other = plan_cell(compose(over + ["eval.judge=gpt4_judge"]))
        assert other.key_of("grade") != plan.key_of("grade")
        for b in ("ifeval", "mt_bench"):
            assert other.key_of("infer", benchmark=b) == plan.key_of("infer", benchmark=b)


def test_the_judges_cost_is_estimated_and_capped_before_any_answer_exists(tmp_path):
    """GPT-4 judging MT-Bench: 160 judgments, prompts sized with answers at max_new_tokens (a bound), priced at the
    judge option's prices; over its budget, refused before anything runs."""
    cfg = compose(["model=qwen2_5_math_7b", "objective=base", "eval=instruct", "inference=greedy", "logger=none"])
    est = instruct.judge_estimate(cfg, tmp_path)
    assert est.requests == 160 and est.cached == 0 and "gpt-4-0613" in est.what
    # turn 2 carries both answers and turn 1 one: at least 3 answers' worth of tokens per question
    assert est.prompt_tokens > 80 * 3 * cfg.inference.max_new_tokens
    price = (est.prompt_tokens * 30.0 + est.completion_tokens * 60.0) / 1e6
    assert est.cost_usd == pytest.approx(price) and est.budget_usd == 80
    longer = compose(["model=qwen2_5_math_7b", "objective=base", "eval=instruct", "inference.max_new_tokens=20000"])
    with pytest.raises(ValueError, match=r"eval.judge=gpt4_judge .*exceeds teacher.budget_usd=\$80"):
        instruct.judge_estimate(longer, tmp_path)


def test_a_judged_cell_is_refused_before_it_runs_without_a_judge(outputs, monkeypatch):
    from cft_lab.pipeline.cell import run_cell

    monkeypatch.delenv("CFT_LAB_JUDGE_URL", raising=False)
    over = SMOKE + [f"paths.outputs={outputs}", "objective=base", "eval=testbed_instruct", "dry_run=true"]
    result = run_cell(compose(over))
    assert result["status"] == "failed" and "names no server" in result["error"]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = run_cell(compose(over + ["eval.judge=gpt4_judge"]))
    assert result["status"] == "failed" and "OPENAI_API_KEY (api_key_env, the API key) is not set" in result["error"]
    assert "eval.judge=gpt4_judge" in result["error"]


def test_the_if_eval_table_shows_percent_and_ratings(tmp_path):
    from cft_lab.report.comparisons import IF_LOOSE, IF_STRICT, MT, if_eval_mtbench_frame, paper_frame
    from cft_lab.report.frames import BenchScore, CellResult
    from cft_lab.report.render import write_table

    raw = {
        "IF-Eval": {
            "ci_low": 30.0,
            "ci_high": 37.0,
            "ifeval": {"instruction_strict": 33.5, "instruction_loose": 36.2, "instructions": 834},
        },  # fmt: skip
        "MT-Bench": {
            "value": 6.49,
            "ci_low": 6.1,
            "ci_high": 6.8,
            "mt_bench": {"judged": 160, "unparsed": 0, "judge": {"name": "j", "model": "m"}},
        },  # fmt: skip
    }
    group = "Initialized from Qwen2.5-Math-7B-Base"
    scores = {"IF-Eval": BenchScore(1, 1, 0, 0)}
    cell = CellResult("Qwen2.5-Math-7B", "cft", None, "ok", None, scores, "k", raw_scores=raw, group=group)
    cell.label = "Qwen2.5-Math-7B-CFT"
    frame = if_eval_mtbench_frame([cell], ["IF-Eval", "MT-Bench"])
    row = ("Initialized from Qwen2.5-Math-7B-Base", "Qwen2.5-Math-7B-CFT")
    assert list(frame.loc[row, [IF_STRICT, IF_LOOSE, MT]]) == [33.5, 36.2, 6.49]
    paper = paper_frame("if_eval_mtbench")
    assert paper.loc[row, IF_STRICT] == pytest.approx(33.5) and paper.loc[row, MT] == 6.49
    md = write_table(frame, tmp_path, "t", "v4 T8", paper=paper)["md"].read_text()
    assert "(paper 33.5)" in md and "mean judge rating (1-10)" in md and "judge: j (m" in md
    assert json.loads(json.dumps(frame.attrs["runs"][row]))["status"] == "ok"


def test_fastchat_sampling_gives_each_category_its_temperature(tmp_path):
    """``eval.mt_bench_sampling=fastchat``: writing and roleplay sampled at 0.7, reasoning and math greedy (FastChat's
    temperature_config), with the real tiny model; only MT-Bench's infer key moves."""
    from cft_lab.config import InferenceConfig, ModelConfig
    from cft_lab.eval.generation import make_generator
    from cft_lab.pipeline.store import read_jsonl
    from cft_lab.train.modeling import model_path

    tiny = ModelConfig(name="tiny_math", label="tiny-math", source="testbed", path="tiny_math")
    kw = {"template": "qwen25-math-cot", "prompt_format": "harness", "limit": 40, "seed": 0}
    calls: list[tuple] = []

    class Recorded:  # the real generator, with each call's temperature and prompt count written down
        def __init__(self, g):
            self.g = g

        def generate(self, prompts, stops, **k):
            calls.append((k.get("temperature"), len(prompts)))
            return self.g.generate(prompts, stops, **k)

    runs = {}
    with make_generator(model_path(tiny), tiny, InferenceConfig(name="t", max_new_tokens=12, batch_size=40)) as g:
        for name, temps in (("greedy", None), ("fastchat", instruct.FASTCHAT_TEMPERATURES)):
            (tmp_path / name).mkdir()
            path = instruct.generate_mt_bench(Recorded(g), tmp_path / name, temperatures=temps, **kw)
            runs[name] = {r["id"]: r for r in read_jsonl(path)}
    # the cell's own settings: one call per turn; FastChat's: one batched call per temperature and turn
    assert calls == [(None, 40), (None, 40), (0.0, 20), (0.7, 20), (0.0, 20), (0.7, 20)]
    fast, greedy = runs["fastchat"], runs["greedy"]
    by_t: dict[float, list[str]] = {}
    for rid, r in fast.items():
        assert r["temperature"] == instruct.FASTCHAT_TEMPERATURES[r["category"]] and "temperature" not in greedy[rid]
        by_t.setdefault(r["temperature"], []).append(rid)
    assert sorted(by_t) == [0.0, 0.7] and len(by_t[0.0]) == len(by_t[0.7]) == 20  # reasoning+math, writing+roleplay
    assert {fast[i]["category"] for i in by_t[0.7]} == {"writing", "roleplay"}
    # temperature 0 is greedy decoding: the same answers as the cell's greedy settings
    assert all(fast[i]["turns"][0]["text"] == greedy[i]["turns"][0]["text"] for i in by_t[0.0])

    over = SMOKE + ["objective=base", "eval=testbed_instruct"]
    a, b = plan_cell(compose(over)), plan_cell(compose(over + ["eval.mt_bench_sampling=fastchat"]))
    assert a.key_of("infer", benchmark="mt_bench") != b.key_of("infer", benchmark="mt_bench")
    assert a.key_of("infer", benchmark="ifeval") == b.key_of("infer", benchmark="ifeval")
    assert compose(["eval=instruct"]).eval.mt_bench_sampling == "fastchat"  # the paper-scale config samples as FastChat
