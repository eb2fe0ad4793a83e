"""A1111's settings for the studio (GET/POST /sdapi/v1/options): the names and defaults A1111 1.10 answers with, what
the studio really does, and each user's own values. No torch.

What a user sees (options_for), each later source winning:
  1. A1111's defaults (A1111_DEFAULTS: A1111 1.10's modules/shared_options.py and its built-in Lora extension;
     folders as A1111's default relative names, never the studio's paths);
  2. the server-wide values an admin posted (SERVER_WIDE: CLIP skip and the VAE, every user's txt2img default);
  3. the user's own posted values (any option name, bounded per user: ServerState.update_user_options);
  4. what the studio really does (studio_values: the user's model, PNG files, the live preview settings) — a POST of
     these READ_ONLY names is accepted and not stored, as they are the server's facts.
A txt2img request's override_settings come on top of all that (web/a1111.py reads options_for for its defaults).
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import PurePath
from typing import Any

from ..contract import RequestError
from ..validation import MAX_CLIP_SKIP, MAX_NAME_CHARS
from .state import MAX_USER_OPTIONS, MAX_USER_OPTIONS_BYTES

SERVER_WIDE = ("CLIP_stop_at_last_layers", "sd_vae")  # an admin's POST sets them for everyone; anyone else's, for them
READ_ONLY = ("samples_format", "samples_save", "live_previews_enable", "show_progress_every_n_steps", "show_progress_type")
MAX_VALUE_BYTES = 16 * 1024  # one option's value, written as JSON
OPTION_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
PREVIEW_TYPES = {"latent": "Approx cheap", "taesd": "TAESD", "vae": "Full"}  # the studio's --preview → A1111's method
NO_VAE = ("", "automatic", "none")  # sd_vae values meaning "the model's own VAE"

# A1111 1.10's option names and defaults, in its order (its OptionHTML explanations, which are text, not settings,
# are left out).
A1111_DEFAULTS: dict[str, Any] = {
    # Saving images/grids
    "samples_save": True, "samples_format": "png", "samples_filename_pattern": "", "save_images_add_number": True,
    "save_images_replace_action": "Replace", "grid_save": True, "grid_format": "png", "grid_extended_filename": False,
    "grid_only_if_multiple": True, "grid_prevent_empty_spots": False, "grid_zip_filename_pattern": "", "n_rows": -1,
    "font": "", "grid_text_active_color": "#000000", "grid_text_inactive_color": "#999999",
    "grid_background_color": "#ffffff", "save_images_before_face_restoration": False,
    "save_images_before_highres_fix": False, "save_images_before_color_correction": False, "save_mask": False,
    "save_mask_composite": False, "jpeg_quality": 80, "webp_lossless": False, "export_for_4chan": True,
    "img_downscale_threshold": 4.0, "target_side_length": 4000, "img_max_size_mp": 200,
    "use_original_name_batch": True, "use_upscaler_name_as_suffix": False, "save_selected_only": True,
    "save_write_log_csv": True, "save_init_img": False, "temp_dir": "", "clean_temp_dir_at_start": False,
    "save_incomplete_images": False, "notification_audio": True, "notification_volume": 100,
    # Paths for saving (A1111's default relative names: the studio's own folders are never shown)
    "outdir_samples": "", "outdir_txt2img_samples": "outputs/txt2img-images",
    "outdir_img2img_samples": "outputs/img2img-images", "outdir_extras_samples": "outputs/extras-images",
    "outdir_grids": "", "outdir_txt2img_grids": "outputs/txt2img-grids", "outdir_img2img_grids": "outputs/img2img-grids",
    "outdir_save": "log/images", "outdir_init_images": "outputs/init-images",
    # Saving to a directory
    "save_to_dirs": True, "grid_save_to_dirs": True, "use_save_to_dirs_for_ui": False,
    "directories_filename_pattern": "[date]", "directories_max_prompt_words": 8,
    # Upscaling
    "ESRGAN_tile": 192, "ESRGAN_tile_overlap": 8, "realesrgan_enabled_models": ["R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B"],
    "dat_enabled_models": ["DAT x2", "DAT x3", "DAT x4"], "DAT_tile": 192, "DAT_tile_overlap": 8,
    "upscaler_for_img2img": None, "set_scale_by_when_changing_upscaler": False,
    # Face restoration
    "face_restoration": False, "face_restoration_model": "CodeFormer", "code_former_weight": 0.5,
    "face_restoration_unload": False,
    # System
    "auto_launch_browser": "Local", "enable_console_prompts": False, "show_warnings": False,
    "show_gradio_deprecation_warnings": True, "memmon_poll_rate": 8, "samples_log_stdout": False, "multiple_tqdm": True,
    "enable_upscale_progressbar": True, "print_hypernet_extra": False, "list_hidden_files": True,
    "disable_mmap_load_safetensors": False, "hide_ldm_prints": True, "dump_stacks_on_signal": False,
    # Profiler
    "profiling_enable": False, "profiling_activities": ["CPU"], "profiling_record_shapes": True,
    "profiling_profile_memory": True, "profiling_with_stack": True, "profiling_filename": "trace.json",
    # API
    "api_enable_requests": True, "api_forbid_local_requests": True, "api_useragent": "",
    # Training
    "unload_models_when_training": False, "pin_memory": False, "save_optimizer_state": False,
    "save_training_settings_to_txt": True, "dataset_filename_word_regex": "", "dataset_filename_join_string": " ",
    "training_image_repeats_per_epoch": 1, "training_write_csv_every": 500, "training_xattention_optimizations": False,
    "training_enable_tensorboard": False, "training_tensorboard_save_images": False,
    "training_tensorboard_flush_every": 120,
    # Stable Diffusion
    "sd_model_checkpoint": None, "sd_checkpoints_limit": 1, "sd_checkpoints_keep_in_cpu": True, "sd_checkpoint_cache": 0,
    "sd_unet": "Automatic", "enable_quantization": False, "emphasis": "Original", "enable_batch_seeds": True,
    "comma_padding_backtrack": 20, "sdxl_clip_l_skip": False, "CLIP_stop_at_last_layers": 1, "upcast_attn": False,
    "randn_source": "GPU", "tiling": False, "hires_fix_refiner_pass": "second pass",
    # Stable Diffusion XL, 3
    "sdxl_crop_top": 0, "sdxl_crop_left": 0, "sdxl_refiner_low_aesthetic_score": 2.5,
    "sdxl_refiner_high_aesthetic_score": 6.0, "sd3_enable_t5": False,
    # VAE
    "sd_vae_checkpoint_cache": 0, "sd_vae": "Automatic", "sd_vae_overrides_per_model_preferences": True,
    "auto_vae_precision_bfloat16": False, "auto_vae_precision": True, "sd_vae_encode_method": "Full",
    "sd_vae_decode_method": "Full",
    # img2img
    "inpainting_mask_weight": 1.0, "initial_noise_multiplier": 1.0, "img2img_extra_noise": 0.0,
    "img2img_color_correction": False, "img2img_fix_steps": False, "img2img_background_color": "#ffffff",
    "img2img_editor_height": 720, "img2img_sketch_default_brush_color": "#ffffff",
    "img2img_inpaint_mask_brush_color": "#ffffff", "img2img_inpaint_sketch_default_brush_color": "#ffffff",
    "return_mask": False, "return_mask_composite": False, "img2img_batch_show_results_limit": 32,
    "overlay_inpaint": True,
    # Optimizations
    "cross_attention_optimization": "Automatic", "s_min_uncond": 0.0, "s_min_uncond_all": False,
    "token_merging_ratio": 0.0, "token_merging_ratio_img2img": 0.0, "token_merging_ratio_hr": 0.0,
    "pad_cond_uncond": False, "pad_cond_uncond_v0": False, "persistent_cond_cache": True, "batch_cond_uncond": True,
    "fp8_storage": "Disable", "cache_fp16_weight": False,
    # Compatibility
    "auto_backcompat": True, "use_old_emphasis_implementation": False, "use_old_karras_scheduler_sigmas": False,
    "no_dpmpp_sde_batch_determinism": False, "use_old_hires_fix_width_height": False,
    "hires_fix_use_firstpass_conds": False, "use_old_scheduling": False, "use_downcasted_alpha_bar": False,
    "refiner_switch_by_sample_steps": False, "lora_functional": False,
    # Interrogate
    "interrogate_keep_models_in_memory": False, "interrogate_return_ranks": False, "interrogate_clip_num_beams": 1,
    "interrogate_clip_min_length": 24, "interrogate_clip_max_length": 48, "interrogate_clip_dict_limit": 1500,
    "interrogate_clip_skip_categories": [], "interrogate_deepbooru_score_threshold": 0.5, "deepbooru_sort_alpha": True,
    "deepbooru_use_spaces": True, "deepbooru_escape": True, "deepbooru_filter_tags": "",
    # Extra Networks (and the Lora extension's)
    "extra_networks_show_hidden_directories": True, "extra_networks_dir_button_function": False,
    "extra_networks_hidden_models": "When searched", "extra_networks_default_multiplier": 1.0,
    "extra_networks_card_width": 0, "extra_networks_card_height": 0, "extra_networks_card_text_scale": 1.0,
    "extra_networks_card_show_desc": True, "extra_networks_card_description_is_html": False,
    "extra_networks_card_order_field": "Path", "extra_networks_card_order": "Ascending",
    "extra_networks_tree_view_style": "Dirs", "extra_networks_tree_view_default_enabled": True,
    "extra_networks_tree_view_default_width": 180, "extra_networks_add_text_separator": " ",
    "ui_extra_networks_tab_reorder": "", "textual_inversion_print_at_load": False,
    "textual_inversion_add_hashes_to_infotext": True, "sd_hypernetwork": "None",
    "sd_lora": "None", "lora_preferred_name": "Alias from file", "lora_add_hashes_to_infotext": True,
    "lora_bundled_ti_to_infotext": True, "lora_show_all": False, "lora_hide_unknown_for_versions": [],
    "lora_in_memory_limit": 0, "lora_not_found_warning_console": False, "lora_not_found_gradio_warning": False,
    # Prompt editing
    "keyedit_precision_attention": 0.1, "keyedit_precision_extra": 0.05, "keyedit_delimiters": ".,\\/!?%^*;:{}=`~() ",
    "keyedit_delimiters_whitespace": ["Tab", "Carriage Return", "Line Feed"], "keyedit_move": True,
    "disable_token_counters": False, "include_styles_into_token_counters": True,
    # Gallery
    "return_grid": True, "do_not_show_images": False, "js_modal_lightbox": True,
    "js_modal_lightbox_initially_zoomed": True, "js_modal_lightbox_gamepad": False,
    "js_modal_lightbox_gamepad_repeat": 250, "sd_webui_modal_lightbox_icon_opacity": 1,
    "sd_webui_modal_lightbox_toolbar_opacity": 0.9, "gallery_height": "", "open_dir_button_choice": "Subdirectory",
    # UI alternatives
    "compact_prompt_box": False, "samplers_in_dropdown": True, "dimensions_and_batch_together": True,
    "sd_checkpoint_dropdown_use_short": False, "hires_fix_show_sampler": False, "hires_fix_show_prompts": False,
    "txt2img_settings_accordion": False, "img2img_settings_accordion": False, "interrupt_after_current": True,
    # User interface
    "localization": "None", "quicksettings_list": ["sd_model_checkpoint"], "ui_tab_order": [], "hidden_tabs": [],
    "ui_reorder_list": [], "gradio_theme": "Default", "gradio_themes_cache": True, "show_progress_in_title": True,
    "send_seed": True, "send_size": True, "enable_reloading_ui_scripts": False,
    # Infotext
    "enable_pnginfo": True, "save_txt": False, "add_model_name_to_info": True, "add_model_hash_to_info": True,
    "add_vae_name_to_info": True, "add_vae_hash_to_info": True, "add_user_name_to_info": False,
    "add_version_to_infotext": True, "disable_weights_auto_swap": True, "infotext_skip_pasting": [],
    "infotext_styles": "Apply if any",
    # Live previews
    "show_progressbar": True, "live_previews_enable": True, "live_previews_image_format": "png",
    "show_progress_grid": True, "show_progress_every_n_steps": 10, "show_progress_type": "Approx NN",
    "live_preview_allow_lowvram_full": False, "live_preview_content": "Prompt", "live_preview_refresh_period": 1000,
    "live_preview_fast_interrupt": False, "js_live_preview_in_modal_lightbox": False,
    "prevent_screen_sleep_during_generation": True,
    # Sampler parameters
    "hide_samplers": [], "eta_ddim": 0.0, "eta_ancestral": 1.0, "ddim_discretize": "uniform", "s_churn": 0.0,
    "s_tmin": 0.0, "s_tmax": 0.0, "s_noise": 1.0, "sigma_min": 0.0, "sigma_max": 0.0, "rho": 0.0,
    "eta_noise_seed_delta": 0, "always_discard_next_to_last_sigma": False, "sgm_noise_multiplier": False,
    "uni_pc_variant": "bh1", "uni_pc_skip_type": "time_uniform", "uni_pc_order": 3, "uni_pc_lower_order_final": True,
    "sd_noise_schedule": "Default", "skip_early_cond": 0.0, "beta_dist_alpha": 0.6, "beta_dist_beta": 0.6,
    # Postprocessing
    "postprocessing_enable_in_main_ui": [], "postprocessing_disable_in_extras": [],
    "postprocessing_operation_order": [], "upscaling_max_images_in_cache": 5,
    "postprocessing_existing_caption_action": "Ignore",
    # Hidden options
    "disabled_extensions": [], "disable_all_extensions": "none", "restore_config_state_file": "",
    "sd_checkpoint_hash": "",
}


class OptionsError(RequestError):
    """A POST /sdapi/v1/options the studio refuses (a 422); nothing of it is stored."""


def studio_values(state, user: str) -> dict[str, Any]:
    """What the studio really does, in A1111's option names: the user's model, PNG files always saved, live previews."""
    settings = state.service.settings
    values = {
        "sd_model_checkpoint": state.model_for(user),
        "samples_format": "png",
        "samples_save": True,
        "live_previews_enable": settings.preview != "off",
        "show_progress_every_n_steps": settings.preview_interval(),
    }
    if settings.preview in PREVIEW_TYPES:
        values["show_progress_type"] = PREVIEW_TYPES[settings.preview]
    return values


def options_for(state, user: str) -> dict[str, Any]:
    """The options as `user` sees them (GET /sdapi/v1/options), and their txt2img/img2img defaults: A1111's defaults,
    then the admins' server-wide values, then the user's own, then the studio's facts. A fresh dict (a copy)."""
    options = copy.deepcopy(A1111_DEFAULTS)
    options.update(_server_wide(state))
    options.update(copy.deepcopy(state.user_options(user)))
    options.update(studio_values(state, user))
    return options


