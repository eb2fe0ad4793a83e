"""Raw JSON results → the short markdown tables of bench/RESULTS.md (`python -m bench.table results.json ...`)."""

from __future__ import annotations

import json
import sys


def _f(value, digits=2, suffix=""):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _pct(value):
    return "–" if value is None else f"{value * 100:+.1f}%"


def render(results: dict) -> str:
    meta = results.get("meta", {})
    lines = [
        f"Run {meta.get('date')} on {meta.get('device')} ({meta.get('cpu_count')} CPUs), {meta.get('dtype')}, "
        f"torch {meta.get('torch')}, diffusers {meta.get('diffusers')}, transformers {meta.get('transformers')}, xformers: {meta.get('xformers')}",
        "",
    ]
    for name, m in results.get("models", {}).items():
        lines += _model_lines(name, m)
    return "\n".join(lines)


def _model_lines(name: str, m: dict) -> list:
    """One model's part: the engine-vs-diffusers table, then the previews table and the one-line sections."""
    plan = m.get("plan", {})
    lines = [
        f"**{name}** at {plan.get('size')}², steps {plan.get('lo')}/{plan.get('hi')}, {plan.get('reps')} alternated reps",
        "",
        "| figure | engine | diffusers | ratio (engine/diffusers speed) |",
        "| --- | --- | --- | --- |",
    ]
    lines += _load_rows(m.get("load", {}))
    lines += _throughput_rows(m)
    lines += _memory_rows(m.get("peak_memory", {}))
    lines += _task_switch_rows(m.get("task_switch", {}))
    lines += _same_image_rows(m.get("same_image_as_diffusers", {}))
    lines.append("")
    lines += _previews_table(m.get("previews", {}))
    lines += _xformers_lines(m.get("xformers"))
    lines += _oom_lines(m.get("oom"))
    lines += _fast_lines(m.get("fast"))
    errors = {k: v for k, v in m.items() if isinstance(v, dict) and ("error" in v or "skipped" in v)}
    if errors:
        lines += [f"sections not measured: {errors}", ""]
    return lines


# ---- rows of the engine-vs-diffusers table


def _load_rows(load: dict) -> list:
    if "engine_first_s" not in load:
        return []
    return [f"| model load, s (engine: first / later) | {_f(load['engine_first_s'])} / {_f(load.get('engine_median_later_s'))} | {_f(load.get('diffusers_median_s'))} | {_f(load.get('ratio_diffusers_over_engine'))} |"]


def _throughput_rows(m: dict) -> list:
    lines = []
    for key in sorted(k for k in m if k.startswith("throughput_b")):
        t = m[key]
        if "engine" not in t:  # an error or a skip: shown as is
            lines.append(f"| {key} | {t} | | |")
            continue
        b = t["batch"]
        lines.append(f"| denoise it/s, batch {b}, CFG, previews latent | {_f(t['engine']['denoise_it_s'])} | {_f(t['diffusers']['denoise_it_s'])} | {_f(t.get('ratio_engine_over_diffusers_it_s'), 3)} |")
        lines.append(f"| denoise it/s, batch {b}, previews off | {_f(t['engine_no_previews']['denoise_it_s'])} | | {_f(t.get('ratio_engine_no_previews_over_diffusers_it_s'), 3)} |")
        lines.append(f"| s/image end to end, batch {b}, {t['steps'][1]} steps | {_f(t['engine']['e2e_s_per_image'], 3)} | {_f(t['diffusers']['e2e_s_per_image'], 3)} | {_f(t.get('ratio_engine_over_diffusers_e2e_speed'), 3)} |")
    return lines


def _memory_rows(mem: dict) -> list:
    lines = []
    for key in sorted(k for k in mem if k.startswith("engine_b") and k.endswith("_peak_gb")):
        other = key.replace("engine", "diffusers")
        lines.append(f"| peak GPU memory GB, {key.split('_')[1]} | {_f(mem[key])} | {_f(mem.get(other))} | |")
    if "process_peak_rss_gb" in mem:
        lines.append(f"| process peak RSS GB (both sides) | {_f(mem['process_peak_rss_gb'])} | | |")
    return lines


