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
        plan = m.get("plan", {})
        lines.append(f"**{name}** at {plan.get('size')}², steps {plan.get('lo')}/{plan.get('hi')}, {plan.get('reps')} alternated reps")
        lines.append("")
        lines.append("| figure | engine | diffusers | ratio (engine/diffusers speed) |")
        lines.append("| --- | --- | --- | --- |")
        load = m.get("load", {})
        if "engine_first_s" in load:
            lines.append(f"| model load, s (engine: first / later) | {_f(load['engine_first_s'])} / {_f(load.get('engine_median_later_s'))} | {_f(load.get('diffusers_median_s'))} | {_f(load.get('ratio_diffusers_over_engine'))} |")
        for key in sorted(k for k in m if k.startswith("throughput_b")):
            t = m[key]
            if "engine" not in t:
                lines.append(f"| {key} | {t} | | |")
                continue
            b = t["batch"]
            lines.append(f"| denoise it/s, batch {b}, CFG, previews latent | {_f(t['engine']['denoise_it_s'])} | {_f(t['diffusers']['denoise_it_s'])} | {_f(t.get('ratio_engine_over_diffusers_it_s'), 3)} |")
            lines.append(f"| denoise it/s, batch {b}, previews off | {_f(t['engine_no_previews']['denoise_it_s'])} | | {_f(t.get('ratio_engine_no_previews_over_diffusers_it_s'), 3)} |")
            lines.append(f"| s/image end to end, batch {b}, {t['steps'][1]} steps | {_f(t['engine']['e2e_s_per_image'], 3)} | {_f(t['diffusers']['e2e_s_per_image'], 3)} | {_f(t.get('ratio_engine_over_diffusers_e2e_speed'), 3)} |")
        mem = m.get("peak_memory", {})
        for key in sorted(k for k in mem if k.startswith("engine_b") and k.endswith("_peak_gb")):
            other = key.replace("engine", "diffusers")
            lines.append(f"| peak GPU memory GB, {key.split('_')[1]} | {_f(mem[key])} | {_f(mem.get(other))} | |")
        if "process_peak_rss_gb" in mem:
            lines.append(f"| process peak RSS GB (both sides) | {_f(mem['process_peak_rss_gb'])} | | |")
        ts = m.get("task_switch", {})
        if "engine_switch_cost_s" in ts:
            for task in ("txt2img", "img2img", "inpaint"):
                lines.append(
                    f"| {task} job after another task / same task, s | {_f(ts['engine_s'][task + '_switch'], 3)} / {_f(ts['engine_s'][task + '_same'], 3)} | "
                    f"{_f(ts['diffusers_s'][task + '_switch'], 3)} / {_f(ts['diffusers_s'][task + '_same'], 3)} | |"
                )
            lines.append(f"| engine task-pipeline build (from_pipe), ms | {', '.join(f'{k} {v * 1000:.1f}' for k, v in ts['engine_task_pipeline_build_s'].items())} | | |")
        same = m.get("same_image_as_diffusers", {})
        for key in sorted(k for k in same if k.startswith("seed_")):
            lines.append(f"| same image as diffusers ({same['sampler']}, {key}): max abs pixel diff | {same[key]['max_abs_diff']} | | mean {_f(same[key]['mean_abs_diff'], 3)} |")
        lines.append("")
        pv = m.get("previews", {})
        if "off" in pv:
            lines.append("| previews (engine, batch 1) | denoise it/s | cost vs off | job start → first preview, s | job start → first step, s |")
            lines.append("| --- | --- | --- | --- | --- |")
            for mode in ("off", "latent", "taesd", "vae", "vae_every_step"):
                if mode in pv:
                    p = pv[mode]
                    lines.append(f"| {mode} | {_f(p['denoise_it_s'])} | {_pct(p['cost_vs_off']) if mode != 'off' else '–'} | {_f(p['start_to_first_preview_s'], 3)} | {_f(p['start_to_first_step_s'], 3)} |")
            lines.append("")
        xf = m.get("xformers")
        if xf:
            if xf.get("usable"):
                lines.append(f"xformers {xf.get('version')}: diffusers {_f(xf.get('diffusers_sdpa_it_s'))} it/s SDPA vs {_f(xf.get('diffusers_xformers_it_s'))} xformers (×{_f(xf.get('ratio_xformers_over_sdpa_diffusers'), 3)}); engine {_f(xf.get('engine_sdpa_it_s'))} vs {_f(xf.get('engine_xformers_it_s'))} (×{_f(xf.get('ratio_xformers_over_sdpa_engine'), 3)})")
            else:
                lines.append(f"xformers not usable: {xf.get('problem') or xf.get('error')}")
            lines.append("")
        oom = m.get("oom")
        if oom:
            lines.append(f"OOM check: {oom.get('request')} → {oom.get('result')}: {oom.get('message')!r}; next job {oom.get('next_job')} ({'ok' if oom.get('oom_message_ok') and oom.get('next_job_ok') else 'NOT ok'})")
            lines.append("")
        fast = m.get("fast")
        if fast:
            if "error" in fast or "skipped" in fast:
                lines.append(f"fast mode: {fast}")
            else:
                lines.append(f"fast mode: start (load + compile + warm-up) {_f(fast.get('start_s_including_compile'), 1)} s; "
                             + "; ".join(f"{k}: max abs pixel diff vs default {v['max_abs_diff']} (mean {_f(v['mean_abs_diff'], 3)})" for k, v in fast.items() if k.startswith("equal_")))
                lines.append("")
                lines.append("| fast mode | fast it/s | fast, previews off | diffusers it/s | ratio it/s | s/image fast | s/image diffusers | ratio e2e |")
                lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
                for key in sorted(k for k in fast if k.startswith("b")):
                    r = fast[key]
                    if "fast" not in r:
                        lines.append(f"| {key} | {r} | | | | | | |")
                        continue
                    lines.append(
                        f"| batch {key[1:]} | {_f(r['fast']['denoise_it_s'])} | {_f(r['fast_no_previews']['denoise_it_s'])} | {_f(r['diffusers']['denoise_it_s'])} | "
                        f"{_f(r.get('ratio_fast_over_diffusers_it_s'), 3)} | {_f(r['fast']['e2e_s_per_image'], 3)} | {_f(r['diffusers']['e2e_s_per_image'], 3)} | {_f(r.get('ratio_fast_over_diffusers_e2e_speed'), 3)} |"
                    )
            lines.append("")
        errors = {k: v for k, v in m.items() if isinstance(v, dict) and ("error" in v or "skipped" in v)}
        if errors:
            lines.append(f"sections not measured: {errors}")
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(render(json.load(open(path))))
        print()
