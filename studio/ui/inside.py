"""Inside sampling, under the Step previews player: for a job that captured it (Settings → See inside sampling, or
"inspect" on /studio/api/jobs), the prompt as CLIP tokens, each word's attention map laid over the player's picture
(click a word; over every step or the step on the slider), what classifier-free guidance does at that step, the
noise schedule with the step marked, and what an img2img job started from.

The player's script calls INSIDE_JS's `load(job)` when a job is chosen and `step(n)` when its picture changes; the
views fetch the studio's per-user routes (studio/web/inspect_routes.py) once per job and step and keep the answers.
Static markup only: what a user typed reaches the page as text nodes, never as HTML. No torch."""

from __future__ import annotations

NOT_CAPTURED = ("This job did not look inside its sampling. Turn on Settings → See inside sampling, then make a new "
                "image: its tokens, attention maps, CFG and noise schedule show here.")

CSS = """
#steps-player .inside { margin-top: 18px; border-top: 1px solid var(--border-color-primary); padding-top: 10px; }
#steps-player .inside h3 { margin: 0 0 6px 0; font-size: 1.05em; }
#steps-player .inside-note { opacity: 0.75; font-size: 0.9em; }
#steps-player .inside-tokens { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; margin: 6px 0; }
#steps-player .inside-token { border: 1px solid var(--border-color-primary); border-radius: 4px; padding: 1px 6px;
  font-family: var(--font-mono); font-size: 0.85em; background: var(--background-fill-secondary); cursor: pointer; }
#steps-player .inside-token[aria-pressed=true] { background: var(--button-primary-background-fill);
  color: var(--button-primary-text-color); }
#steps-player .inside-token .w { opacity: 0.7; font-size: 0.8em; margin-left: 3px; }
#steps-player .inside-token.embedding { border-style: dashed; }
#steps-player .inside-token.lora { border-style: dotted; cursor: default; opacity: 0.8; }
#steps-player .inside-chunk { font-size: 0.75em; opacity: 0.6; margin: 0 4px; }
#steps-player .steps-main { position: relative; }
#steps-player .steps-heat { position: absolute; pointer-events: none; border-radius: 6px; }
#steps-player .inside-row { display: flex; gap: 8px; flex-wrap: wrap; margin-top: 8px; }
#steps-player .inside-row figure { flex: 1 1 0; min-width: 110px; max-width: 200px; margin: 0; }
#steps-player .inside-row figure img { width: 100%; height: auto; border-radius: 4px; image-rendering: auto; }
#steps-player .inside-schedule svg { width: 100%; max-width: 560px; height: 170px; display: block; }
#steps-player .inside-schedule .curve { fill: none; stroke: var(--color-accent, #f97316); stroke-width: 2; }
#steps-player .inside-schedule .axis { stroke: var(--body-text-color-subdued, #888); stroke-width: 1; }
#steps-player .inside-schedule text { fill: var(--body-text-color, #333); font-size: 11px; }
#steps-player .inside-schedule .now { fill: var(--color-accent, #f97316); }
"""