def apply_posted(state, user: str, admin: bool, posted: dict[str, Any]) -> None:
    """POST /sdapi/v1/options for `user`, all or nothing: sd_model_checkpoint becomes their model (a name they may
    pick: Access's rule); an admin's SERVER_WIDE values become everyone's default; READ_ONLY names are the server's
    facts and are not stored; everything else is kept as the user's own. Raises OptionsError, or ModelRefused (both
    RequestErrors: a 422), storing nothing."""
    values = _checked(posted)
    model = values.pop("sd_model_checkpoint", None)
    for name in READ_ONLY:
        values.pop(name, None)
    for name in SERVER_WIDE:
        if name in values:
            values[name] = _server_wide_value(state.service, name, values[name])
    if model is not None and not isinstance(model, str):
        raise OptionsError("sd_model_checkpoint must be a model name.")
    resolved = state.service.resolve_model(model, admin) if model is not None else None  # ModelRefused
    server_wide = {name: values.pop(name) for name in SERVER_WIDE if name in values} if admin else {}
    base = {**A1111_DEFAULTS, **_server_wide(state)}
    unchanged = [name for name, value in values.items() if name in base and _same(value, base[name])]
    for name in unchanged:  # what the user gets without it: nothing to keep (a posted-back GET answer stays small)
        values.pop(name)
    try:
        state.update_user_options(user, values, remove=[*unchanged, *server_wide])
    except ValueError as exc:
        raise OptionsError(str(exc)) from None
    if resolved is not None:
        state.set_model(user, resolved)
    state.server_options.update(server_wide)


