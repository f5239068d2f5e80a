"""Write each dvc.yaml stage's code deps: the files its `gae` command imports.

    python workflow/scripts/dvc_code_deps.py          # rewrite dvc.yaml's gae/ deps in place
    python workflow/scripts/dvc_code_deps.py --check  # exit 1 (and say what) if they are stale

Why: DVC cannot compute deps, so dvc.yaml lists them; the Snakefile derives the same lists
(gae.pipeline.code_deps) while it parses. After an import is added to the package, this script
brings dvc.yaml back in line (tests/test_workflow.py fails until it is run). Only the `- gae...`
lines of each stage's `deps:` change; comments, order and everything else stay as they are.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from gae.pipeline import code_deps  # noqa: E402

DVC_YAML = Path("dvc.yaml")
STAGE = re.compile(r"^  (\w+):\s*$")
CODE_DEP = re.compile(r"^(\s+)- gae(/\S*)?\s*$")


def expected(stage: str) -> list[str]:
    deps = set(code_deps(stage, Path.cwd()))
    if stage == "prepare":  # its command also runs `gae config --runs`
        deps |= set(code_deps("config", Path.cwd()))
    return sorted(deps)


def rewrite(text: str) -> str:
    out: list[str] = []
    stage = None
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        if found := STAGE.match(line):
            stage = found[1]
        if stage and (dep := CODE_DEP.match(line)):
            while i < len(lines) and CODE_DEP.match(lines[i]):
                i += 1  # drop this stage's run of gae deps, write the derived one instead
            out += [f"{dep[1]}- {path}\n" for path in expected(stage)]
            continue
        out.append(line)
        i += 1
    return "".join(out)


def main(argv: list[str]) -> int:
    text = DVC_YAML.read_text()
    new = rewrite(text)
    if "--check" in argv:
        if new != text:
            print(
                f"{DVC_YAML}: the code deps differ from what the commands import; run "
                f"python workflow/scripts/dvc_code_deps.py",
                file=sys.stderr,
            )
            return 1
        return 0
    if new != text:
        DVC_YAML.write_text(new)
        print(f"dvc_code_deps: updated the code deps in {DVC_YAML}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
