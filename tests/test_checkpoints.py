"""Existing checkpoints as rows (issue 11, item 1-2): Table 3's model configs, prompts through a model's own chat
template, the ``evaluate`` entry point, and the ``openai`` generation backend against a real HTTP server on loopback
(``cft_lab.testing.chat_server``: a TEST SERVER with deterministic answers and injected faults, not a model)."""

from __future__ import annotations

import json
import uuid

import pytest

from cft_lab import prompts
from cft_lab.config import ConfigError
from cft_lab.pipeline.plan import format_plan, plan_cell
from cft_lab.testing.chat_server import ChatServer, FaultPlan
from conftest import REPO, SMOKE, compose, run_cli

TABLE3_MODELS = [
    "deepseek_math_7b_instruct",
    "mathstral_7b",
    "numinamath_7b_cot",
    "llama3_1_8b_instruct",
    "llama3_1_70b_instruct",
    "numinamath_72b_cot",
    "qwen2_5_math_72b_instruct",
    "acemath_7b_instruct",
    "qwen2_5_math_7b_instruct",
    "eurus_2_7b_sft",
    "gpt4o_0806",
    "o1_mini",
]
PAPER = ["data=webinstruct_cft_50k", "teacher=gpt4o_1120", "inference=greedy", "eval=paper_math6", "logger=none"]


# ---- prompts as messages ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["qwen25-math-cot", "gpqa-qwen", "mmlu-pro-cot-0shot"])
def test_a_chatml_templates_messages_render_to_its_pinned_text(template):
    msgs = prompts.eval_messages(template, "What is {x}?", category="law")
    pinned = prompts.template_text(template).replace("{category}", "law").replace("{question}", "What is {x}?")
    assert prompts.chatml(msgs[0]["content"], msgs[1]["content"]) == pinned
    assert [m["role"] for m in msgs] == ["system", "user"]


def test_deepseek_messages_put_the_instruction_after_the_question_in_one_user_turn():
    from cft_lab.eval import benchmarks

    item = benchmarks.items("math500", 1)[0]
    msgs = benchmarks.messages(item, "deepseek-math", "math500")
    assert msgs == [{"role": "user", "content": item["question"].strip() + "\n" + prompts._BOXED_SYSTEM}]
    # GPQA keeps its own template whatever the model's, as the pinned prompt does
    gpqa = benchmarks.items("gpqa", 1)[0]
    assert benchmarks.messages(gpqa, "gpqa-qwen", "gpqa")[0]["content"] == "You are a helpful assistant."
    with pytest.raises(ValueError, match="own template"):
        benchmarks.messages(gpqa, "qwen25-math-cot", "gpqa")


# ---- Table 3's model configs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", TABLE3_MODELS)
def test_every_table3_model_composes_and_plans_an_eval_only_cell(model):
    cfg = compose(PAPER + [f"model={model}", "objective=base"])
    plan = plan_cell(cfg)
    # one infer artefact per benchmark (reused by every eval set that holds it), then the grade
    assert [s.stage for s in plan.stages] == ["infer"] * len(cfg.eval.benchmarks) + ["grade"]
    assert [s.benchmark for s in plan.stages[:-1]] == list(cfg.eval.benchmarks)
    text = format_plan(plan)
    if cfg.model.source == "api":
        assert "openai API (api.openai.com" in text and "as chat messages" in text
    elif cfg.model.prompt_format == "chat":
        assert "through the model's chat template" in text
    if cfg.model.tensor_parallel_size > 1:
        assert "vllm TP=4" in text  # a 70B/72B shards over 4 GPUs at least, whatever the inference config says
    if cfg.model.source == "api":
        with pytest.raises(ConfigError, match="evaluated, not trained"):
            compose(PAPER + [f"model={model}", "objective=cft"])


