"""``alignsam tables``: the results tables of the README and the docs, rendered from committed result files.

A rendered table sits in a Markdown file between two comments that name its result file::

    <!-- results: experiments/results/bench_ccp_person/results.json -->
    ...what render_results() makes of that file...
    <!-- /results -->

``<!-- results: PATH summary -->`` renders the short form of a large grid (:func:`render_results` with
``view="summary"``): the aggregate, one mIoU matrix of policies by tasks, and each agent's paired difference from
every baseline that all agents were paired with, one matrix per baseline.

``alignsam tables README.md`` rewrites every such block from its file; ``alignsam tables --check README.md``
rewrites nothing and fails when a block differs from what its file renders (the test suite runs it), so no
number in the README can drift from the results it quotes. Paths are relative to the Markdown file's folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from alignsam_gym.atomic import write_text
from alignsam_gym.heuristics import UPPER_BOUNDS
from policies.benchmarks.comparisons import aggregate_records, main_records
from policies.benchmarks.report import markdown_table

BLOCK = re.compile(r"(<!-- results: (?P<path>[^ ]+)(?: (?P<view>[^ ]+))? -->\n)(?P<body>.*?)(<!-- /results -->)",
                   re.S)
VIEWS = ("full", "summary")


def _interval(value: float, low: float, high: float) -> str:
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _provenance(report: dict[str, Any]) -> str:
    config, source = report["config"], report.get("source") or {}
    records = report["results"]
    images = sorted({(r["images"], r["split_size"]) for r in records if "images" in r})
    coverage = ", ".join(f"{n} of {m}" for n, m in images) or "unrecorded"
    commit = source.get("commit", "unrecorded")[:10] + (" (uncommitted changes)" if source.get("dirty") else "")
    wall = report.get("wall_s_total", report.get("wall_s_this_session"))
    commands = report.get("commands") or [report.get("command", "unrecorded")]
    rerendered = f" (statistics re-rendered by `{commands[-1]}`)" if len(commands) > 1 else ""
    return (f"`{commands[0]}`{rerendered}; report written at commit {commit}; backend "
            f"`{report.get('backend_identity') or config['backend']}`; seeds {config['seeds']}; "
            f"{'validation' if config.get('split') == 'val' else 'test'} images per record: {coverage}; wall time {'unrecorded' if wall is None else f'{wall / 60:.0f} min'}.")


def render_timing(report: dict[str, Any], name: str) -> str:
    """One paragraph from a main-job timing file (``experiments/time_main_job.py --json``): the quickstart's wall
    time with a cold cache, its peak memory and its length in reference units, with the machine and the commit."""
    quickstart, reference, machine = report["quickstart"], report["reference"], report["machine"]
    minutes, seconds = divmod(round(quickstart["wall_s"]), 60)
    commit = report.get("commit", "unrecorded")[:10] + (" (uncommitted changes)" if report.get("dirty") else "")
    return (f"The main job took {minutes} min {seconds:02d} s with an empty embedding cache and "
            f"{quickstart['peak_rss_gib']:.2f} GiB at peak on a {machine['cpu_count']}-core {machine['processor']} "
            f"({machine['torch_capability']}): {quickstart['reference_units']:.1f} reference units, the unit in which "
            f"its duration is stated since machines differ (one unit: PPO + SRM for "
            f"{reference['config']['total_timesteps']:,} steps on {reference['config']['env']['task']}, "
            f"{reference['unit_s']:.1f} s in the same run). Source: `{name}`, `{report['command']}`, "
            f"commit {commit}.\n")


def render_results(path: str | Path, view: str = "full") -> str:
    """The Markdown tables of one benchmark result file (``results.json`` or the quickstart's ``report.json``):
    its provenance, the aggregate (normalised) scores when it has several seeds, each task's policies with mIoU,
    foreground rate, AUC and NoC@90 (means over seeds; heuristics also over the SRMs all heuristics of the task ran
    with, :func:`~policies.benchmarks.comparisons.aggregate_records`), and the
    paired mIoU differences of each agent against each baseline under its SRM.

    :param view: ``"full"``, or ``"summary"`` for a grid of many tasks and agents (:func:`_summary_tables`).
    :raises ValueError: when the file is not a benchmark report, naming it.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {list(VIEWS)}, got {view!r}")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: result file not found (run the benchmark that writes it, or fix the path)")
    try:
        report = json.loads(path.read_text())
        if isinstance(report, dict) and {"quickstart", "reference", "machine"} <= set(report):
            return render_timing(report, path.name)  # a main-job timing file
        config, records = report["config"], report["results"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a benchmark report ({type(err).__name__}: {err})") from err
    statistics = report.get("statistics") or {}
    lines = [f"Source: `{path.name}`, " + _provenance(report), ""]
    aggregate = statistics.get("aggregate")
    if aggregate:
        name = "normalised mIoU" if statistics.get("score") == "normalised_miou" else "mIoU"
        rows = [[f"{p} (upper bound)" if p in UPPER_BOUNDS else p, _interval(a["iqm"], a["iqm_low"], a["iqm_high"]),
                 _interval(a["mean"], a["mean_low"], a["mean_high"])]
                for p, a in sorted(aggregate.items(), key=lambda item: -item[1]["iqm"])]
        lines += [markdown_table(["policy", f"{name} IQM [95% CI]", f"{name} mean [95% CI]"], rows), ""]
    main = aggregate_records(main_records(config, records))  # heuristics under the SRMs they all ran with
    if view == "summary":
        return "\n".join(lines + _summary_tables(main, statistics))
    per_task = statistics.get("per_task_miou") or {}
    for task in dict.fromkeys(r["task"] for r in main):
        rows = []
        for policy in dict.fromkeys(r["policy"] for r in main if r["task"] == task):
            mine = [r for r in main if r["task"] == task and r["policy"] == policy]
            cell = per_task.get(policy, {}).get(task)
            miou = (_interval(cell["mean"], cell["low"], cell["high"]) if cell
                    else f"{np.mean([r['miou'] for r in mine]):.3f}")
            label = f"{policy} (upper bound)" if policy in UPPER_BOUNDS else policy
            rows.append([label, miou, f"{np.mean([r['foreground_rate'] for r in mine]):.3f}",
                         f"{np.mean([r['auc'] for r in mine]):.3f}", f"{np.mean([r['noc90'] for r in mine]):.2f}"])
        lines += [f"`{task}`:", "", markdown_table(["policy", "mIoU [95% CI over seeds]", "foreground rate", "AUC",
                                                    "NoC@90"], rows), ""]
    paired = [c for c in statistics.get("paired") or [] if c["metric"] == "miou"]
    if paired:
        rows = [[c["task"], c["agent"], c["baseline"], f"{c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]",
                 f"{c['p_value']:.2g}", f"{c['seeds']} x {c['images']}"] for c in paired]
        lines += ["Paired mIoU differences (agent minus baseline under the agent's SRM, same images; 95% "
                  "hierarchical bootstrap interval, Wilcoxon p):", ""]
        lines += [markdown_table(["task", "agent", "baseline", "difference [95% CI]", "p", "seeds x images"], rows), ""]
    return "\n".join(lines)


def _summary_tables(main: list[dict[str, Any]], statistics: dict[str, Any]) -> list[str]:
    """The summary view's tables: mean mIoU over seeds per policy and task, and for each baseline that every agent
    was paired with, each agent's paired difference from it per task (95% interval)."""
    tasks = list(dict.fromkeys(r["task"] for r in main))
    rows = []
    for policy in dict.fromkeys(r["policy"] for r in main):
        cells = []
        for task in tasks:
            values = [r["miou"] for r in main if r["task"] == task and r["policy"] == policy]
            cells.append(f"{np.mean(values):.3f}" if values else "")
        rows.append([f"{policy} (upper bound)" if policy in UPPER_BOUNDS else policy, *cells])
    lines = ["mIoU (mean over seeds; heuristics also over the SRMs every heuristic ran with):", "",
             markdown_table(["policy", *tasks], rows), ""]
    paired = [c for c in statistics.get("paired") or [] if c["metric"] == "miou"]
    agents = list(dict.fromkeys(c["agent"] for c in paired))
    for baseline in dict.fromkeys(c["baseline"] for c in paired):
        found = {(c["agent"], c["task"]): c for c in paired if c["baseline"] == baseline}
        if {a for a, _ in found} != set(agents):
            continue  # paired with some agents only (under the first trained SRM): in the full tables
        rows = [[agent, *(f"{c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]" if c else ""
                          for c in (found.get((agent, task)) for task in tasks))] for agent in agents]
        lines += [f"Agent minus `{baseline}` under the agent's SRM, same images (mIoU; 95% hierarchical bootstrap "
                  "interval):", "", markdown_table(["agent", *tasks], rows), ""]
    return lines


def render_blocks(text: str, base: str | Path) -> str:
    """``text`` with every results block re-rendered from its file (paths relative to ``base``)."""
    return BLOCK.sub(lambda m: m.group(1) + render_results(Path(base) / m.group("path"), m.group("view") or "full")
                     + m.group(5), text)


def update_tables(paths: list[str | Path], check: bool = False) -> list[Path]:
    """Re-render the results blocks of each Markdown file; with ``check`` write nothing.

    :return: the files whose blocks differed from what their result files render.
    """
    stale = []
    for path in map(Path, paths):
        text = path.read_text()
        rendered = render_blocks(text, path.parent)
        if rendered != text:
            stale.append(path)
            if not check:
                write_text(path, rendered)
    return stale
