"""Step previews tab: a player, in the browser, for this user's recent jobs, step by step — the decoded frame (what
the image is becoming, or the noisy latent) and the 4 latent channels as grayscale images; play it, or download an
animation or a contact sheet.

The player is the page's own script (PLAYER_JS, run once with the studio's shortcuts): it lists the user's recent
jobs from the studio's per-user route (studio/web/frames.py), fetches each frame's pictures once into the browser's
memory, and plays them there — the picture, the slider and the caption change together, from one index. The jobs
come from the server, so a reload finds them again. Nothing goes through Gradio's file cache or route, and nothing
is written to disk. This module only writes HTML and script (no torch, no studio.web)."""

from __future__ import annotations

import gradio as gr

from .inside import CSS as INSIDE_CSS, INSIDE_JS, html as inside_html

TAB = "steps"
X0 = "x0 estimate (what the image is becoming)"
NOISY = "noisy latent (what the sampler holds)"
PLAY_FPS = 8
SPEEDS = (2, 4, 8, 15, 30)
NO_FRAMES = "No step frames yet: generate something, then come back here."
FRAMES_DROPPED = "The step frames of this job are no longer kept: the oldest jobs' frames are dropped to save memory."

CSS = """
#steps-player .steps-bar { display: flex; flex-wrap: wrap; gap: 10px 18px; align-items: center; margin-bottom: 8px; }
#steps-player select, #steps-player button { border: 1px solid var(--border-color-primary); border-radius: 6px;
  padding: 4px 10px; background: var(--button-secondary-background-fill); color: var(--body-text-color); }
#steps-player .steps-job { min-width: 18em; max-width: 42em; }
#steps-player .steps-caption { font-variant-numeric: tabular-nums; min-height: 1.5em; margin: 4px 0; }
#steps-player input[type=range] { width: 100%; }
#steps-player .steps-main { min-height: 256px; display: flex; justify-content: center; }
#steps-player .steps-main img { display: block; width: min(100%, 512px); height: auto; border-radius: 6px; }
#steps-player .steps-channels { display: flex; gap: 8px; justify-content: center; margin-top: 8px; }
#steps-player figure { flex: 1 1 0; max-width: 160px; margin: 0; }
#steps-player figure img { display: block; width: 100%; height: auto; border-radius: 4px; }
#steps-player figcaption { font-size: 0.8em; text-align: center; opacity: 0.75; }
#steps-player img:not([src]) { visibility: hidden; }
#steps-player .steps-controls { display: flex; gap: 10px; align-items: center; margin-top: 10px; flex-wrap: wrap; }
#steps-player .steps-play { background: var(--button-primary-background-fill); color: var(--button-primary-text-color); }
#steps-player .steps-export a { margin-right: 14px; }
"""


def player_html() -> str:
    """The player's markup; PLAYER_JS fills it. Static: nothing from a user goes in here."""
    speeds = "".join(f'<option value="{fps}"{" selected" if fps == PLAY_FPS else ""}>{fps} frames/s</option>' for fps in SPEEDS)
    channels = "".join(
        f'<figure><img class="steps-channel" data-channel="c{n}" alt="Latent channel {n}"><figcaption>Latent channel {n}</figcaption></figure>'
        for n in range(1, 5))
    return f"""
<div id="steps-player" data-empty="{NO_FRAMES}" data-dropped="{FRAMES_DROPPED}">
  <div class="steps-bar">
    <label>Job <select class="steps-job" title="Your recent jobs, newest first (kept in the server's memory)"></select></label>
    <button type="button" class="steps-refresh" title="Look for newer jobs">Refresh</button>
    <span role="radiogroup" aria-label="Frame">
      <label title="The sampler's current guess of the finished picture"><input type="radio" name="steps-view" value="x0" checked> {X0}</label>
      <label title="The latent as it stands at this step, noise included"><input type="radio" name="steps-view" value="noisy"> {NOISY}</label>
    </span>
  </div>
  <div class="steps-caption" aria-live="polite">{NO_FRAMES}</div>
  <input type="range" class="steps-slider" min="1" max="1" value="1" step="1" aria-label="Step">
  <div class="steps-main"><img class="steps-picture" alt="The picture at this step"></div>
  <div class="steps-channels">{channels}</div>
  <div class="steps-controls">
    <button type="button" class="steps-play" title="Play the steps in order (Space)">Play</button>
    <button type="button" class="steps-stop" title="Stop playing">Stop</button>
    <label>Speed <select class="steps-speed">{speeds}</select></label>
  </div>
  <div class="steps-export" hidden>Download:
    <a class="steps-export-gif" download title="The chosen frame kind, every step, looping">Animation (GIF)</a>
    <a class="steps-export-webp" download title="The chosen frame kind, every step, looping">Animation (WebP)</a>
    <a class="steps-export-sheet" download title="x0, noisy latent and the 4 channels per step, labelled, on one PNG">Contact sheet (PNG)</a>
  </div>{inside_html()}
</div>"""


