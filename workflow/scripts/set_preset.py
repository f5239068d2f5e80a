"""Write the preset into params.yaml's `overlays` line, so DVC sees the configuration in use.

    python workflow/scripts/set_preset.py smoke   # overlays: [config/smoke.yaml]
    python workflow/scripts/set_preset.py paper   # overlays: []  (params.yaml as is)

`make run PRESET=...` calls this before Snakemake: `dvc commit` then records the preset
(params.yaml's `overlays` is a param of every DVC stage), like `dvc exp run -S` would. Only the
one `overlays:` line changes; comments and everything else stay as they are.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PARAMS = Path("params.yaml")
LINE = re.compile(r"^overlays:.*$", re.MULTILINE)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    preset = argv[0]
    overlay = Path("config") / f"{preset}.yaml"
    if preset != "paper" and not overlay.is_file():
        presets = ", ".join(sorted(["paper", *(p.stem for p in Path("config").glob("*.yaml"))]))
        print(
            f"set_preset: no preset {preset!r}: {overlay} does not exist (presets: {presets})",
            file=sys.stderr,
        )
        return 1
    text = PARAMS.read_text()
    matches = LINE.findall(text)
    if len(matches) != 1 or not re.fullmatch(r"overlays:\s*\[[^\]]*\]\s*(#.*)?", matches[0]):
        print(
            f"set_preset: {PARAMS} must have exactly one one-line 'overlays: [...]' entry",
            file=sys.stderr,
        )
        return 1
    new_line = "overlays: []" if preset == "paper" else f"overlays: [{overlay.as_posix()}]"
    if matches[0] != new_line:
        PARAMS.write_text(LINE.sub(new_line, text, count=1))
        print(f"set_preset: {PARAMS}: '{matches[0]}' -> '{new_line}' (so DVC records the preset)")
    else:
        print(f"set_preset: {PARAMS} already has '{new_line}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