def _checked(posted: dict[str, Any]) -> dict[str, Any]:
    """The posted options if every name is an option name and every value plain JSON within the size limits."""
    if len(posted) > MAX_USER_OPTIONS:
        raise OptionsError(f"Too many options in one request: at most {MAX_USER_OPTIONS}.")
    total = 0
    for name, value in posted.items():
        if not isinstance(name, str) or not OPTION_NAME.fullmatch(name):
            raise OptionsError(f"{str(name)[:40]!r} is not an option name (letters, digits, _ . -; at most 128).")
        try:
            size = len(json.dumps(value, allow_nan=False))
        except (ValueError, TypeError, RecursionError):
            raise OptionsError(f"{name}: the value must be plain JSON (finite numbers, no NaN or Infinity).") from None
        if size > MAX_VALUE_BYTES:
            raise OptionsError(f"{name}: the value is too big (at most {MAX_VALUE_BYTES // 1024} KiB as JSON).")
        total += size + len(name)
    if total > MAX_USER_OPTIONS_BYTES:
        raise OptionsError(f"The options are too big: at most {MAX_USER_OPTIONS_BYTES // 1024} KiB in all.")
    return dict(posted)


def _server_wide_value(service, name: str, value: Any) -> Any:
    """A CLIP skip or VAE the studio can use (checked now, so that no later txt2img fails on a stored value)."""
    if name == "CLIP_stop_at_last_layers":
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value != int(value) or not 1 <= value <= MAX_CLIP_SKIP):
            raise OptionsError(f"CLIP_stop_at_last_layers must be a whole number from 1 to {MAX_CLIP_SKIP} (1 = the last layer).")
        return int(value)
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise OptionsError("sd_vae must be the name of a VAE file, or Automatic.")
    if value.strip().lower() in NO_VAE:
        return value
    names = [entry["model_name"] for entry in service.vaes()]
    wanted = value.strip()
    if not any(wanted in (known, PurePath(known).name, PurePath(known).stem) for known in names):
        raise OptionsError(f"VAE {wanted[:80]!r} is not in the VAE folder; choose one of: "
                           f"{', '.join(names) or 'none installed'} (or Automatic).")
    return value


def _server_wide(state) -> dict[str, Any]:
    """The admins' server-wide values (dict() copies in one step, so a POST meanwhile cannot break the loop)."""
    return {k: v for k, v in dict(state.server_options).items() if k in SERVER_WIDE}


def _same(value: Any, other: Any) -> bool:
    """Equal as JSON (1, 1.0 and true differ, so a posted 8.0 comes back as 8.0)."""
    return json.dumps(value, sort_keys=True) == json.dumps(other, sort_keys=True)