def test_the_model_side_choices_move_only_the_evaluation_keys():
    B = "math"
    base = plan_cell(compose(PAPER + ["model=qwen2_5_math_7b_instruct", "objective=base"]))
    chat = plan_cell(compose(PAPER + ["model=qwen2_5_math_7b_instruct", "objective=base", "model.prompt_format=chat"]))
    # (each benchmark's infer artefact: MATH's here)
    assert base.key_of("infer", benchmark=B) != chat.key_of("infer", benchmark=B)  # another prompt, another artefact
    tp = plan_cell(
        compose(PAPER + ["model=qwen2_5_math_7b_instruct", "objective=base", "model.tensor_parallel_size=4"])
    )
    assert tp.key_of("infer", benchmark=B) != base.key_of("infer", benchmark=B)  # greedy outputs depend on the TP size
    same = plan_cell(
        compose(PAPER + ["model=qwen2_5_math_7b_instruct", "objective=base", "inference.tensor_parallel_size=4"])
    )
    assert same.key_of("infer", benchmark=B) == tp.key_of("infer", benchmark=B)  # TP=4 either way: one artefact
    # a trained cell's data and train keys do not see how its base would be prompted at test time
    cft = plan_cell(compose(PAPER + ["model=qwen2_5_math_7b", "objective=cft"]))
    cft_chat = plan_cell(compose(PAPER + ["model=qwen2_5_math_7b", "objective=cft", "model.prompt_format=chat"]))
    assert cft.key_of("train") == cft_chat.key_of("train") and cft.key_of("select") != cft_chat.key_of("select")


def test_what_an_api_or_chat_model_cannot_be_asked_is_refused_at_compose_time():
    with pytest.raises(ConfigError, match="evaluated, not trained"):
        compose(PAPER + ["model=gpt4o_0806", "objective=sft"])
    with pytest.raises(ConfigError, match="reasoning model .* n=1"):
        compose(PAPER + ["model=o1_mini", "objective=base", "inference.n=4", "inference.temperature=0.6"])
    with pytest.raises(ConfigError, match="direct inference only"):
        compose(PAPER + ["model=llama3_1_8b_instruct", "objective=base", "inference.mode=two_stage"])
    with pytest.raises(ConfigError, match="system_role=admin"):
        compose(PAPER + ["model=gpt4o_0806", "objective=base", "model.api.system_role=admin"])


def test_llama_end_of_turn_is_a_stop_token():
    from cft_lab.train.modeling import END_TOKENS, stop_token_ids

    class Tok:  # the two ids Llama-3.1-Instruct's tokenizer maps them to; its eos is <|eot_id|> too
        eos_token_id = 128009

        def get_vocab(self):
            return {"<|eot_id|>": 128009, "<|eom_id|>": 128008, "<|end_of_text|>": 128001}

    assert "<|eot_id|>" in END_TOKENS and stop_token_ids(Tok()) == [128008, 128009]


# ---- a local model's own chat template ----------------------------------------------------------------------------


def test_a_chat_format_cell_prompts_through_the_tokenizers_template_and_records_it(outputs):
    from cft_lab.pipeline.cell import run_cell
    from cft_lab.pipeline.store import Store, read_jsonl
    from cft_lab.train.modeling import load_tokenizer, model_path

    over = SMOKE + [f"paths.outputs={outputs}", "objective=base", "eval.benchmarks=[testbed_2step]", "eval.limit=3"]
    cfg = compose(over + ["model.prompt_format=chat", "model.eval_template=deepseek-math"])
    result = run_cell(cfg)
    assert result["status"] == "ok", result.get("traceback")
    infer = Store(outputs).path("infer", plan_cell(cfg).key_of("infer"))
    rows = list(read_jsonl(infer / "testbed_2step.jsonl"))
    tok = load_tokenizer(model_path(cfg.model))
    from cft_lab.eval import benchmarks

    item = benchmarks.items("testbed_2step", 1)[0]
    expected = tok.apply_chat_template(
        benchmarks.messages(item, "deepseek-math", "testbed_2step"), tokenize=False, add_generation_prompt=True
    )
    assert rows[0]["prompt"] == expected != benchmarks.render(item, "deepseek-math", "testbed_2step")
    info = json.loads((infer / "generator.json").read_text())
    assert info["prompt_format"] == "chat" and len(info["chat_template"]["sha256"]) == 64


# ---- the openai generation backend against a loopback server ------------------------------------------------------


@pytest.fixture
def api_key(monkeypatch) -> str:
    key = "sk-cftlab-FAKE-" + uuid.uuid4().hex
    monkeypatch.setenv("CFT_LAB_TEST_API_KEY", key)
    return key


def api_cell(srv: ChatServer, outputs, *extra: str):
    return compose(
        [
            "logger=none",
            f"paths.outputs={outputs}",
            "model=gpt4o_0806",
            "model.path=tiny-served",
            f"model.api.base_url={srv.url}",
            "model.api.api_key_env=CFT_LAB_TEST_API_KEY",
            "model.api.price_input=2.0",
            "model.api.price_output=8.0",
            "model.api.budget_usd=1.0",
            "objective=base",
            "eval.benchmarks=[testbed_2step,testbed_3step]",
            "eval.limit=4",
            *extra,
        ]
    )