def _task_switch_rows(ts: dict) -> list:
    if "engine_switch_cost_s" not in ts:
        return []
    lines = []
    for task in ("txt2img", "img2img", "inpaint"):
        lines.append(
            f"| {task} job after another task / same task, s | {_f(ts['engine_s'][task + '_switch'], 3)} / {_f(ts['engine_s'][task + '_same'], 3)} | "
            f"{_f(ts['diffusers_s'][task + '_switch'], 3)} / {_f(ts['diffusers_s'][task + '_same'], 3)} | |"
        )
    lines.append(f"| engine task-pipeline build (from_pipe), ms | {', '.join(f'{k} {v * 1000:.1f}' for k, v in ts['engine_task_pipeline_build_s'].items())} | | |")
    return lines


def _same_image_rows(same: dict) -> list:
    return [
        f"| same image as diffusers ({same['sampler']}, {key}): max abs pixel diff | {same[key]['max_abs_diff']} | | mean {_f(same[key]['mean_abs_diff'], 3)} |"
        for key in sorted(k for k in same if k.startswith("seed_"))
    ]


# ---- the sections after the table (each ends with a blank line when present)


def _previews_table(pv: dict) -> list:
    if "off" not in pv:
        return []
    lines = [
        "| previews (engine, batch 1) | denoise it/s | cost vs off | job start → first preview, s | job start → first step, s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode in ("off", "latent", "taesd", "vae", "vae_every_step"):
        if mode in pv:
            p = pv[mode]
            lines.append(f"| {mode} | {_f(p['denoise_it_s'])} | {_pct(p['cost_vs_off']) if mode != 'off' else '–'} | {_f(p['start_to_first_preview_s'], 3)} | {_f(p['start_to_first_step_s'], 3)} |")
    return lines + [""]


def _xformers_lines(xf) -> list:
    if not xf:
        return []
    if xf.get("usable"):
        line = f"xformers {xf.get('version')}: diffusers {_f(xf.get('diffusers_sdpa_it_s'))} it/s SDPA vs {_f(xf.get('diffusers_xformers_it_s'))} xformers (×{_f(xf.get('ratio_xformers_over_sdpa_diffusers'), 3)}); engine {_f(xf.get('engine_sdpa_it_s'))} vs {_f(xf.get('engine_xformers_it_s'))} (×{_f(xf.get('ratio_xformers_over_sdpa_engine'), 3)})"
    else:
        line = f"xformers not usable: {xf.get('problem') or xf.get('error')}"
    return [line, ""]


def _oom_lines(oom) -> list:
    if not oom:
        return []
    return [f"OOM check: {oom.get('request')} → {oom.get('result')}: {oom.get('message')!r}; next job {oom.get('next_job')} ({'ok' if oom.get('oom_message_ok') and oom.get('next_job_ok') else 'NOT ok'})", ""]


def _fast_lines(fast) -> list:
    if not fast:
        return []
    if "error" in fast or "skipped" in fast:
        return [f"fast mode: {fast}", ""]
    lines = [
        f"fast mode: start (load + compile + warm-up) {_f(fast.get('start_s_including_compile'), 1)} s; "
        + "; ".join(f"{k}: max abs pixel diff vs default {v['max_abs_diff']} (mean {_f(v['mean_abs_diff'], 3)})" for k, v in fast.items() if k.startswith("equal_")),
        "",
        "| fast mode | fast it/s | fast, previews off | diffusers it/s | ratio it/s | s/image fast | s/image diffusers | ratio e2e |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in sorted(k for k in fast if k.startswith("b")):
        r = fast[key]
        if "fast" not in r:  # a batch size skipped at the deadline: shown as is
            lines.append(f"| {key} | {r} | | | | | | |")
            continue
        lines.append(
            f"| batch {key[1:]} | {_f(r['fast']['denoise_it_s'])} | {_f(r['fast_no_previews']['denoise_it_s'])} | {_f(r['diffusers']['denoise_it_s'])} | "
            f"{_f(r.get('ratio_fast_over_diffusers_it_s'), 3)} | {_f(r['fast']['e2e_s_per_image'], 3)} | {_f(r['diffusers']['e2e_s_per_image'], 3)} | {_f(r.get('ratio_fast_over_diffusers_e2e_speed'), 3)} |"
        )
    return lines + [""]


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(render(json.load(open(path))))
        print()
