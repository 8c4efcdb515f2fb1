"""LLM-as-judge against a local OpenAI-compatible server started by the test."""

from __future__ import annotations

import json

import pytest

from cora.evaluation.judge import Judge, JudgeError, build_judge, judge_predictions, parse_grade
from cora.evaluation.predictions import PredictionGroup
from tests.stub_openai import StubChatServer


class FakeServer(StubChatServer):
    """Answers /v1/chat/completions; ``fail_first`` requests get HTTP 503 first."""

    def __init__(self, fail_first: int = 0, status: int = 503, reply=None) -> None:
        super().__init__()
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.fail_first = fail_first
        self.status = status
        self.reply = reply or (
            lambda body: json.dumps({"score": 7 if "tree" in body["messages"][1]["content"] else 2, "reason": "ok"})
        )

    def respond(self, path, body, headers):
        self.requests.append(body)
        self.headers.append(headers)
        if path != "/v1/chat/completions":
            return 404, {"error": "not found"}
        if len(self.requests) <= self.fail_first:
            return self.status, {"error": "busy"}
        return self.chat_reply(self.reply(body))


GROUPS = [
    PredictionGroup("a.png", "describe", "a tree by a lake", ("a tree near water",)),
    PredictionGroup("b.png", "describe", "a car", ("a red house", "a house")),
]


def test_judge_scores_retries_and_caches(tmp_path):
    with FakeServer(fail_first=2) as server:
        judge = Judge(
            url=server.url,
            model="judge-m",
            api_key="sk-test",
            retry_backoff_s=0.0,
            concurrency=1,
            cache_dir=tmp_path / "cache",
        )
        result = judge_predictions(judge, GROUPS)
        assert result == {
            "judge": pytest.approx((7 + 2) / 20),
            "judge_model": "judge-m",
            "judge_samples": 2,
            "judge_ungraded": 0,
        }
        assert len(server.requests) == 4  # two 503s retried, then one per sample
        assert server.requests[-1]["model"] == "judge-m" and server.requests[-1]["temperature"] == 0.0
        assert "Candidate answer: a car" in server.requests[-1]["messages"][1]["content"]
        assert server.headers[-1]["Authorization"] == "Bearer sk-test"
        # cached: a second run sends nothing
        again = judge_predictions(judge, GROUPS)
        assert again == result and len(server.requests) == 4


def test_judge_gives_up_after_retries_and_fails_fast_on_client_errors(tmp_path):
    with FakeServer(fail_first=100) as server:
        judge = Judge(url=server.url, model="m", max_retries=2, retry_backoff_s=0.0)
        with pytest.raises(JudgeError, match=r"failed after 3 attempts: HTTP 503"):
            judge.grade("q", "p", ["r"])
        assert len(server.requests) == 3
    with FakeServer(fail_first=100, status=401) as server:
        judge = Judge(url=server.url, model="m", max_retries=5, retry_backoff_s=0.0)
        with pytest.raises(JudgeError, match=r"refused the request: HTTP 401"):
            judge.grade("q", "p", ["r"])
        assert len(server.requests) == 1


def test_ungraded_answers_are_counted_not_zero():
    with FakeServer(reply=lambda body: "I cannot say.") as server:
        judge = Judge(url=server.url, model="m", retry_backoff_s=0.0)
        result = judge_predictions(judge, GROUPS)
    assert result["judge"] is None and result["judge_ungraded"] == 2


def test_parse_grade():
    assert parse_grade('{"score": 8, "reason": "close"}') == 8.0
    assert parse_grade('<think>score 3? no</think>\n```json\n{"score": 10}\n```') == 10.0
    assert parse_grade("Score: 6/10") == 6.0
    assert parse_grade("no idea") is None


def test_build_judge_reads_key_from_env(monkeypatch, tmp_path):
    from cora.config.sections.evaluation import JudgeConfig

    monkeypatch.setenv("MY_JUDGE_KEY", "k1")
    judge = build_judge(JudgeConfig(url="http://x/v1", model="m", api_key_env="MY_JUDGE_KEY"), tmp_path)
    assert judge.api_key == "k1" and judge.cache_dir == tmp_path


def test_eval_cli_with_judge(tmp_path, capsys):
    from cora.cli.main import main

    pred = tmp_path / "pred.csv"
    pred.write_text(
        "url,query,prediction,annotation\na.png,describe,a tree,a tree by water\nb.png,describe,a car,a house\n"
    )
    with FakeServer() as server:
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(f"evaluation:\n  metrics: []\n  judge: {{url: '{server.url}', model: jm, retry_backoff_s: 0}}\n")
        out = tmp_path / "ev"
        assert main(["eval", "--predictions", str(pred), "--out", str(out), "--config", str(cfg)]) == 0
        assert len(server.requests) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["judge"] == pytest.approx(0.45) and metrics["judge_model"] == "jm"
    assert any((out / "judge_cache").rglob("*.json"))
    assert "judge" in capsys.readouterr().out