def test_an_api_model_cell_runs_through_the_teachers_machinery_cache_and_retries(outputs, api_key):
    from cft_lab.pipeline.cell import run_cell
    from cft_lab.pipeline.store import Store, read_jsonl

    # every request's first attempt is rate-limited (429, Retry-After 0.05 s): each is asked again, not failed
    plan = FaultPlan(per_key=["429", "ok"], retry_after=0.05)
    with ChatServer(faults=plan, usage_tokens=(100, 20), api_key=api_key) as srv:
        cfg = api_cell(srv, outputs)
        result = run_cell(cfg)
        assert result["status"] == "ok", result.get("traceback")
        assert srv.faults_seen["429"] == 8 and sum(srv.ok_by_key.values()) == 8  # 2 benchmarks x 4 items
        body = srv.bodies[-1]
        assert body["model"] == "tiny-served" and body["temperature"] == 0 and body["top_p"] == 1.0
        assert body["max_tokens"] == cfg.inference.max_new_tokens and "stop" not in body  # stops cut locally
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        store = Store(outputs)
        # one infer artefact per benchmark, one engine for both: each generator.json has its benchmark's share,
        # and the engine's running total beside it
        one = 4 * (100 * 2 + 20 * 8) / 1e6  # 4 requests of 100 prompt and 20 completion tokens
        for k, bench in enumerate(cfg.eval.benchmarks):
            infer = store.path("infer", plan_cell(cfg).key_of("infer", benchmark=bench))
            info = json.loads((infer / "generator.json").read_text())
            assert info["backend"] == "openai" and info["endpoint_host"] == f"127.0.0.1:{srv.port}"
            assert info["usage"]["requests"] == 4 and info["usage"]["cost_usd"] == pytest.approx(one)
            total = info["usage_engine_total"]
            assert total["requests"] == 4 * (k + 1) and total["cost_usd"] == pytest.approx(one * (k + 1))
        assert api_key not in (infer / "generator.json").read_text()
        first = store.path("infer", plan_cell(cfg).key_of("infer", benchmark="testbed_2step"))
        row = next(iter(read_jsonl(first / "testbed_2step.jsonl")))
        assert isinstance(row["prompt"], list) and row["outputs"][0]["tokens"] == 20
        assert result["scores"]["testbed_2step"]["n"] == 4

        # the same requests again (another cell over the same items, here the infer artefact removed): all cached
        import shutil

        plan = plan_cell(cfg)
        for key in [*plan.infer_keys().values(), plan.key_of("grade")]:
            shutil.rmtree(store.path("grade" if key == plan.key_of("grade") else "infer", key))
        shutil.rmtree(store.path("cells", plan_cell(cfg).key))
        before = srv.total
        assert run_cell(cfg)["status"] == "ok" and srv.total == before


def test_a_reasoning_model_is_sent_what_the_api_takes(outputs, api_key):
    from cft_lab.eval.api import OpenAIGenerator

    with ChatServer(reasoning_models=("tiny-reasoner",), api_key=api_key) as srv:
        cfg = api_cell(
            srv, outputs, "model=o1_mini", "model.path=tiny-reasoner", "model.api.max_completion_tokens=4096"
        )
        gen = OpenAIGenerator(cfg.model, cfg.inference, cache_dir=outputs)
        msgs = [{"role": "system", "content": "Think."}, {"role": "user", "content": "1+1?"}]
        out = gen.generate([msgs], ["Answer"], n=1)
        body = srv.bodies[-1]
        assert not {"temperature", "top_p", "max_tokens"} & set(body) and body["max_completion_tokens"] == 4096
        assert body["messages"] == [{"role": "user", "content": "Think.\n\n1+1?"}]  # no system message for o1-mini
        assert out[0][0].text == "Working through the question (ref " + out[0][0].text.split("(ref ")[1]
        assert "Answer" not in out[0][0].text  # the stop string cut the reply after its return
        # too small a cap: an empty answer at finish_reason "length", kept as it is (not retried as malformed)
        cfg.model.api.max_completion_tokens = 16
        tight = OpenAIGenerator(cfg.model, cfg.inference, cache_dir=outputs)
        asked = srv.total
        got = tight.generate([msgs], [], n=1)[0][0]
        assert (got.text, got.finish_reason, got.tokens) == ("", "length", 16) and srv.total == asked + 1