def html() -> str:
    """The views' markup, inside the player's box; INSIDE_JS fills it."""
    cfg = "".join(f'<figure><img class="inside-cfg-{kind}" alt="{label}"><figcaption>{label}</figcaption></figure>'
                  for kind, label in (("uncond", "Unconditional (negative prompt)"), ("cond", "Conditional (your prompt)"),
                                      ("guided", "Guided (what CFG samples)"), ("difference", "What guidance adds (gray: nothing)")))
    return f"""
  <div class="inside" data-none="{NOT_CAPTURED}">
    <h3>Inside sampling</h3>
    <div class="inside-note" aria-live="polite">{NOT_CAPTURED}</div>
    <div class="inside-body" hidden>
      <div><strong>Prompt tokens</strong> <span class="inside-note">click a word to lay its attention over the picture;
        dashed: an embedding, dotted: a LoRA (not a token)</span></div>
      <div class="inside-tokens" role="group" aria-label="Prompt tokens"></div>
      <label class="inside-note"><input type="checkbox" class="inside-this-step"> this step's attention only
        (otherwise: summed over every step)</label>
      <div class="inside-cfg-box"><strong>What CFG does</strong> <span class="inside-cfg-caption inside-note"></span>
        <div class="inside-row">{cfg}</div></div>
      <div class="inside-start-box" hidden><strong>What sampling started from</strong>
        <span class="inside-start-caption inside-note"></span>
        <div class="inside-row"><figure><img class="inside-start" alt="The input after forward diffusion"></figure></div></div>
      <div class="inside-schedule"><strong>Noise schedule</strong> <span class="inside-note">sigma per step (log scale), the
        slider's step marked</span><svg role="img" aria-label="Noise level per step"></svg></div>
    </div>
  </div>"""