# The player. Frames are fetched once each (as blobs, kept as object URLs for as long as their job is shown), so
# playing makes no request; one show(i) sets the picture, the channels, the slider and the caption together.
PLAYER_JS = """
  const steps = { jobs: [], job: null, frames: [], index: 0, urls: new Map(), playing: 0, poll: 0, loading: null };
  window.__studioSteps = steps;
  const stepsBox = () => document.getElementById('steps-player');
  const part = (name) => { const box = stepsBox(); return box ? box.querySelector('.steps-' + name) : null; };
  const stepsView = () => { const on = document.querySelector('#steps-player input[name=steps-view]:checked'); return on ? on.value : 'x0'; };
  const jobBase = (id) => `studio/api/jobs/${encodeURIComponent(id)}`;
  const stepsSay = (text) => { const c = part('caption'); if (c) c.textContent = text; };
  const frameUrl = (id, i, kind) => {
    const key = `${id}/${i}/${kind}`;
    if (!steps.urls.has(key)) steps.urls.set(key, fetch(`${jobBase(id)}/frames/${i}/${kind}.jpg`, { credentials: 'same-origin' })
      .then((r) => r.ok ? r.blob() : null).then((b) => b ? URL.createObjectURL(b) : null).catch(() => null));
    return steps.urls.get(key);
  };
  const forget = () => { for (const u of steps.urls.values()) u.then((url) => url && URL.revokeObjectURL(url)); steps.urls.clear(); };
  const kindsOf = () => [stepsView(), 'c1', 'c2', 'c3', 'c4'];
  const fetchAll = (id, from, to) => Promise.all([...Array(to - from + 1).keys()].flatMap((k) => kindsOf().map((kind) => frameUrl(id, from + k, kind))));
  const show = async (i) => {
    const id = steps.job, n = steps.frames.length;
    if (!id || !n) return;
    i = Math.min(Math.max(1, i), n);
    const [main, ...channels] = await Promise.all(kindsOf().map((kind) => frameUrl(id, i, kind)));
    if (id !== steps.job) return;
    const f = steps.frames[i - 1], picture = part('picture'), slider = part('slider');
    steps.index = i;
    if (picture && main) picture.src = main;
    stepsBox().querySelectorAll('.steps-channel').forEach((img, k) => { if (channels[k]) img.src = channels[k]; });
    if (slider) { slider.max = String(Math.max(n, 1)); slider.value = String(i); }
    stepsSay(`Step ${f.step} of ${f.total} · frame ${i}/${n}`);
    if (window.__studioInside) window.__studioInside.show(f.step);
  };
  const exportLinks = () => {
    const box = part('export'), id = steps.job;
    if (!box) return;
    box.hidden = !id || !steps.frames.length;
    if (box.hidden) return;
    box.querySelector('.steps-export-gif').href = `${jobBase(id)}/animation.gif?view=${stepsView()}`;
    box.querySelector('.steps-export-webp').href = `${jobBase(id)}/animation.webp?view=${stepsView()}`;
    box.querySelector('.steps-export-sheet').href = `${jobBase(id)}/contact-sheet.png`;
  };
  const stopPlaying = () => { steps.playing = 0; const b = part('play'); if (b) b.textContent = 'Play'; };
  const play = async () => {
    if (!steps.frames.length) return;
    const token = steps.playing = (steps.playing || 0) + 1, id = steps.job;
    const button = part('play');
    if (button) button.textContent = 'Loading…';
    await fetchAll(id, 1, steps.frames.length);  // every frame in memory before the first is shown: no stutter
    if (steps.playing !== token || id !== steps.job) return;
    if (button) button.textContent = 'Playing';
    const fps = Number((part('speed') || {}).value || 8), from = steps.index >= steps.frames.length ? 1 : steps.index || 1;
    const started = performance.now();
    const tick = async (now) => {
      if (steps.playing !== token || id !== steps.job) return;
      const i = Math.min(from + Math.floor((now - started) * fps / 1000), steps.frames.length);
      if (i !== steps.index) await show(i);
      if (i >= steps.frames.length && steps.job === id && !steps.running) { stopPlaying(); return; }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  };
  const loadFrames = async (id, keepIndex) => {
    const r = await fetch(`${jobBase(id)}/frames`, { credentials: 'same-origin' });
    if (id !== steps.job) return;
    const frames = r.ok ? await r.json() : [];
    const following = !keepIndex || steps.index === steps.frames.length;
    steps.frames = frames;
    const job = steps.jobs.find((j) => j.id === id) || {};
    if (!frames.length) { stepsSay(job.dropped ? stepsBox().dataset.dropped : stepsBox().dataset.empty); exportLinks(); return; }
    exportLinks();
    await show(following ? frames.length : steps.index);
    fetchAll(id, 1, frames.length);  // the rest arrive in the background
  };
  const watchRunning = () => {
    clearTimeout(steps.poll);
    const job = steps.jobs.find((j) => j.id === steps.job);
    steps.running = !!job && (job.status === 'running' || job.status === 'queued');
    if (!steps.running) return;
    steps.poll = setTimeout(async () => {
      if (!stepsBox() || stepsBox().offsetParent === null) { watchRunning(); return; }
      await refreshJobs(true);
    }, 1000);
  };
  const choose = async (id, keepIndex) => {
    if (id !== steps.job) { stopPlaying(); forget(); steps.job = id; steps.frames = []; steps.index = 0; }
    if (window.__studioInside) window.__studioInside.load(id);
    if (!id) { stepsSay(stepsBox().dataset.empty); exportLinks(); return; }
    await loadFrames(id, keepIndex);
    watchRunning();
  };
  const refreshJobs = async (keep) => {
    const select = part('job');
    if (!select) return;
    let jobs = [];
    try { const r = await fetch('studio/api/frames', { credentials: 'same-origin' }); if (r.ok) jobs = await r.json(); } catch (e) { /* offline: keep what is shown */ return; }
    steps.jobs = jobs;
    const label = (j) => `${j.prompt || '(no prompt)'} · ${j.dropped ? 'frames dropped' : j.frames + ' frames'}${j.status === 'running' || j.status === 'queued' ? ' · ' + j.status : ''}`;
    const wanted = keep && jobs.some((j) => j.id === steps.job) ? steps.job : (jobs[0] || {}).id || null;
    select.replaceChildren(...jobs.map((j) => { const o = document.createElement('option'); o.value = j.id; o.textContent = label(j); o.title = j.prompt; return o; }));
    if (wanted) select.value = wanted;
    await choose(wanted, keep && wanted === steps.job);
  };
  steps.refresh = () => refreshJobs(false);
  document.addEventListener('click', (e) => {
    const target = e.target.closest ? e.target.closest('#steps-player button') : null;
    if (!target) return;
    if (target.classList.contains('steps-play')) play();
    else if (target.classList.contains('steps-stop')) stopPlaying();
    else if (target.classList.contains('steps-refresh')) refreshJobs(false);
  });
  document.addEventListener('input', (e) => {
    if (e.target.closest && e.target.closest('#steps-player .steps-slider')) { stopPlaying(); show(Number(e.target.value)); }
  });
  document.addEventListener('change', (e) => {
    if (!(e.target.closest && e.target.closest('#steps-player'))) return;
    if (e.target.classList.contains('steps-job')) choose(e.target.value, false);
    else if (e.target.name === 'steps-view') { exportLinks(); show(steps.index); if (steps.frames.length) fetchAll(steps.job, 1, steps.frames.length); }
  });
  document.addEventListener('keydown', (e) => {
    if (e.key !== ' ' || !(e.target.closest && e.target.closest('#steps-player')) || e.target.tagName === 'SELECT') return;
    e.preventDefault(); steps.playing ? stopPlaying() : play();
  });
"""

PLAYER_JS += INSIDE_JS
CSS += INSIDE_CSS

REFRESH_JS = "() => { if (window.__studioSteps) window.__studioSteps.refresh(); }"


def build() -> dict:
    gr.Markdown("Your recent jobs, one frame per previewed sampling step (the first image of each job's first batch). "
                "They stay while the studio runs, across reloads; the oldest are dropped to save memory.")
    player = gr.HTML(player_html(), elem_id="steps-player-box")
    return dict(player=player, refresh_js=REFRESH_JS)

