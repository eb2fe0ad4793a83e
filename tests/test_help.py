"""--help of app.py and python -m studio (generate): grouped, one help line per flag that says its default once, and
the same parsed results as before the help was reworked (flags, defaults and Settings unchanged)."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

from studio import cli
from studio.config import DEFAULT_MODEL, Settings, StudioHelpFormatter, add_engine_arguments, settings_from_args

ROOT = Path(__file__).resolve().parent.parent


def _app_module():
    spec = importlib.util.spec_from_file_location("studio_app_entry", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def app_parser() -> argparse.ArgumentParser:
    return _app_module().parser()


def generate_parser() -> argparse.ArgumentParser:
    parser = cli._parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices["generate"]


# ---- the parsed results: exactly what they were


def _settings(argv: list[str]) -> Settings:
    return settings_from_args(app_parser().parse_args(argv))


DEFAULT_CACHE = Settings().cache_dir

SETTINGS_CASES = [
    ([], {}),
    (["--model", "tiny", "--models-dir", "ckpts", "--max-models", "3", "--allow-pickle", "--caption-model", "blip"],
     {"model": "tiny", "models_dir": Path("ckpts"), "max_models": 3, "allow_pickle": True, "caption_model": "blip"}),
    (["--device", "cuda:1", "--dtype", "bf16", "--attention", "sdpa", "--fast", "--no-warmup", "--preview", "vae",
      "--preview-every", "4"],
     {"device": "cuda:1", "dtype": "bf16", "attention": "sdpa", "fast": True, "warmup": False, "preview": "vae",
      "preview_every": 4}),
    (["--max-queue-per-user", "5", "--no-dynamic-batching", "--batch-wait-ms", "250"],
     {"max_queue_per_user": 5, "dynamic_batching": False, "batch_wait_ms": 250}),
    (["--max-size", "1024", "--max-steps", "60", "--max-batch", "2", "--max-image-pixels", "1000000", "--max-frames-mb", "64"],
     {"max_size": 1024, "max_steps": 60, "max_batch": 2, "max_image_pixels": 1000000, "max_frames_mb": 64}),
    # the clamps settings_from_args applies
    (["--max-models", "0", "--batch-wait-ms", "-5", "--max-image-pixels", "1", "--max-frames-mb", "-1"],
     {"max_models": 1, "batch_wait_ms": 0, "max_image_pixels": 64 * 64, "max_frames_mb": 0}),
    (["--outputs", "out", "--cache-dir", "/tmp/c", "--lora-dir", "L", "--embeddings-dir", "E", "--styles-file", "s.csv",
      "--vae-dir", "V", "--upscaler-dir", "U", "--gfpgan-models-path", "G", "--codeformer-models-path", "C"],
     {"outputs": Path("out"), "cache_dir": Path("/tmp/c"), "lora_dir": Path("L"), "embeddings_dir": Path("E"),
      "styles_file": Path("s.csv"), "vae_dir": Path("V"), "upscaler_dir": Path("U"), "gfpgan_dir": Path("G"),
      "codeformer_dir": Path("C")}),
    # the server's own flags change no setting
    (["--listen", "--port", "8000", "--no-browser", "--auth", "a:b", "--admin", "a", "--tls-keyfile", "k", "--tls-certfile", "c"], {}),
]


def test_settings_defaults_are_what_they_were():
    s = _settings([])
    assert s == Settings(cache_dir=DEFAULT_CACHE)
    assert (s.model, s.models_dir, s.outputs, s.device, s.dtype, s.attention, s.preview, s.preview_every) == (
        None, None, Path("outputs"), "auto", "auto", "auto", "latent", None)
    assert (s.max_models, s.max_size, s.max_steps, s.max_batch, s.max_image_pixels, s.max_queue_per_user, s.max_frames_mb) == (
        1, 2048, 150, 8, 4096 * 4096, 0, 512)
    assert (s.dynamic_batching, s.batch_wait_ms, s.allow_pickle, s.warmup, s.fast) == (True, 0, False, True, False)
    assert (s.lora_dir, s.embeddings_dir, s.vae_dir, s.styles_file, s.upscaler_dir, s.gfpgan_dir, s.codeformer_dir) == (
        Path("models/Lora"), Path("embeddings"), Path("models/VAE"), Path("styles.csv"), Path("models/ESRGAN"),
        Path("models/GFPGAN"), Path("models/Codeformer"))
    assert s.caption_model is None and s.cache_dir == DEFAULT_CACHE


@pytest.mark.parametrize("argv,changes", SETTINGS_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_settings_from_app_args(argv, changes):
    assert _settings(argv) == Settings(**{"cache_dir": DEFAULT_CACHE, **changes})


@pytest.mark.parametrize("argv,changes", SETTINGS_CASES[:-1], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_settings_from_generate_args_match_app_py(argv, changes):
    args = generate_parser().parse_args(["--prompt", "p", *argv])
    assert settings_from_args(args) == Settings(**{"cache_dir": DEFAULT_CACHE, **changes})


def test_a_plain_argparse_parser_still_takes_the_engine_flags():
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    assert settings_from_args(parser.parse_args(["--fast", "--no-warmup"])) == Settings(cache_dir=DEFAULT_CACHE, fast=True, warmup=False)


def test_app_server_flags_parse_as_before():
    args = app_parser().parse_args([])
    assert (args.listen, args.port, args.no_browser, args.auth, args.auth_file, args.admin, args.tls_keyfile, args.tls_certfile) == (
        False, 7860, False, None, None, [], None, None)
    args = app_parser().parse_args(["--listen", "--port", "9", "--admin", "a", "--admin", "b,c", "--auth-file", "u.txt"])
    assert (args.listen, args.port, args.admin, args.auth_file) == (True, 9, ["a", "b,c"], Path("u.txt"))


GENERATE_DEFAULTS = {
    "command": "generate", "verbose": False, "prompt": "p", "negative_prompt": "", "styles": [], "sampler": "Euler a",
    "scheduler": None, "steps": 20, "cfg_scale": 7.0, "seed": -1, "subseed": -1, "subseed_strength": 0.0, "clip_skip": 1,
    "width": None, "height": None, "batch_size": 1, "batch_count": 1, "vae": None, "tiling": False, "restore_faces": None,
    "codeformer_weight": 0.5, "init_image": None, "denoising_strength": 0.75, "mask": None, "mask_blur": 4, "hires": False,
    "hr_scale": 2.0, "hr_upscaler": "Latent", "hr_steps": 0, "hr_denoising_strength": 0.7, "out": None,
}


def test_generate_request_flags_parse_as_before():
    args = vars(cli._parser().parse_args(["generate", "--prompt", "p"]))
    assert {k: args[k] for k in GENERATE_DEFAULTS} == GENERATE_DEFAULTS
    argv = ["generate", "--prompt", "p", "--negative-prompt", "n", "--styles", "a", "--styles", "b", "--sampler", "DDIM",
            "--scheduler", "Karras", "--steps", "3", "--cfg-scale", "2.5", "--seed", "5", "--subseed", "7",
            "--subseed-strength", "0.2", "--clip-skip", "2", "--width", "64", "--height", "128", "--batch-size", "2",
            "--batch-count", "3", "--vae", "v.pt", "--tiling", "--restore-faces", "--codeformer-weight", "0.1",
            "--init-image", "i.png", "--denoising-strength", "0.3", "--mask", "m.png", "--mask-blur", "2", "--hires",
            "--hr-scale", "1.5", "--hr-upscaler", "Lanczos", "--hr-steps", "4", "--hr-denoising-strength", "0.4",
            "--out", "o", "-v"]
    args = vars(cli._parser().parse_args(argv))
    assert {k: args[k] for k in GENERATE_DEFAULTS} == {
        "command": "generate", "verbose": True, "prompt": "p", "negative_prompt": "n", "styles": ["a", "b"], "sampler": "DDIM",
        "scheduler": "Karras", "steps": 3, "cfg_scale": 2.5, "seed": 5, "subseed": 7, "subseed_strength": 0.2, "clip_skip": 2,
        "width": 64, "height": 128, "batch_size": 2, "batch_count": 3, "vae": "v.pt", "tiling": True, "restore_faces": "",
        "codeformer_weight": 0.1, "init_image": Path("i.png"), "denoising_strength": 0.3, "mask": Path("m.png"),
        "mask_blur": 2, "hires": True, "hr_scale": 1.5, "hr_upscaler": "Lanczos", "hr_steps": 4,
        "hr_denoising_strength": 0.4, "out": Path("o")}
    assert cli._parser().parse_args(["generate", "--prompt", "p", "--restore-faces", "GFPGAN"]).restore_faces == "GFPGAN"


def test_required_and_bad_values_still_fail(capsys):
    for parse, argv in [(cli._parser().parse_args, ["generate"]), (app_parser().parse_args, ["--dtype", "fp8"]),
                        (app_parser().parse_args, ["--preview", "nope"]), (app_parser().parse_args, ["--port", "x"])]:
        with pytest.raises(SystemExit) as exc:
            parse(argv)
        assert exc.value.code == 2
    assert "--prompt" in capsys.readouterr().err.split("error:")[1]


# ---- the help text


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.help is not argparse.SUPPRESS]


def _expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return parser._get_formatter()._expand_help(action)


def _help_text(parser: argparse.ArgumentParser, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag: nothing split by wrapping
    return parser.format_help()


PARSERS = {"app.py": app_parser, "python -m studio generate": generate_parser}
TITLES = {
    "app.py": ["model", "engine and device", "server", "limits", "folders and files"],
    "python -m studio generate": ["prompt", "sampling", "image", "image to image and inpainting", "hires fix",
                                  "model", "engine and device", "limits", "folders and files", "server"],
}


def _server_flags() -> set[str]:
    """studio/web/app.py's flags: their help lines are that module's (app.py only fills in a missing one)."""
    from studio.web.app import add_server_arguments

    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    return {a.option_strings[-1] for a in _options(parser)} - {"--help"}


@pytest.mark.parametrize("name", PARSERS)
def test_every_flag_has_one_help_line_with_its_default_once(name):
    parser = PARSERS[name]()
    theirs = _server_flags()
    assert isinstance(parser.formatter_class(prog="x"), StudioHelpFormatter)
    for action in _options(parser):
        flag = action.option_strings[-1]
        text = _expanded_help(parser, action)
        assert text and text.strip(), f"{flag} has no help"
        assert "\n" not in text, f"{flag}: one line"
        assert "(default: None)" not in text and "default: None" not in text, f"{flag}: {text}"
        assert text.lower().count("default") <= 1, f"{flag} says its default more than once: {text}"
        if action.nargs == 0:  # on/off flags say what they turn on or off, not "(default: True)"
            assert not re.search(r"default: (True|False)", text), f"{flag}: {text}"
        elif flag not in theirs and not action.required:
            assert "default" in text, f"{flag} takes a value but does not say its default: {text}"
        if action.required:
            assert "required" in text, f"{flag}: {text}"


@pytest.mark.parametrize("name", PARSERS)
def test_help_output_groups_and_no_repeated_defaults(name, monkeypatch):
    parser = PARSERS[name]()
    text = _help_text(parser, monkeypatch)
    assert "(default: None)" not in text
    headings = [line[:-1] for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    for title in TITLES[name]:
        assert any(h == title or h.startswith(title + " ") for h in headings), (title, headings)
    order = [next(i for i, h in enumerate(headings) if h == t or h.startswith(t + " ")) for t in TITLES[name]]
    assert order == sorted(order), headings
    assert len(headings) == len(set(headings)), f"a heading twice: {headings}"
    # each flag's line: its default at most once, and every flag listed once
    for action in _options(parser):
        flag = action.option_strings[-1]
        lines = [line for line in text.splitlines() if re.match(rf"\s+(-\w, )?{re.escape(flag)}(?= |$)", line)]
        assert len(lines) == 1, (flag, lines)
        assert lines[0].lower().count("default") <= 1, lines[0]


def _group_of(parser: argparse.ArgumentParser, flag: str) -> str:
    for group in parser._action_groups:
        if any(flag in a.option_strings for a in group._group_actions):
            return group.title
    raise AssertionError(flag)


@pytest.mark.parametrize("flag,title", [
    ("--model", "model"), ("--models-dir", "model"), ("--allow-pickle", "model"), ("--max-models", "model"),
    ("--device", "engine and device"), ("--dtype", "engine and device"), ("--fast", "engine and device"),
    ("--preview", "engine and device"), ("--no-warmup", "engine and device"),
    ("--listen", "server"), ("--port", "server"), ("--auth-file", "server"), ("--max-queue-per-user", "server"),
    ("--no-dynamic-batching", "server"), ("--batch-wait-ms", "server"),
    ("--max-size", "limits"), ("--max-image-pixels", "limits"), ("--max-frames-mb", "limits"),
    ("--outputs", "folders and files"), ("--cache-dir", "folders and files"), ("--lora-dir", "folders and files"),
    ("--styles-file", "folders and files"), ("--gfpgan-models-path", "folders and files"),
])
def test_app_flags_are_under_the_heading_one_looks_for(flag, title):
    assert _group_of(app_parser(), flag).startswith(title)


def test_app_server_group_starts_with_the_web_servers_own_flags():
    parser = app_parser()
    (server,) = [g for g in parser._action_groups if g.title == "server"]
    flags = [a.option_strings[-1] for a in server._group_actions]
    assert flags[:2] == ["--listen", "--port"] and "--batch-wait-ms" in flags


def test_generate_says_its_server_flags_do_nothing_for_it(monkeypatch):
    text = _help_text(generate_parser(), monkeypatch)
    assert text.index("\nserver:\n") > text.index("\nfolders and files")
    assert "of no use to one command" in text
    assert _group_of(generate_parser(), "--prompt") == "prompt"
    assert _group_of(generate_parser(), "--out").startswith("folders and files")


def test_model_default_is_said_once_and_is_the_real_one(monkeypatch):
    text = _help_text(app_parser(), monkeypatch)
    (line,) = [line for line in text.splitlines() if line.lstrip().startswith("--model NAME")]
    assert line.count(DEFAULT_MODEL) == 1 and line.count("default") == 1


def test_top_level_help_lists_the_command(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    text = cli._parser().format_help()
    assert re.search(r"^\s+generate\s+render images", text, re.M)
    assert "commands:" in text
