"""``results.md`` and plots of a benchmark: tables shaped like the paper's, every caption naming the
backend and label source, means over seeds with their standard deviation, and (several seeds) the
interval estimates of :mod:`policies.benchmarks.statistics`."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from alignsam_gym.atomic import write_text
from alignsam_gym.heuristics import HEURISTICS, UPPER_BOUNDS
from alignsam_gym.metrics import class_mean_iou
from policies.benchmarks.comparisons import main_records, score_matrices
from policies.benchmarks.statistics import mean as mean_score
from policies.benchmarks.statistics import performance_profile, stratified_bootstrap_ci

DISCLAIMER = ("Numbers from the embedded backend (`lite`: EfficientNet-Lite0 + superpixel random walker) are "
              "not comparable with the paper's SAM numbers.")


def _mean_sd(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def _group(records: list[dict[str, Any]], *keys: str) -> dict[tuple, list[dict[str, Any]]]:
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[tuple(r[k] for k in keys)].append(r)
    return groups


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of ``rows`` under ``header`` (every cell already text)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _caption(config: dict[str, Any], what: str, label_source: str, extra: str = "",
             spread: str = "mean ± standard deviation over seeds (a heuristic's: over seeds and the SRMs it ran with)"
             ) -> str:
    backend = config["backend"]
    note = f" {DISCLAIMER}" if backend == "lite" else ""
    split = "validation" if config.get("split") == "val" else "test"
    images = (f"every {split} image once" if config.get("images") is None
              else f"a fixed sample of {config['images']} {split} images, each once")
    return (f"**{what}** Backend `{backend}`, label source `{label_source}`, initial prompts "
            f"`{config['init_prompts']}`, {images} per seed, seeds {config['seeds']}{extra}; {spread}.{note}")


def _findings(paired: list[dict[str, Any]]) -> list[str]:
    """One plain sentence per task and agent: the baselines (under its SRM, same images) it is significantly
    above and those it is not, in mIoU, with the paired difference and its 95% interval."""
    lines = []
    comparisons = [c for c in paired if c["metric"] == "miou"]
    for task, agent in dict.fromkeys((c["task"], c["agent"]) for c in comparisons):
        above, rest = [], []
        for c in comparisons:
            if (c["task"], c["agent"]) == (task, agent):
                text = f"{c['baseline']} ({c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}])"
                (above if c["low"] > 0 else rest).append(text)
        sentence = f"- `{task}`, `{agent}`: "
        sentence += ("above " + ", ".join(above)) if above else "above no baseline"
        sentence += ("; **not above** " + ", ".join(rest) + "." if rest else ".")
        lines.append(sentence)
    if lines:
        lines = ["Each agent's mIoU minus each baseline's under the agent's SRM on the same images, with its 95% "
                 "hierarchical bootstrap interval; *above* means the whole interval is above zero.", "", *lines]
    return lines


def _versus_random(config: dict[str, Any], groups: dict[tuple, list[dict[str, Any]]], tasks: list[str],
                   policies: list[str], label_source: str, max_prompts: int) -> list[str]:
    """Each learned policy against random with the same SRM (the paper's "w/o RL"): the margins per task
    and how many tasks clear the quickstart's bars (foreground rate +15 points, mIoU above random)."""
    parts, missing = [], []
    for policy in [p for p in policies if p not in HEURISTICS]:
        rows, fg_bar, miou_bar, compared = [], 0, 0, 0
        for task in tasks:
            mine = groups.get((task, policy))
            theirs = [r for r in groups.get((task, "random"), []) if r.get("srm", policy) == policy]  # its SRM
            if not mine or not theirs:
                continue
            m = {k: float(np.mean([r[k] for r in mine])) for k in ("foreground_rate", "miou")}
            t = {k: float(np.mean([r[k] for r in theirs])) for k in ("foreground_rate", "miou")}
            compared += 1
            fg_bar += m["foreground_rate"] - t["foreground_rate"] >= 0.15
            miou_bar += m["miou"] > t["miou"]
            rows.append([task, mine[0].get("srm_branch", "–"), f"{m['foreground_rate']:.3f}", f"{t['foreground_rate']:.3f}",
                         f"{m['foreground_rate'] - t['foreground_rate']:+.3f}", f"{m['miou']:.3f}", f"{t['miou']:.3f}",
                         f"{m['miou'] - t['miou']:+.3f}"])
        if not rows:
            missing.append(policy)
            continue
        header = ["task", "SRM branch", f"foreground rate {policy}", "random", "margin", f"mIoU {policy}", "random",
                  "margin"]
        parts += [_caption(config, f"`{policy}` against random with the same trained SRM.", label_source,
                           f", T = {max_prompts}"), "", markdown_table(header, rows), "",
                  f"Tasks where `{policy}`'s foreground rate beats random's by at least 15 points: {fg_bar} of "
                  f"{compared}; where its mIoU beats random's: {miou_bar} of {compared}.", ""]
    if parts and missing:
        parts += [f"No `random` ran under the SRM of {', '.join(f'`{p}`' for p in missing)} (not in "
                  "`paired_baselines`), so no such table for them.", ""]
    return parts


def _paired_section(config: dict[str, Any], paired: list[dict[str, Any]]) -> list[str]:
    """The paired comparisons: every agent against every baseline under the agent's SRM, on the same images."""
    if not paired:
        return []
    parts = ["## Paired comparisons", "",
             "Each trained agent against each baseline evaluated with the agent's own SRM, on the same images "
             "of the same seeds: the mean per-image difference (agent minus baseline) with its 95% interval from "
             "a hierarchical bootstrap (2,000 resamples of the seeds, then of the images, one draw shared by the "
             "drawn seeds), and the two-sided Wilcoxon signed-rank p-value of the per-image differences (averaged "
             "over seeds).", ""]
    for metric, name in (("miou", "mIoU"), ("foreground_rate", "foreground rate")):
        rows = [[c["task"], c["agent"], c["baseline"], f"{c['agent_mean']:.3f}", f"{c['baseline_mean']:.3f}",
                 f"{c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]", f"{c['p_value']:.2g}",
                 f"{c['seeds']} x {c['images']}"] for c in paired if c["metric"] == metric]
        if rows:
            parts += [_caption(config, f"Paired {name} differences.", config["label_sources"][0],
                               f", T = {max(config['max_prompts'])}",
                               "difference [95% hierarchical bootstrap interval]"),
                      "", markdown_table(["task", "agent", "baseline", "agent", "baseline", "difference [95% CI]", "p",
                                  "seeds x images"], rows), ""]
    return parts


def _statistics_section(config: dict[str, Any], statistics: dict[str, Any]) -> list[str]:
    if not statistics.get("aggregate"):
        return []
    runs = len(statistics["seeds"])
    normalised = statistics["score"] == "normalised_miou"
    tasks = statistics["normalised_tasks"] if normalised else statistics["tasks"]
    score = ("normalised mIoU (per task, 0 = `random`'s mean mIoU, 1 = the ground-truth `oracle`'s)" if normalised
             else "mIoU (not normalised: the grid lacks `random` or `oracle`, so tasks of different difficulty mix)")
    parts = ["## Aggregate statistics", "",
             f"Over {runs} seeds x {len(tasks)} tasks ({', '.join(tasks)}), on {score}: the "
             "interquartile mean (IQM) and the mean, each with its 95% stratified bootstrap interval (2,000 "
             "resamples of the seeds within each task), as Agarwal et al. (2021) recommend; a heuristic's run of a "
             "seed is its mean over the SRMs every heuristic of the task ran with (each trained SRM when all ran "
             "under all, else the first trained algorithm's). P(improve) is the probability that a run of the policy "
             f"beats a run of the best heuristic (`{statistics.get('best_heuristic', '-')}`) in mIoU on the same "
             "task (ties count half).", ""]
    rows = []
    for policy, a in statistics["aggregate"].items():
        f = statistics["foreground_rate"][policy]
        poi = statistics.get("probability_of_improvement", {}).get(policy)
        rows.append([f"{policy} (upper bound)" if policy in UPPER_BOUNDS else policy,
                     f"{a['iqm']:.3f} [{a['iqm_low']:.3f}, {a['iqm_high']:.3f}]",
                     f"{a['mean']:.3f} [{a['mean_low']:.3f}, {a['mean_high']:.3f}]",
                     f"{f['iqm']:.3f} [{f['iqm_low']:.3f}, {f['iqm_high']:.3f}]",
                     "–" if poi is None else f"{poi:.2f}"])
    rows.sort(key=lambda row: -float(row[1].split()[0]))
    name = "normalised mIoU" if normalised else "mIoU"
    parts += [_caption(config, f"Aggregate {name} and foreground rate, best first.", config["label_sources"][0],
                       f", T = {max(config['max_prompts'])}", "point estimates with 95% stratified bootstrap intervals"),
              "",
              markdown_table(["policy", f"{name} IQM [95% CI]", f"{name} mean [95% CI]", "foreground rate IQM [95% CI]",
                      "P(improve) over best heuristic"], rows), ""]
    if normalised:
        scale = statistics["normalisation"]
        parts += ["Normalisation (mean mIoU per task): " + "; ".join(
            f"`{t}` random {v['random']:.3f}, oracle {v['oracle']:.3f}" for t, v in scale.items()) + ".", ""]
    tasks = statistics["tasks"]
    rows = [[policy] + [f"{v[t]['mean']:.3f} [{v[t]['low']:.3f}, {v[t]['high']:.3f}]" for t in tasks]
            for policy, v in statistics["per_task_miou"].items()]
    parts += [_caption(config, "mIoU per task.", config["label_sources"][0], f", T = {max(config['max_prompts'])}",
                       "mean over seeds [95% bootstrap interval over seeds]"), "",
              markdown_table(["policy"] + tasks, rows), ""]
    return parts


def _prompt_efficiency(config: dict[str, Any], groups: dict[tuple, list[dict[str, Any]]], tasks: list[str],
                       policies: list[str], label_source: str, max_prompts: int) -> list[str]:
    """The field's prompt-efficiency table: mIoU after 1, 3 and 5 prompts (those below T) and after the last,
    the area under the mIoU-after-k curve, NoC@85 and NoC@90 (T + 1 when never reached), means over seeds
    (results from before these metrics were recorded have no table)."""
    early = [k for k in (1, 3, 5) if k < max_prompts]
    rows = []
    for task in tasks:
        for policy in policies:
            rs = groups.get((task, policy))
            if not rs or any("noc85" not in r for r in rs):
                continue
            at = [_mean_sd([r["iou_curve"][k] for r in rs]) for k in early]
            rows.append([task, policy, *at, _mean_sd([r["miou"] for r in rs]), _mean_sd([r["auc"] for r in rs]),
                         _mean_sd([r["noc85"] for r in rs], digits=2), _mean_sd([r["noc90"] for r in rs], digits=2)])
    if not rows:
        return []
    caption = _caption(config, "Prompt efficiency: mIoU after k prompts, the area under the mIoU-after-k curve "
                               "(its mean over k = 1..T) and NoC@85 / NoC@90 (prompts to reach the IoU, "
                               f"{max_prompts + 1} when never reached).", label_source, f", T = {max_prompts}")
    header = ["task", "policy", *(f"mIoU@{k}" for k in early), f"mIoU@{max_prompts}", "AUC", "NoC@85", "NoC@90"]
    return [caption, "", markdown_table(header, rows), ""]


def _imitation_section(groups: dict[tuple, list[dict[str, Any]]], tasks: list[str], policies: list[str]) -> list[str]:
    """How the agents trained with ``init: {imitation}`` were cloned: expert, labelled states, the expert's cost per
    state, the last round's fit (means over seeds)."""
    rows = []
    for task in tasks:
        for policy in policies:
            rs = [r["imitation"] for r in groups.get((task, policy), []) if r.get("imitation")]
            if not rs:
                continue
            per_state = [r["expert"]["seconds_per_state"] for r in rs if r["expert"].get("seconds_per_state")]
            rows.append([task, policy, rs[0]["expert"]["name"], _mean_sd([r["states"] for r in rs], digits=0),
                         str(len(rs[0]["rounds"]) - 1),
                         _mean_sd(per_state, digits=4) if per_state else "–",
                         _mean_sd([r["rounds"][-1]["accuracy"] for r in rs]), _mean_sd([r["wall_s"] for r in rs],
                                                                                       digits=0)])
    if not rows:
        return []
    return ["## Imitation", "", "Agents cloned from an expert before RL (`init: {imitation}`): the labelled states, "
            "the DAgger rounds after behaviour cloning, the expert's seconds per labelled state, the share of the "
            "last round's training rows where the policy's best cell was the expert's, and the imitation's wall time "
            "(s); mean ± standard deviation over seeds.", "",
            markdown_table(["task", "agent", "expert", "states", "DAgger rounds", "expert s/state", "accuracy",
                            "wall s"], rows), ""]


#: the paper's ablation tables (Tables 3-5): per record key, the config key of its values, the table's title, and
#: how a value heads its column
SETTING_TABLES = {
    "label_source": ("label_sources", "mIoU by label source (paper Table 3).", str),
    "branch": ("branches", "mIoU by SRM branch (paper Table 4).", str),
    "max_prompts": ("max_prompts", "mIoU by prompt budget T (paper Table 5).", lambda n: f"T={n}"),
}


def _main_setting(config: dict[str, Any]) -> dict[str, Any]:
    """The setting every other table reports: the first label source and branch, the largest prompt budget."""
    return {"label_source": config["label_sources"][0], "branch": config["branches"][0],
            "max_prompts": max(config["max_prompts"])}


def _header(config: dict[str, Any], records: list[dict[str, Any]], policies: list[str]) -> list[str]:
    """The title, and what a reader must know before any number: untrained SRMs, upper bounds."""
    parts = [f"# Benchmark `{config['name']}`", ""]
    untrained = sorted({r["policy"] for r in records if not r.get("srm_trained", True)})
    if untrained:
        parts += [f"Policies {untrained} ran with an untrained SRM (no trained algorithm in this grid).", ""]
    bounds = [p for p in policies if p in UPPER_BOUNDS]
    if bounds:
        parts += [f"{', '.join(f'`{p}`' for p in bounds)}: **an upper bound, not a policy**: it reads the ground "
                  "truth (the one-step lookahead that keeps the prompt with the best true IoU); no learned policy "
                  "is compared with it as a baseline.", ""]
    return parts


def _per_task(config: dict[str, Any], groups: dict[tuple, list[dict[str, Any]]], tasks: list[str],
              policies: list[str], metric: str, title: str) -> list[str]:
    """One metric per policy and task (mean ± sd over seeds) in the main setting."""
    main = _main_setting(config)
    rows = [[p] + [_mean_sd([r[metric] for r in groups[(t, p)]]) if groups.get((t, p)) else "–" for t in tasks]
            for p in policies]
    return [_caption(config, title, main["label_source"], f", T = {main['max_prompts']}"), "",
            markdown_table(["policy"] + tasks, rows), ""]


def _voc_class_mean(config: dict[str, Any], groups: dict[tuple, list[dict[str, Any]]], tasks: list[str],
                    policies: list[str]) -> list[str]:
    """Pascal VOC's convention over several ``voc-<class>`` tasks: the mean over classes of each class's mIoU."""
    voc = [t for t in tasks if t.startswith("voc-")]
    if len(voc) < 2:
        return []
    main = _main_setting(config)
    rows = [[p, f"{class_mean_iou({t: [r['miou'] for r in groups[(t, p)]] for t in voc if groups.get((t, p))}):.3f}",
             str(sum(1 for t in voc if groups.get((t, p))))] for p in policies]
    return [_caption(config, "Pascal VOC class-mean mIoU over the voc-<class> tasks.", main["label_source"],
                     f", T = {main['max_prompts']}"), "",
            markdown_table(["policy", "class-mean mIoU", "classes"], rows), ""]


def _task_metrics(config: dict[str, Any], groups: dict[tuple, list[dict[str, Any]]], tasks: list[str],
                  policies: list[str]) -> list[str]:
    """The paper's Tables 8 and 9: F-beta, adaptive F, E-measure, MAE and BER per task and policy."""
    main = _main_setting(config)
    rows = [[t, p, _mean_sd([r["f_beta"] for r in rs]), _mean_sd([r["f_adaptive"] for r in rs]),
             _mean_sd([r["e_measure"] for r in rs]), _mean_sd([r["mae"] for r in rs]),
             _mean_sd([r["ber_dataset"] for r in rs], digits=2)]
            for t in tasks for p in policies for rs in [groups.get((t, p))] if rs]
    return [_caption(config, "Task metrics (paper Tables 8 and 9): F-beta (beta² = 0.3) of the mask at 0.5, "
                             "adaptive F (threshold 2 x mean), E-measure, MAE, BER (%, counts summed over the "
                             "test episodes).", main["label_source"], f", T = {main['max_prompts']}"), "",
            markdown_table(["task", "policy", "F-beta", "F-adaptive", "E-measure", "MAE", "BER"], rows), ""]


def _by_setting(config: dict[str, Any], records: list[dict[str, Any]], tasks: list[str], policies: list[str],
                key: str) -> list[str]:
    """One ablation table (:data:`SETTING_TABLES`): mIoU per task and policy for each value of ``key`` the grid
    varies, the other settings at their main values; nothing when the grid has one value of ``key``."""
    main = _main_setting(config)
    config_key, title, column = SETTING_TABLES[key]
    values = sorted(config[config_key]) if key == "max_prompts" else config[config_key]
    if len(values) < 2:
        return []
    chosen = [r for r in records if all(r[k] == v for k, v in main.items() if k != key)]
    groups = _group(chosen, "task", "policy", key)
    rows = [[t, p] + [_mean_sd([r["miou"] for r in groups[(t, p, v)]]) if groups.get((t, p, v)) else "–"
                      for v in values] for t in tasks for p in policies]
    source, extra = ("per column", f", T = {main['max_prompts']}") if key == "label_source" \
        else (main["label_source"], "")
    return [_caption(config, title, source, extra), "",
            markdown_table(["task", "policy"] + [column(v) for v in values], rows), ""]


PLOTS_NOTE = ("Plots: `plots/iou_vs_prompts_<task>.png`, `plots/foreground_rate.png`, `plots/frames_<task>.jpg` "
              "(the first episode of each policy, first seed, after 0, 1, 3, 7 and 15 prompts); with several seeds "
              "`plots/performance_profile.png` (the fraction of runs above each normalised mIoU), "
              "`plots/prompt_efficiency.png` (AUC, NoC@85, NoC@90) and, for runs trained with "
              "`eval_every`, `plots/learning_curves_<task>.png` (validation mIoU and foreground rate against env "
              "steps, mean over seeds with a 95% bootstrap band).")


def markdown(report: dict[str, Any]) -> str:
    """``results.md``: every table of a benchmark report, each from its own builder, in reading order."""
    config, records = report["config"], report["results"]
    statistics = report.get("statistics") or {}
    tasks = list(dict.fromkeys(r["task"] for r in records))
    policies = list(dict.fromkeys(r["policy"] for r in records))
    main = _main_setting(config)
    groups = _group(main_records(config, records), "task", "policy")
    findings = _findings(statistics.get("paired") or [])
    parts = _header(config, records, policies)
    parts += ["## Findings", "", *findings, ""] if findings else []
    parts += _statistics_section(config, statistics)
    parts += _paired_section(config, statistics.get("paired") or [])
    parts += _versus_random(config, groups, tasks, policies, main["label_source"], main["max_prompts"])
    parts += _per_task(config, groups, tasks, policies, "miou", "mIoU (paper Table 2).")
    parts += _per_task(config, groups, tasks, policies, "foreground_rate",
                       "Foreground rate of the chosen points (Eq. 14).")
    parts += _prompt_efficiency(config, groups, tasks, policies, main["label_source"], main["max_prompts"])
    parts += _imitation_section(groups, tasks, policies)
    parts += _voc_class_mean(config, groups, tasks, policies)
    parts += _task_metrics(config, groups, tasks, policies)
    for key in SETTING_TABLES:
        parts += _by_setting(config, records, tasks, policies, key)
    return "\n".join([*parts, PLOTS_NOTE, ""])


def write_plots(report: dict[str, Any], out: Path, frames: dict[str, dict[str, dict[int, np.ndarray]]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config, records = report["config"], report["results"]
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    written = []
    main_source = config["label_sources"][0]
    main = main_records(config, records)
    tasks = list(dict.fromkeys(r["task"] for r in main))
    policies = list(dict.fromkeys(r["policy"] for r in main))
    groups = _group(main, "task", "policy")
    caption = f"backend {config['backend']}, labels {main_source}"
    styles = policy_styles(policies)
    for task in tasks:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for policy in policies:
            rs = groups.get((task, policy))
            if rs:
                curve = np.mean([r["iou_curve"] for r in rs], axis=0)
                ax.plot(np.arange(len(curve)), curve, marker="o", markersize=3, label=policy, **styles[policy])
        ax.set_xlabel("prompts")
        ax.set_ylabel("mean IoU")
        ax.set_title(f"{task} ({caption})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save_figure(plt, fig, plots / f"iou_vs_prompts_{task}.png"))
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(tasks)), 3.5))
    width = 0.8 / max(1, len(policies))
    for i, policy in enumerate(policies):
        values = [np.mean([r["foreground_rate"] for r in groups.get((t, policy), [])] or [np.nan]) for t in tasks]
        ax.bar(np.arange(len(tasks)) + i * width, values, width, label=policy, **_bar_style(styles[policy]))
    ax.set_xticks(np.arange(len(tasks)) + width * (len(policies) - 1) / 2)
    ax.set_xticklabels(tasks, fontsize=8)
    ax.set_ylabel("foreground rate")
    ax.set_ylim(0, 1)
    ax.set_title(f"Foreground rate of chosen points ({caption})", fontsize=9)
    ax.legend(fontsize=8)
    written.append(_save_figure(plt, fig, plots / "foreground_rate.png"))
    if all("noc90" in r for r in main):  # prompt efficiency (results from before it was recorded have none)
        fig, axes = plt.subplots(1, 3, figsize=(max(9, 3 * len(tasks)), 3.5))
        for ax, metric, label in zip(axes, ("auc", "noc85", "noc90"), ("AUC of mIoU after k prompts", "NoC@85",
                                                                         "NoC@90")):
            for i, policy in enumerate(policies):
                values = [np.mean([r[metric] for r in groups.get((t, policy), [])] or [np.nan]) for t in tasks]
                ax.bar(np.arange(len(tasks)) + i * width, values, width, label=policy,
                       **_bar_style(styles[policy]))
            ax.set_xticks(np.arange(len(tasks)) + width * (len(policies) - 1) / 2)
            ax.set_xticklabels(tasks, fontsize=7, rotation=20)
            ax.set_ylabel(label + ("" if metric == "auc" else f" (T + 1 = {max(config['max_prompts']) + 1}: never)"))
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=min(len(policies), 8), fontsize=7)
        fig.suptitle(f"Prompt efficiency ({caption})", fontsize=9)
        written.append(_save_figure(plt, fig, plots / "prompt_efficiency.png", rect=(0, 0.1, 1, 1)))
    scale = (report.get("statistics") or {}).get("normalisation")
    written += _statistics_plots(plt, main, plots, caption, scale, styles)
    for task, by_policy in frames.items():
        rows = []
        for policy, shots in by_policy.items():
            tiles = [cv2.resize(shots[k], (shots[k].shape[1] // 2, shots[k].shape[0] // 2), interpolation=cv2.INTER_AREA)
                     for k in sorted(shots)]
            if not tiles:
                continue
            row = np.concatenate(tiles, axis=1)
            label = np.full((28, row.shape[1], 3), 255, np.uint8)
            cv2.putText(label, policy, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
            rows.append(np.concatenate([label, row], axis=0))
        if rows:
            width = max(r.shape[1] for r in rows)
            rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
            path = plots / f"frames_{task}.jpg"  # photographs: JPEG is a tenth of the PNG
            cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 85])
            written.append(path)
    return written


def policy_styles(policies: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A line style per policy, the same in every plot of a report: the ten colours of matplotlib's ``tab10``, solid
    lines for the first ten policies and dashed ones (hatched bars) for the next ten, so that no two of up to
    twenty policies look alike."""
    from matplotlib import colormaps

    colours = colormaps["tab10"].colors
    return {policy: {"color": colours[i % 10], "linestyle": "-" if i < 10 else "--"}
            for i, policy in enumerate(policies)}


def _bar_style(style: dict[str, Any]) -> dict[str, Any]:
    """The bar form of a :func:`policy_styles` entry: its colour, hatched where the line is dashed."""
    return {"color": style["color"], "hatch": "//" if style["linestyle"] != "-" else None,
            "edgecolor": "white" if style["linestyle"] != "-" else None}


def _save_figure(plt: Any, fig: Any, path: Path, rect: tuple[float, float, float, float] | None = None) -> Path:
    """Lay out (within ``rect`` of the figure, leaving room for a figure legend), write (PNG, 120 dpi) and close
    one figure; its path."""
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _statistics_plots(plt: Any, main: list[dict[str, Any]], plots: Path, caption: str,
                      scale: dict[str, dict[str, float]] | None, styles: dict[str, dict[str, Any]]) -> list[Path]:
    """The performance profile (several seeds; on normalised mIoU with ``scale``,
    :func:`~policies.benchmarks.comparisons.normalisers`) and the learning curves (runs trained with
    ``eval_every``) of the main setting's records, each policy in its ``styles`` entry (:func:`policy_styles`)."""
    written = []
    tasks, scores = score_matrices(main, "miou", scale)
    if tasks and len({r["seed"] for r in main}) >= 2:
        name = "normalised mIoU" if scale else "mIoU"
        taus = np.linspace(-0.5, 1.5, 201) if scale else np.linspace(0, 1, 101)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for policy, values in scores.items():
            ax.plot(taus, performance_profile(values, taus), label=policy, **styles[policy])
        ax.set_xlabel(f"{name} threshold tau" + (" (0 random, 1 oracle)" if scale else ""))
        ax.set_ylabel(f"fraction of runs with {name} > tau")
        ax.set_title(f"Performance profile over {len(tasks)} tasks ({caption})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save_figure(plt, fig, plots / "performance_profile.png"))
    curves = [r for r in main if r.get("curve")]
    for task in dict.fromkeys(r["task"] for r in curves):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for policy in dict.fromkeys(r["policy"] for r in curves if r["task"] == task):
            runs = [r["curve"] for r in curves if r["task"] == task and r["policy"] == policy]
            steps = sorted(set.intersection(*[{p["env_steps"] for p in c} for c in runs]))
            if not steps:
                continue
            for ax, metric in zip(axes, ("miou", "foreground_rate")):
                values = np.array([[{p["env_steps"]: p[metric] for p in c}[s] for s in steps] for c in runs])
                centre = values.mean(axis=0)
                ax.plot(steps, centre, marker="o", markersize=3, label=policy, **styles[policy])
                if len(runs) > 1:
                    bands = [stratified_bootstrap_ci(values[:, i:i + 1], mean_score, 1000,
                                                     rng=np.random.default_rng(i)) for i in range(len(steps))]
                    ax.fill_between(steps, [b[0] for b in bands], [b[1] for b in bands], alpha=0.2,
                                    color=styles[policy]["color"])
        for ax, label in zip(axes, ("validation mIoU", "validation foreground rate")):
            ax.set_xlabel("env steps")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"Learning curves, {task} ({caption})", fontsize=9)
        written.append(_save_figure(plt, fig, plots / f"learning_curves_{task}.png"))
    return written


def write_report(report: dict[str, Any], out: Path, frames: dict | None = None, report_name: str = "results") -> None:
    """Write ``<report_name>.md`` and the plots of a benchmark report under ``out``."""
    write_text(out / f"{report_name}.md", markdown(report))
    write_plots(report, out, frames or {})