def test_sampling_draws_one_seeded_request_per_sample_and_failures_fail_the_call(outputs, api_key):
    from cft_lab.eval.api import GenerationFailed, OpenAIGenerator

    with ChatServer(api_key=api_key, faults=FaultPlan(schedule=["ok", "ok", "ok", "400"])) as srv:
        cfg = api_cell(srv, outputs, "inference.temperature=0.7", "inference.top_p=0.9", "inference.n=3")
        gen = OpenAIGenerator(cfg.model, cfg.inference, cache_dir=outputs)
        msgs = [{"role": "user", "content": "Q"}]
        out = gen.generate([msgs], [], seeds=[100])
        assert len(out[0]) == 3 and sorted(b["seed"] for b in srv.bodies) == [100, 101, 102]
        assert {b["temperature"] for b in srv.bodies} == {0.7} and {b["top_p"] for b in srv.bodies} == {0.9}
        with pytest.raises(GenerationFailed, match="1 of 3 requests did not succeed"):
            gen.generate([[{"role": "user", "content": "another"}]], [], seeds=[7])


def test_the_dry_run_prices_an_api_evaluation_and_refuses_a_missing_key(outputs, monkeypatch, capsys):
    from cft_lab.pipeline.cell import run_cell

    with ChatServer() as srv:
        monkeypatch.delenv("CFT_LAB_TEST_API_KEY", raising=False)
        result = run_cell(api_cell(srv, outputs, "dry_run=true"))
        assert result["status"] == "failed" and "CFT_LAB_TEST_API_KEY (model.api.api_key_env" in result["error"]
        monkeypatch.setenv("CFT_LAB_TEST_API_KEY", "k")
        assert run_cell(api_cell(srv, outputs, "dry_run=true"))["status"] == "planned"
        out = capsys.readouterr().out
        assert "(infer) API requests: 8 to buy (8 in all, 0 in the request cache)" in out
        assert "estimated cost ~$0.04" in out or "estimated cost ~$0.0" in out
        result = run_cell(api_cell(srv, outputs, "dry_run=true", "model.api.budget_usd=0.00001"))
        assert result["status"] == "failed" and "exceeds model.api.budget_usd" in result["error"]
        assert srv.total == 0  # a dry run asks nothing


# ---- python -m cft_lab evaluate -----------------------------------------------------------------------------------


def test_evaluate_turns_a_model_into_an_eval_only_cell():
    from cft_lab.eval.evaluate import overrides_for

    assert overrides_for("gpt4o_0806", ["eval=paper_math6"]) == [
        "model=gpt4o_0806",
        "objective=base",
        "eval=paper_math6",
    ]
    assert overrides_for("/ckpt/run 1/final", ["eval.benchmarks=[gsm8k]"])[:3] == [
        "model=checkpoint",
        "model.path='/ckpt/run 1/final'",
        "model.label=final",
    ]
    assert overrides_for("org/model-7b", ["eval=paper_math6"])[2] == "model.label=model-7b"
    assert overrides_for("tiny_math", []) == ["model=tiny_math", "objective=base"]  # the testbed's own benchmarks
    with pytest.raises(ValueError, match="name the benchmarks"):
        overrides_for("org/model-7b", [])
    with pytest.raises(ValueError, match="runs no training"):
        overrides_for("tiny_math", ["method=cft"])


def test_evaluate_scores_a_local_checkpoint_folder_and_reads_it_back(tmp_path):
    import shutil

    from cft_lab.testbed.bases import MODELS_DIR

    ckpt = tmp_path / "my checkpoint"
    shutil.copytree(MODELS_DIR / "tiny_small", ckpt)
    args = ["cft_lab", "evaluate", str(ckpt), "eval.benchmarks=[testbed_2step]", "eval.limit=4", "logger=none"]
    args += ["inference.max_new_tokens=24", "run.num_threads=1"]
    first = run_cli(args, tmp_path)
    assert "[checkpoint/base]" in first.stderr + first.stdout
    again = run_cli(args, tmp_path)
    assert "finished before" in again.stderr + again.stdout
    (ckpt / "generation_config.json").write_text("{}")  # the folder's content is in the key: a new cell
    third = run_cli(args, tmp_path)
    assert "finished before" not in third.stderr + third.stdout
    bad = run_cli(["cft_lab", "evaluate", "org/some-model"], tmp_path, check=False)
    assert bad.returncode == 2 and "name the benchmarks" in bad.stderr
    assert (REPO / "conf" / "model" / "checkpoint.yaml").is_file()
