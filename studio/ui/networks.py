"""The Networks panel of a generate tab (A1111's extra networks): the LoRAs and the embeddings the operator's folders
hold, as cards; clicking a LoRA's card puts `<lora:name:1>` into the tab's prompt (clicking again takes it out), an
embedding's card puts its name. The insertion happens in the browser (studio/ui/__init__.py's page script), so the
prompt's own change event (and its token counter) follows as if the user had typed it.

What the panel shows is names only: LoRA previews come from the studio's own route, which finds the picture by the
LoRA's name in the library (never a path a client sent)."""

from __future__ import annotations

import html
import logging
from typing import Optional
from urllib.parse import quote

log = logging.getLogger(__name__)

LORA_PREVIEWS = "/studio/api/loras/"  # + quoted name + "/preview" (studio/web/studio_routes.py)
MAX_CARDS = 2000  # a folder with more shows the first ones and says so

NO_LORAS = ("No LoRAs found. Put LoRA <code>.safetensors</code> files in the LoRA folder (<code>models/Lora</code> "
            "where the studio starts, or the folder its <code>--lora-dir</code> setting names), with a preview picture "
            "beside each if you like (<code>name.png</code>, <code>.jpg</code> or <code>.webp</code>), then press Refresh.")
NO_EMBEDDINGS = ("No embeddings found. Put textual-inversion <code>.safetensors</code> files in the embeddings folder "
                 "(<code>embeddings</code> where the studio starts, or the folder its <code>--embeddings-dir</code> "
                 "setting names), then press Refresh.")


def lora_preview_url(name: str) -> str:
    return f"{LORA_PREVIEWS}{quote(name, safe='')}/preview"


def lora_tag(name: str) -> str:
    return f"<lora:{name}:1>"


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _lora_card(tab: str, entry: dict) -> str:
    name = str(entry.get("name") or "")
    alias = str(entry.get("alias") or name)
    tag = lora_tag(name)
    letter = html.escape(name[:1].upper() or "?")
    subtitle = f"<span class='studio-card-alias'>{html.escape(alias)}</span>" if alias != name else ""
    return (
        f"<button type='button' class='studio-card studio-lora' data-tab='{_attr(tab)}' data-insert='{_attr(tag)}' "
        f"data-name='{_attr(name)}' title='{_attr(f'Click to add {tag} to the prompt (click again to take it out)')}'>"
        f"<span class='studio-card-thumb'><span class='studio-card-letter'>{letter}</span>"
        # A background, not an <img>: a LoRA without a preview (the route's 404) leaves the letter showing.
        f"<span class='studio-card-picture' style=\"background-image: url('{_attr(lora_preview_url(name))}')\"></span></span>"
        f"<span class='studio-card-name'>{html.escape(name)}</span>{subtitle}</button>"
    )


def _embedding_card(tab: str, name: str, info: dict) -> str:
    vectors = info.get("vectors") if isinstance(info, dict) else None
    detail = f"{vectors} vector{'s' if vectors != 1 else ''}" if isinstance(vectors, int) else ""
    return (
        f"<button type='button' class='studio-card studio-embedding' data-tab='{_attr(tab)}' data-insert='{_attr(name)}' "
        f"data-name='{_attr(name)}' title='{_attr(f'Click to add {name} to the prompt')}'>"
        f"<span class='studio-card-name'>{html.escape(name)}</span>"
        f"<span class='studio-card-alias'>{html.escape(detail)}</span></button>"
    )


def networks_html(tab: str, loras: Optional[list], embeddings: Optional[dict]) -> str:
    """The panel's cards: LoRAs (service.loras()) and the embeddings that fit the model (service.embeddings())."""
    loras = [entry for entry in (loras or []) if isinstance(entry, dict) and entry.get("name")]
    embeddings = embeddings if isinstance(embeddings, dict) else {}
    loaded = embeddings.get("loaded") if isinstance(embeddings.get("loaded"), dict) else {}
    skipped = embeddings.get("skipped") if isinstance(embeddings.get("skipped"), dict) else {}
    parts = ["<div class='studio-networks'>"]

    parts.append(f"<div class='studio-networks-head'>LoRA <span class='studio-networks-count'>{len(loras)}</span></div>")
    if loras:
        cards = "".join(_lora_card(tab, entry) for entry in loras[:MAX_CARDS])
        parts.append(f"<div class='studio-cards studio-lora-cards'>{cards}</div>")
        if len(loras) > MAX_CARDS:
            parts.append(f"<p class='studio-networks-note'>Showing the first {MAX_CARDS} of {len(loras)}.</p>")
    else:
        parts.append(f"<p class='studio-networks-empty'>{NO_LORAS}</p>")

    parts.append(f"<div class='studio-networks-head'>Embeddings <span class='studio-networks-count'>{len(loaded)}</span></div>")
    if loaded:
        cards = "".join(_embedding_card(tab, str(name), info) for name, info in list(loaded.items())[:MAX_CARDS])
        parts.append(f"<div class='studio-cards studio-embedding-cards'>{cards}</div>")
    elif not skipped:
        parts.append(f"<p class='studio-networks-empty'>{NO_EMBEDDINGS}</p>")
    if skipped:
        names = ", ".join(html.escape(str(name)) for name in list(skipped)[:20]) + (" …" if len(skipped) > 20 else "")
        parts.append(f"<p class='studio-networks-note'>Not for the current model (made for another model family): {names}</p>")
    parts.append("</div>")
    return "".join(parts)