# Fetches are kept per job (and per step): moving the slider back and forth asks the server nothing new.
INSIDE_JS = """
  const inside = { job: null, tokens: null, maps: null, stepMaps: new Map(), cfg: new Map(), schedule: null, word: null, step: 0 };
  window.__studioInside = inside;
  const insideBox = () => document.querySelector('#steps-player .inside');
  const insidePart = (name) => { const box = insideBox(); return box ? box.querySelector('.inside-' + name) : null; };
  const getJson = async (url) => { try { const r = await fetch(url, { credentials: 'same-origin' }); return r.ok ? await r.json() : null; } catch (e) { return null; } };
  const insideNote = (text) => { const n = insideBox() && insideBox().querySelector(':scope > .inside-note'); if (n) n.textContent = text; };
  const heatLayer = () => {
    const main = document.querySelector('#steps-player .steps-main');
    if (!main) return null;
    let canvas = main.querySelector('.steps-heat');
    if (!canvas) { canvas = document.createElement('canvas'); canvas.className = 'steps-heat'; main.appendChild(canvas); }
    return canvas;
  };
  const clearHeat = () => { const c = heatLayer(); if (c) c.hidden = true; };
  // A grayscale map drawn as a warm overlay: transparent where cold, red to yellow where hot.
  const drawHeat = (b64) => {
    const canvas = heatLayer(), picture = document.querySelector('#steps-player .steps-picture');
    if (!canvas || !picture) return;
    const image = new Image();
    image.onload = () => {
      canvas.width = image.width; canvas.height = image.height;
      const g = canvas.getContext('2d');
      g.drawImage(image, 0, 0);
      const data = g.getImageData(0, 0, image.width, image.height), px = data.data;
      for (let k = 0; k < px.length; k += 4) {
        const v = px[k] / 255;
        px[k] = 255; px[k + 1] = Math.round(255 * v); px[k + 2] = 0; px[k + 3] = Math.round(200 * v);
      }
      g.putImageData(data, 0, 0);
      canvas.style.left = picture.offsetLeft + 'px'; canvas.style.top = picture.offsetTop + 'px';
      canvas.style.width = picture.offsetWidth + 'px'; canvas.style.height = picture.offsetHeight + 'px';
      canvas.hidden = false;
    };
    image.src = 'data:image/png;base64,' + b64;
  };
  const thisStepOnly = () => { const c = insidePart('this-step'); return !!(c && c.checked); };
  const mapsFor = async (step) => {
    const base = jobBase(inside.job);
    if (!thisStepOnly()) { inside.maps = inside.maps || await getJson(`${base}/attention`); return inside.maps; }
    if (!inside.stepMaps.has(step)) inside.stepMaps.set(step, getJson(`${base}/attention?step=${step}`));
    return inside.stepMaps.get(step);
  };
  const showHeat = async () => {
    if (inside.word === null || !inside.job) { clearHeat(); return; }
    const job = inside.job, maps = await mapsFor(inside.step);
    if (job !== inside.job || !maps) return;
    const word = (maps.tokens || []).find((t) => t.index === inside.word);
    if (word) drawHeat(word.heatmap); else clearHeat();
  };
  const chip = (text, cls, title) => { const b = document.createElement('button'); b.type = 'button'; b.className = 'inside-token ' + cls; b.textContent = text; if (title) b.title = title; return b; };
  const showTokens = (tokens, words) => {
    const box = insidePart('tokens');
    if (!box) return;
    const chips = [];
    let chunk = 0;
    for (const w of words) {
      const c = Math.floor((w.positions[0] || 0) / 77);  // 77 context positions a chunk
      if (c !== chunk) { const s = document.createElement('span'); s.className = 'inside-chunk'; s.textContent = `| chunk ${c + 1}`; chips.push(s); chunk = c; }
      const own = tokens.tokens.filter((t) => w.positions.includes(t.position)).map((t) => `${t.text} #${t.id}`).join(', ');
      const b = chip(w.text, w.embedding ? 'embedding' : 'word', `${w.embedding ? 'embedding' : 'tokens'}: ${own} · weight ${w.weight}`);
      b.dataset.word = String(w.index);
      b.setAttribute('aria-pressed', String(inside.word === w.index));
      if (w.weight !== 1) { const s = document.createElement('span'); s.className = 'w'; s.textContent = `×${w.weight}`; b.appendChild(s); }
      chips.push(b);
    }
    const count = document.createElement('span');
    count.className = 'inside-chunk';
    count.textContent = `${tokens.tokens.length} tokens in ${tokens.chunks} chunk${tokens.chunks > 1 ? 's' : ''} of 75`;
    chips.push(count);
    for (const l of tokens.loras || []) chips.push(chip(`<lora:${l.name}:${l.weight}>`, 'lora', 'a LoRA tag: applied to the model, not a token'));
    box.replaceChildren(...chips);
  };
  const cfgAt = (step) => {
    if (!inside.cfg.has(step)) inside.cfg.set(step, getJson(`${jobBase(inside.job)}/cfg?step=${step}`));
    return inside.cfg.get(step);
  };
  const showCfg = async () => {
    const job = inside.job, view = await cfgAt(inside.step), box = insideBox() && insideBox().querySelector('.inside-cfg-box');
    if (job !== inside.job || !box) return;
    box.hidden = !view;
    if (!view) return;
    for (const kind of ['uncond', 'cond', 'guided', 'difference']) {
      const img = insidePart('cfg-' + kind);
      if (img) { if (view[kind]) img.src = 'data:image/png;base64,' + view[kind]; else img.removeAttribute('src'); }
    }
    const caption = insidePart('cfg-caption');
    if (caption) caption.textContent = `step ${view.step} of ${view.steps}, CFG ${view.cfg_scale}` + (view.uncond ? ': each prediction as the picture it implies' : ': CFG 1 makes no unconditional prediction');
  };
  const svgNode = (name, attrs, text) => { const n = document.createElementNS('http://www.w3.org/2000/svg', name); for (const k in attrs) n.setAttribute(k, attrs[k]); if (text !== undefined) n.textContent = text; return n; };
  const showSchedule = () => {
    const svg = insideBox() && insideBox().querySelector('.inside-schedule svg'), s = inside.schedule;
    if (!svg || !s || !s.sigmas.length) return;
    const W = 560, H = 170, L = 44, R = 10, T = 10, B = 26, n = s.sigmas.length;
    const logs = s.sigmas.map((v) => Math.log10(Math.max(v, 1e-3)));
    const hi = Math.max(...logs), lo = Math.min(...logs), span = hi - lo || 1;
    const x = (i) => L + (n === 1 ? 0 : i * (W - L - R) / (n - 1)), y = (v) => T + (hi - v) * (H - T - B) / span;
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    const parts = [svgNode('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }), svgNode('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
      svgNode('polyline', { class: 'curve', points: logs.map((v, i) => `${x(i)},${y(v)}`).join(' ') }),
      svgNode('text', { x: 2, y: y(hi) + 4 }, s.sigmas[0].toPrecision(3)), svgNode('text', { x: 2, y: y(lo) + 4 }, s.sigmas[n - 1].toPrecision(2)),
      svgNode('text', { x: L, y: H - 8 }, 'step 1'), svgNode('text', { x: W - R - 40, y: H - 8 }, `step ${n}`)];
    if (inside.step >= 1 && inside.step <= n) {
      const i = inside.step - 1;
      parts.push(svgNode('circle', { class: 'now', cx: x(i), cy: y(logs[i]), r: 5 }));
      parts.push(svgNode('text', { x: Math.min(x(i) + 8, W - 120), y: Math.max(y(logs[i]) - 8, 12) }, `step ${inside.step}: sigma ${s.sigmas[i].toPrecision(3)}`));
    }
    svg.replaceChildren(...parts);
  };
  inside.load = async (id) => {
    if (id === inside.job && inside.tokens) return;  // (a running job's capture comes when it ends: ask again)
    Object.assign(inside, { job: id, tokens: null, maps: null, schedule: null, word: null, step: 0 });
    inside.stepMaps.clear(); inside.cfg.clear(); clearHeat();
    const body = insidePart('body');
    if (body) body.hidden = true;
    insideNote(insideBox() ? insideBox().dataset.none : '');
    if (!id) return;
    const base = jobBase(id);
    const [tokens, schedule, start] = await Promise.all([getJson(`${base}/tokens`), getJson(`${base}/schedule`), getJson(`${base}/start`)]);
    if (id !== inside.job || !tokens) return;
    const maps = await getJson(`${base}/attention`);
    if (id !== inside.job) return;
    Object.assign(inside, { tokens, schedule, maps });
    const words = maps ? maps.tokens : [];
    showTokens(tokens, words);
    insideNote(maps ? '' : 'This job captured what CFG does but not attention (Settings → See inside sampling).');
    const startBox = insideBox().querySelector('.inside-start-box');
    startBox.hidden = !(start && start.denoising_strength !== null && start.image);
    if (!startBox.hidden) {
      insidePart('start').src = 'data:image/png;base64,' + start.image;
      insidePart('start-caption').textContent = `denoising strength ${start.denoising_strength}: the input after forward diffusion to that noise level; ${start.steps} steps ran from here`;
    }
    if (body) body.hidden = false;
    inside.step = Math.max(1, Math.min(inside.step || (schedule ? schedule.sigmas.length : 1), schedule ? schedule.sigmas.length : 1));
    showSchedule(); showCfg();
  };
  inside.show = (step) => {
    if (!inside.job || !inside.schedule) return;
    inside.step = Math.max(1, Math.min(step, inside.schedule.sigmas.length));
    showSchedule(); showCfg(); showHeat();
  };
  document.addEventListener('click', (e) => {
    const b = e.target.closest ? e.target.closest('#steps-player .inside-token[data-word]') : null;
    if (!b) return;
    const index = Number(b.dataset.word);
    inside.word = inside.word === index ? null : index;
    document.querySelectorAll('#steps-player .inside-token[data-word]').forEach((t) => t.setAttribute('aria-pressed', String(Number(t.dataset.word) === inside.word)));
    const sheet = document.querySelector('#steps-player .steps-export-sheet'), chosen = inside.maps && inside.maps.tokens.find((t) => t.index === inside.word);
    if (sheet && inside.job) sheet.href = `${jobBase(inside.job)}/contact-sheet.png` + (chosen ? `?words=${encodeURIComponent(chosen.text)}` : '');
    showHeat();
  });
  document.addEventListener('change', (e) => { if (e.target.closest && e.target.closest('#steps-player .inside-this-step')) showHeat(); });
"""
