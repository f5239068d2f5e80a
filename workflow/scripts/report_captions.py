"""Write the captions of the Snakemake HTML report, workflow/report/*.rst, from gae.paths.

    python workflow/scripts/report_captions.py          # (re)write them
    python workflow/scripts/report_captions.py --check  # exit 1 (and say which) if any is stale

Why: `snakemake --report results/report.html` takes each output's caption from an RST file,
while results/report.md (gae.report) takes the same captions from gae.paths. This script
writes the files from gae.paths.report_captions(), so both reports say the same thing;
tests/test_report_html.py fails until it is run after a caption changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from gae.paths import caption_file, report_captions  # noqa: E402


def main(argv: list[str]) -> int:
    stale = []
    for name, text in report_captions().items():
        path = caption_file(name)
        if not path.is_file() or path.read_text() != text:
            stale.append(str(path))
            if "--check" not in argv:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                print(f"report_captions: wrote {path}")
    if stale and "--check" in argv:
        print(
            f"{', '.join(stale)}: stale (gae.paths' captions differ); run "
            f"python workflow/scripts/report_captions.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
