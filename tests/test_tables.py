"""The README's and docs' results tables are what their committed result files render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policies.benchmarks.tables import render_results, update_tables

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst")), RESULTS / "README.md",
             *sorted(RESULTS.glob("*/README.md"))]


def test_every_results_table_in_the_readme_and_docs_matches_its_result_file():
    stale = update_tables([p for p in DOCUMENTS if p.is_file()], check=True)
    assert not stale, f"re-render with `alignsam tables {' '.join(str(p.relative_to(ROOT)) for p in stale)}`"


def _report(tmp_path: Path) -> Path:
    base = {"label_source": "srm", "branch": "default", "max_prompts": 3, "images": 4, "split_size": 4,
            "foreground_rate": 0.5, "auc": 0.4, "noc90": 4.0}
    records = [{**base, "task": "t", "policy": "ppo", "srm": "ppo", "seed": 0, "miou": 0.6},
               {**base, "task": "t", "policy": "random", "srm": "ppo", "seed": 0, "miou": 0.5},
               {**base, "task": "t", "policy": "oracle", "srm": "ppo", "seed": 0, "miou": 0.9}]
    report = {"config": {"backend": "lite", "seeds": [0], "label_sources": ["srm"], "branches": ["default"],
                         "max_prompts": [3]},
              "results": records, "backend_identity": "lite-v2/abc", "command": "alignsam benchmark --config c",
              "source": {"commit": "0123456789abcdef", "dirty": False}, "wall_s_this_session": 120.0,
              "statistics": {"paired": [{"task": "t", "agent": "ppo", "baseline": "random", "metric": "miou",
                                         "difference": 0.1, "low": 0.05, "high": 0.15, "p_value": 0.01, "seeds": 1,
                                         "images": 4}]}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(report))
    return path


def test_a_block_is_rendered_from_its_file_and_a_changed_number_is_caught(tmp_path):
    results = _report(tmp_path)
    text = render_results(results)
    assert "`alignsam benchmark --config c`; report written at commit 0123456789; backend `lite-v2/abc`" in text
    assert "test images per record: 4 of 4" in text and "| oracle (upper bound) | 0.900 |" in text
    assert "| t | ppo | random | +0.100 [+0.050, +0.150] | 0.01 | 1 x 4 |" in text
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- results: results.json -->\nold\n<!-- /results -->\nend\n")
    assert update_tables([page], check=True) == [page] and "old" in page.read_text()  # check writes nothing
    assert update_tables([page]) == [page] and update_tables([page], check=True) == []
    assert page.read_text().startswith("intro\n<!-- results: results.json -->\nSource:")
    report = json.loads(results.read_text())
    report["results"][0]["miou"] = 0.7
    results.write_text(json.dumps(report))
    assert update_tables([page], check=True) == [page]


def test_a_block_naming_a_file_that_is_not_a_report_says_which(tmp_path):
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ValueError, match=r"bad\.json: not a benchmark report"):
        render_results(tmp_path / "bad.json")


def test_a_timing_file_renders_the_main_jobs_time_in_reference_units(tmp_path):
    timing = {"command": "python experiments/time_main_job.py --json t.json", "commit": "abcdef0123456789",
              "dirty": False,
              "reference": {"config": {"total_timesteps": 2048, "env": {"task": "synthetic-saliency"}}, "unit_s": 30.0},
              "machine": {"cpu_count": 2, "processor": "AMD EPYC", "torch_capability": "AVX512"},
              "quickstart": {"wall_s": 331.4, "peak_rss_gib": 2.5, "reference_units": 11.05}}
    path = tmp_path / "time.json"
    path.write_text(json.dumps(timing))
    text = render_results(path)
    assert text.startswith("The main job took 5 min 31 s with an empty embedding cache and 2.50 GiB at peak on a "
                           "2-core AMD EPYC (AVX512): 11.1 reference units")
    assert "30.0 s in the same run" in text and "commit abcdef0123." in text


def test_the_summary_view_has_a_task_matrix_and_one_paired_matrix_per_baseline_every_agent_met(tmp_path):
    base = {"label_source": "srm", "branch": "default", "max_prompts": 3, "images": 4, "split_size": 4,
            "foreground_rate": 0.5, "auc": 0.4, "noc90": 4.0, "seed": 0}
    records = [{**base, "task": task, "policy": policy, "srm": srm, "miou": miou}
               for task, shift in (("a", 0.0), ("b", 0.1))
               for policy, srm, miou in (("ppo", "ppo", 0.6), ("random", "ppo", 0.4), ("mix", "ppo", 0.5),
                                         ("a2c", "a2c", 0.7), ("mix", "a2c", 0.55))
               for miou in (miou + shift,)]
    paired = [{"task": task, "agent": agent, "baseline": baseline, "metric": "miou", "difference": d, "low": d - 0.01,
               "high": d + 0.01, "p_value": 0.01, "seeds": 1, "images": 4}
              for task in ("a", "b") for agent, baseline, d in (("ppo", "random", 0.2), ("ppo", "mix", 0.1),
                                                               ("a2c", "mix", 0.15))]
    report = {"config": {"backend": "lite", "seeds": [0], "label_sources": ["srm"], "branches": ["default"],
                         "max_prompts": [3]}, "results": records, "command": "alignsam benchmark --config c",
              "statistics": {"paired": paired}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(report))
    text = render_results(path, view="summary")
    assert "| policy | a | b |" in text
    assert "| mix | 0.500 | 0.600 |" in text  # under PPO's SRM, the one random also ran with (not a2c's too)
    assert "Agent minus `mix`" in text and "| a2c | +0.150 [+0.140, +0.160] | +0.150 [+0.140, +0.160] |" in text
    assert "Agent minus `random`" not in text  # paired with ppo only: left to the full tables
    assert "| ppo | 0.600 | 0.700 |" in text and "Paired mIoU differences" not in text
    page = tmp_path / "page.md"
    page.write_text("<!-- results: results.json summary -->\nold\n<!-- /results -->\n")
    update_tables([page])
    assert page.read_text() == f"<!-- results: results.json summary -->\n{text}<!-- /results -->\n"
    with pytest.raises(ValueError, match="view must be one of"):
        render_results(path, view="short")
    page.write_text("<!-- results: results.json short -->\nold\n<!-- /results -->\n")
    with pytest.raises(ValueError, match="view must be one of"):  # a misspelt view is an error, not a skipped block
        update_tables([page], check=True)
