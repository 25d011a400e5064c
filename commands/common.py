"""What every command shares: the analysis and Ray options, and the settings they make."""

from __future__ import annotations

import argparse
from pathlib import Path

from ace.config import Settings, get_settings


def add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("analysis settings (defaults from ACE_* environment variables)")
    g.add_argument("--model", help="speech model: tiny.en (default, bundled), base, a local CTranslate2 folder, or a hub name")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], help="auto uses a GPU when there is one")
    g.add_argument("--beam-size", type=int, dest="beam_size", help="speech beam size (1 = greedy, fastest)")
    g.add_argument("--language", help="spoken language code (default: detect; English-only models use en)")
    g.add_argument("--mode", dest="clip_mode", choices=["exact", "fast"], help="exact: frame-accurate smart cut (default); fast: stream copy from the keyframe before")
    g.add_argument("--format", dest="clip_format", choices=["source", "vertical", "square"],
                   help="clip shape: source (the stream's frame, default), vertical (9:16) or square, following the subject")
    g.add_argument("--burn-captions", dest="burn_captions", action="store_true", default=None,
                   help="burn word-timed captions into the clips' pictures")
    g.add_argument("--clip-min", type=float, dest="clip_min", help="shortest clip in seconds (default 8)")
    g.add_argument("--clip-max", type=float, dest="clip_max", help="longest clip in seconds (default 60)")
    g.add_argument("--threshold", type=float, help="fused score that makes a moment strong on its own when a show has no chat, 0-1 (default 0.45)")
    g.add_argument("--top", type=int, help="fewest moments per show, strong or not (default: one per 5 minutes, at least 1)")
    g.add_argument("--scorer", help="highlight model for chat: 'default' (shipped) or a file written by `ace train`")
    g.add_argument("--data-dir", type=Path, dest="data_dir", help="ACE's data folder (database, caches, sample show); default ./data")
    r = p.add_argument_group("Ray")
    r.add_argument("--address", help="join this Ray cluster instead of starting a local one (or set RAY_ADDRESS)")
    r.add_argument("--num-cpus", type=int, dest="num_cpus", help="CPUs for the local Ray instance (default: all)")
    r.add_argument("--dashboard", action="store_true", help="start the Ray dashboard with the local instance")


def settings_from(args: argparse.Namespace) -> Settings:
    keys = ("model", "device", "beam_size", "language", "clip_mode", "clip_format", "burn_captions", "clip_min", "clip_max", "threshold", "data_dir", "top", "scorer")
    s = get_settings(**{k: getattr(args, k, None) for k in keys})
    if s.clip_min >= s.clip_max:
        raise SystemExit(f"ace: --clip-min ({s.clip_min}) must be shorter than --clip-max ({s.clip_max})")
    if args.address:
        s = s.model_copy(update={"ray_address": args.address})
    if getattr(args, "lang", None) == "zh":  # the Mandarin sample show: a multilingual model, told the language
        update = {}
        if getattr(args, "model", None) is None and s.model.endswith(".en"):
            update["model"] = "base"
        if s.language is None:
            update["language"] = "zh"
        s = s.model_copy(update=update)
    return s