def listing(job_service) -> tuple[list, dict]:
    """(LoRAs, embeddings) from the service; an unreadable folder lists nothing rather than breaking the page."""
    try:
        loras = job_service.loras()
    except Exception:  # the panel must not take the tab down with it
        log.exception("Listing LoRAs failed")
        loras = []
    try:
        embeddings = job_service.embeddings()
    except Exception:
        log.exception("Listing embeddings failed")
        embeddings = {}
    return loras, embeddings


def embedding_vectors(job_service) -> dict[str, int]:
    """name → vector count of the embeddings the current model can use (for the token counter)."""
    try:
        loaded = (job_service.embeddings() or {}).get("loaded") or {}
    except Exception:
        log.exception("Listing embeddings failed")
        return {}
    out = {}
    for name, info in loaded.items():
        vectors = info.get("vectors") if isinstance(info, dict) else None
        out[str(name)] = vectors if isinstance(vectors, int) and vectors > 0 else 1
    return out


def style_names(job_service) -> list[str]:
    try:
        return [str(style.name) for style in job_service.styles() or [] if getattr(style, "name", None)]
    except Exception:
        log.exception("Reading the styles file failed")
        return []


AUTOMATIC_VAE = "Automatic"


def vae_names(job_service) -> list[str]:
    try:
        names = [str(entry.get("model_name")) for entry in job_service.vaes() or [] if isinstance(entry, dict) and entry.get("model_name")]
    except Exception:
        log.exception("Listing VAEs failed")
        names = []
    return [AUTOMATIC_VAE] + [name for name in names if name != AUTOMATIC_VAE]


CSS = """
.studio-networks { font-size: 0.9em; }
.studio-networks-head { font-weight: 600; margin: 2px 0 6px; }
.studio-networks-count { font-weight: 400; color: var(--body-text-color-subdued); margin-left: 4px; }
.studio-networks-empty, .studio-networks-note { color: var(--body-text-color-subdued); margin: 0 0 10px; }
.studio-networks code { font-size: 0.95em; color: inherit; }
.studio-cards { display: flex; flex-wrap: wrap; gap: 8px; max-height: 17em; overflow-y: auto; margin-bottom: 10px; padding: 1px; }
.studio-card { display: flex; flex-direction: column; align-items: stretch; width: 112px; padding: 0; cursor: pointer;
               border: 1px solid var(--border-color-primary); border-radius: 8px; background: var(--block-background-fill);
               color: var(--body-text-color); text-align: left; overflow: hidden; }
.studio-card:hover, .studio-card:focus-visible { border-color: var(--color-accent); box-shadow: 0 0 0 1px var(--color-accent); }
.studio-card-thumb { position: relative; display: block; width: 100%; height: 112px; background: var(--background-fill-secondary); }
.studio-card-letter { position: absolute; inset: 0; display: flex; align-items: center; justify-content: center;
                      font-size: 2.2em; font-weight: 600; color: var(--body-text-color-subdued); }
.studio-card-picture { position: absolute; inset: 0; background-size: cover; background-position: center; }
.studio-card-name { display: block; padding: 4px 6px 0; font-weight: 600; font-size: 0.85em; overflow-wrap: anywhere; line-height: 1.25; }
.studio-card-alias { display: block; padding: 0 6px 5px; color: var(--body-text-color-subdued); font-size: 0.8em; overflow-wrap: anywhere; line-height: 1.25; }
.studio-card-name:last-child { padding-bottom: 5px; }
.studio-embedding { width: auto; min-width: 90px; max-width: 220px; }
.studio-embedding .studio-card-name { padding-top: 5px; }
"""

# In the page script: a card's click puts its text into its tab's prompt (a LoRA's tag toggles).
CARD_JS = r"""
  const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  document.addEventListener('click', (e) => {
    const card = e.target && e.target.closest ? e.target.closest('.studio-card[data-insert]') : null;
    if (!card || !/^[a-z0-9]+$/.test(card.dataset.tab || '')) return;
    const area = document.querySelector(`#${card.dataset.tab}-prompt textarea`);
    if (!area) return;
    const text = card.dataset.insert;
    let value = area.value;
    const lora = card.classList.contains('studio-lora') ? new RegExp('\\s*<lora:' + escapeRe(card.dataset.name) + '(:[^>]*)?>', 'g') : null;
    if (lora && lora.test(value)) {
      value = value.replace(lora, '').replace(/^\s+/, '');
    } else {
      value = value.replace(/\s+$/, '');
      value = value ? value + ' ' + text : text;
    }
    area.value = value;
    area.dispatchEvent(new Event('input', { bubbles: true }));
  });
"""
