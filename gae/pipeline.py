"""What the workflow (Snakefile, dvc.yaml, Makefile) needs from the package, without torch.

- ``code_inputs(command)``: the source files a ``gae COMMAND`` runs, derived from the imports of
  its modules (read with ``ast``, never imported), so a rule's code inputs cannot miss a module
  such as ``gae/ops.py`` and editing it re-runs exactly the steps that use it.
- ``gpu_refusal``: the paper preset on a machine without CUDA stops before its first job, with
  the CPU presets named, instead of running for days on the CPU.
- ``record_in_dvc``: Snakemake's ``onsuccess`` records the outputs in ``dvc.lock``, so
  ``dvc status`` is clean after a plain ``snakemake`` run as after ``make run``.

Everything here uses the standard library only: Snakemake may run in an environment without
torch, and this module is imported while the Snakefile is parsed.
"""

from __future__ import annotations

import ast
import os
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from gae.settings import Config

PACKAGE = "gae"
SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the folder that holds gae/
CLI_MODULE = "gae.cli"
HANDLER_PREFIX = "_cmd_"  # gae/cli.py: one `_cmd_NAME` function per subcommand

# ---- code inputs -----------------------------------------------------------------------------


def _module_file(module: str, root: Path) -> Path | None:
    """The source file of ``module`` under ``root``, or None when it is not a module of ours."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(node: ast.AST, package: str) -> Iterable[str]:
    """Module names an import statement may load: ``from gae.data import sources`` may load
    ``gae.data`` and ``gae.data.sources`` (the caller keeps those that are files)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolve against the importing module's package
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            module = f"{base}.{node.module}" if node.module else base
        else:
            module = node.module or ""
        yield module
        yield from (f"{module}.{alias.name}" for alias in node.names)


def _imports(module: str, path: Path, skip_functions: Callable[[str], bool]) -> set[str]:
    """Every ``gae`` module that ``module``'s source may import, at module level or inside a
    function (lazy imports count: they run when the command does), except inside the
    functions ``skip_functions`` names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and skip_functions(node.name):
            continue
        found.update(n for n in _imported_names(node, package) if n.split(".")[0] == PACKAGE)
        stack.extend(ast.iter_child_nodes(node))
    return found


def command_modules(command: str, root: Path = SOURCE_ROOT) -> set[str]:
    """The ``gae`` modules ``python -m gae COMMAND`` may import, with their parent packages.

    Starts from ``gae/__main__.py``; in ``gae/cli.py`` only the handler of ``command``
    (``_cmd_COMMAND``) is followed, the other subcommands' lazy imports are not.
    """

    def skip(module: str) -> Callable[[str], bool]:
        own = f"{HANDLER_PREFIX}{command}"
        if module != CLI_MODULE:
            return lambda name: False
        return lambda name: name.startswith(HANDLER_PREFIX) and name != own

    seen: set[str] = set()
    todo = [f"{PACKAGE}.__main__"]
    while todo:
        module = todo.pop()
        path = _module_file(module, root)
        if module in seen or path is None:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run too
        todo += sorted(_imports(module, path, skip(module)))
    return seen


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def code_deps(command: str, root: Path = SOURCE_ROOT) -> list[str]:
    """The command's code as DVC deps: top-level ``gae/*.py`` files, and each subpackage it
    uses (``gae/data``, ``gae/evaluation``) as a whole folder."""
    deps: set[str] = set()
    for module in command_modules(command, root):
        path = _module_file(module, root)
        assert path is not None
        folder = path.parent
        if folder == root / PACKAGE:
            deps.add(_relative(path, root))
        else:
            deps.add(_relative(root / PACKAGE / folder.relative_to(root / PACKAGE).parts[0], root))
    return sorted(deps)


def code_inputs(command: str, root: Path = SOURCE_ROOT) -> list[str]:
    """The command's code as files (Snakemake inputs): ``code_deps`` with folders expanded to
    their ``*.py`` files, so both tools re-run a step on the same edits."""
    files: set[str] = set()
    for dep in code_deps(command, root):
        path = root / dep
        found = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        files.update(_relative(p, root) for p in found if "__pycache__" not in p.parts)
    return sorted(files)


# ---- the paper preset needs a GPU ------------------------------------------------------------

ALLOW_CPU_ENV = "GAE_ALLOW_CPU"
CPU_PRESETS = ("config/quick.yaml", "config/cpu.yaml", "config/smoke.yaml")
CUDA_PROBE = "import torch; print(int(torch.cuda.is_available()))"


def cuda_available(python: str) -> bool:
    """Whether ``python`` (the interpreter the jobs run ``gae`` with) sees a CUDA device.

    Asked in a child process so that Snakemake never imports torch itself; the child sees
    exactly what the jobs will (a CPU-only torch wheel on a GPU machine counts as no CUDA).
    """
    try:
        proc = subprocess.run(
            [python, "-c", CUDA_PROBE], capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and proc.stdout.strip().endswith("1")


def gpu_refusal(
    cfg: Config, has_cuda: Callable[[], bool], env: Mapping[str, str] = os.environ
) -> str | None:
    """Why this run must not start, or None: a configuration that asks for a GPU (``device``
    auto or cuda: the paper preset) where none is, unless ``GAE_ALLOW_CPU=1`` opts in."""
    if cfg.device == "cpu" or env.get(ALLOW_CPU_ENV) == "1" or has_cuda():
        return None
    presets = ", ".join(CPU_PRESETS)
    return (
        f"this configuration asks for a GPU (device: {cfg.device}; overlays: "
        f"{list(cfg.overlays) or 'none, the paper preset'}) and no CUDA device is "
        f"available: at the paper scale a CPU would take days. Use a CPU preset ({presets}): "
        f"`make run` (quick, ~15 min), `make run PRESET=cpu` (about an hour), or "
        f"snakemake --config overlays='[config/quick.yaml]'. To run it on the CPU anyway, set "
        f"{ALLOW_CPU_ENV}=1"
    )


# ---- dvc.lock after a plain Snakemake run ----------------------------------------------------


def record_in_dvc(
    root: Path, python: str, outputs: Iterable[str], extra_overlays: Iterable[str]
) -> str:
    """``dvc commit --force`` the outputs when DVC can describe them; a line saying what was done.

    Only when the whole pipeline's outputs exist (``dvc commit`` fails on a missing output) and
    the configuration is the one DVC sees, params.yaml with its own ``overlays``: a preset given
    as ``--config overlays=[...]`` is invisible to DVC, and recording it would make dvc.lock
    claim that params.yaml produced those files.
    """
    if not (root / ".dvc").is_dir():
        return "no DVC repository here: nothing recorded in dvc.lock"
    extra = list(extra_overlays)
    if extra:
        return (
            f"not recorded in dvc.lock: the overlays {extra} were given with --config, which "
            f"DVC does not see; use `make run PRESET=...` (or set_preset.py + snakemake)"
        )
    missing = [p for p in outputs if not (root / p).exists()]
    if missing:
        return (
            f"not recorded in dvc.lock: {len(missing)} of the pipeline's outputs do not exist "
            f"(e.g. {missing[0]}); after the whole pipeline has run: dvc commit --force"
        )
    proc = subprocess.run(
        [python, "-m", "dvc", "commit", "--force", "--quiet"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no message"]
        return f"dvc commit --force failed ({tail[0]}); run it yourself to update dvc.lock"
    return "recorded the outputs in dvc.lock (dvc commit --force)"
