"""The rules of docs/architecture.md, checked on the source (AST, nothing imported):

* layers: every svde module is in a layer of :data:`LAYERS`, and no module imports a module of a
  higher layer (module-level and function-level imports alike); no import cycle at all;
* library events go through ``logging.getLogger(__name__)``: no ``print``, no ``sys.stdout`` /
  ``sys.stderr`` writes and no root-logger calls outside the command-line front-ends
  (:data:`FRONT_ENDS`);
* every file is written through ``svde.atomic``: a call that writes a file (:func:`file_writes`)
  must write to the temporary of ``with atomic_path(...) as tmp`` (or a file opened on it), except
  in ``svde/atomic.py`` itself and the append-only log of :data:`APPEND_ONLY`;
* every ``torch.load`` passes ``weights_only=True``;
* no module in svde/ over 500 lines, no function in svde/ or scripts/ over 100 lines.

Each checker is a function over a source tree, and ``test_each_rule_flags_a_planted_violation``
plants one violation of each rule in a temporary tree to show that it is caught.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 100

# docs/architecture.md "Layers": a module imports only modules of its own layer or lower ones.
# The package root (svde/__init__.py: ``svde.load``) is an entry point; ``from svde import
# __version__`` reads its metadata only and is no edge.
LAYERS: dict[int, tuple[str, ...]] = {
    0: ("svde.errors", "svde.types", "svde.atomic", "svde.device", "svde.preprocess", "svde.geometry",
        "svde.viz", "svde.download"),
    1: ("svde.data", "svde.models", "svde.losses"),
    2: ("svde.evaluation", "svde.config"),
    3: ("svde.training", "svde.experiments"),
    4: ("svde", "svde.__main__", "svde.api", "svde.cli", "svde.inference"),
}
# Command-line front-ends: they talk to the user, so they may print.
FRONT_ENDS = ("svde.cli", "svde.__main__")
# Files (relative to the repository) that may write a file without svde.atomic, and why.
APPEND_ONLY = {
    "svde/training/logging.py": "metrics.jsonl is an append-only log, line-buffered so that it can be read while "
                                "training; svde.atomic.read_jsonl drops a torn last line",
}
ATOMIC_MODULE = "svde/atomic.py"  # the implementation itself


def _python_files(*folders: str, root: Path = REPO) -> list[Path]:
    return sorted(p for folder in folders for p in (root / folder).rglob("*.py"))


def _module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer_of(module: str) -> int | None:
    """The layer of an svde module: the one whose most specific prefix names it."""
    best = max(((len(p), layer) for layer, prefixes in LAYERS.items() for p in prefixes
                if module == p or module.startswith(p + ".") and p != "svde"), default=None)
    return best[1] if best else None


# ---- imports -------------------------------------------------------------------------------------
def module_imports(source: str, module: str, modules: set[str], is_package: bool = False) -> list[tuple[str, int]]:
    """``(imported svde module, line)`` for every import in ``source`` (functions included).

    ``from a import b`` counts ``a.b`` when that is a module, else ``a``; ``import a.b.c`` counts
    the longest of ``a.b.c``, ``a.b`` that is a module; relative imports are resolved.
    """
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            others = [a.name for a in node.names if f"{base}.{a.name}" not in modules]
            if base == "svde" and all(n.startswith("__") for n in others):
                others = []  # the root's metadata (__version__), not its code
            targets = subs + ([base] if others and base in modules else [])
        elif isinstance(node, ast.Import):
            targets = []
            for alias in node.names:
                parts = alias.name.split(".")
                names = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
                targets += [next(n for n in names if n in modules)] if any(n in modules for n in names) else []
        else:
            continue
        found += [(t, node.lineno) for t in targets if t != module]
    return found


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(p, root): p for p in _python_files("svde", root=root)}


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """svde module -> the svde modules it imports anywhere in its file (functions included)."""
    modules = _modules(root)
    return {name: {t for t, _ in module_imports(path.read_text(), name, set(modules), path.name == "__init__.py")}
            for name, path in modules.items()}


def upward_imports(root: Path = REPO) -> list[str]:
    """Every import of a higher layer, and every module in no layer, as ``file:line: what``."""
    modules = _modules(root)
    problems = []
    for name, path in modules.items():
        where = path.relative_to(root)
        if layer_of(name) is None:
            problems.append(f"{where}: {name} is in no layer of docs/architecture.md")
            continue
        for target, line in module_imports(path.read_text(), name, set(modules), path.name == "__init__.py"):
            if layer_of(target) is not None and layer_of(target) > layer_of(name):
                problems.append(f"{where}:{line}: {name} (layer {layer_of(name)}) imports {target} "
                                f"(layer {layer_of(target)})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# ---- per-file rules --------------------------------------------------------------------------------
def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, else ``""``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def print_calls(source: str) -> list[tuple[int, str]]:
    """Events that bypass ``logging.getLogger(__name__)``: ``print``, ``sys.stdout/stderr.write``,
    root-logger calls (``logging.info(...)``) and loggers not named ``__name__``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name == "print":
            found.append((node.lineno, "print()"))
        elif name in ("sys.stdout.write", "sys.stderr.write"):
            found.append((node.lineno, name))
        elif name in {f"logging.{level}" for level in ("debug", "info", "warning", "error", "exception",
                                                         "critical", "log")}:
            found.append((node.lineno, f"{name}() (the root logger)"))
        elif name == "logging.getLogger" and not (len(node.args) == 1 and _dotted(node.args[0]) == "__name__"):
            found.append((node.lineno, "logging.getLogger() not named __name__"))
    return found


_WRITE_MODES = set("wax+")
# Calls that write the file they are given (besides open() in a write mode and Path.write_*).
_SAVERS = {"np.save", "np.savez", "np.savez_compressed", "np.savetxt", "numpy.save", "torch.save",
           "torch.jit.save", "torch.onnx.export", "onnx.save", "cv2.imwrite", "imageio.imwrite",
           "safetensors.torch.save_file", "torch.hub.download_url_to_file", "urllib.request.urlretrieve",
           "shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.copytree", "shutil.move", "os.replace",
           "os.rename"}
_SAVER_METHODS = {"write_text", "write_bytes", "savefig", "tofile", "touch", "save_file", "imwrite"}


def _open_mode(call: ast.Call, name: str) -> str | None:
    """The mode of an ``open``-like call (None: not a file open, or a read)."""
    if name in ("open", "io.open", "gzip.open", "bz2.open", "lzma.open", "h5py.File"):
        mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
        if mode is None:
            return None
        return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else "w?"
    if isinstance(call.func, ast.Attribute) and call.func.attr == "open":  # Path.open(mode)
        mode = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "mode"), None)
        return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else None
    return None


def file_writes(source: str, include_atomic: bool = False) -> list[tuple[int, str]]:
    """Calls that write a file other than a ``svde.atomic.atomic_path`` temporary.

    A write is ``open`` (or ``Path.open``, ``h5py.File``) in a write/append mode, a
    ``Path.write_text/write_bytes``, or a saver (``torch.save``, ``np.save``, ``cv2.imwrite``,
    ``savefig``, ...). It is atomic when one of its arguments (or its receiver) is a name bound by
    ``with atomic_path(...) as tmp`` around it, or a file opened on such a name in that ``with``,
    or a parameter of the function it is in that every call of that function in the module passes
    such a name (a helper writing its caller's temporary). ``include_atomic`` lists the atomic
    writes too.
    """
    tree = ast.parse(source)
    atomic_modules = {a.asname or "atomic" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                      and n.module == "svde" for a in n.names if a.name == "atomic"}
    found: list[tuple[int, str]] = []
    via_param: list[tuple[str, int, int, str]] = []  # (function, parameter index, line, what)
    calls: dict[str, list[list[bool]]] = {}  # function name -> per call: does argument i hold a temporary?

    def mentions(node: ast.AST, names: frozenset[str]) -> bool:
        return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))

    def check(call: ast.Call, atomic: frozenset[str], func: ast.FunctionDef | None) -> None:
        name = _dotted(call.func)
        method = call.func.attr if isinstance(call.func, ast.Attribute) else ""
        receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
        calls.setdefault(method or name, []).append([mentions(a, atomic) for a in call.args])
        mode = _open_mode(call, name)
        if mode is not None and _WRITE_MODES & set(mode):
            what = f"{name or method}(..., {mode!r})"
        elif name in _SAVERS or (method in _SAVER_METHODS and _dotted(receiver) not in atomic_modules):
            what = f"{name if name in _SAVERS else method}()"
        else:
            return
        parts = [*call.args, *(k.value for k in call.keywords), *([receiver] if receiver is not None else [])]
        if include_atomic:
            found.append((call.lineno, what))
        elif not any(mentions(p, atomic) for p in parts):
            params = [a.arg for a in func.args.args] if func is not None else []
            used = [i for i, p in enumerate(params) if any(mentions(part, frozenset({p})) for part in parts)]
            if used:
                via_param.append((func.name, used[0] - (params[:1] in (["self"], ["cls"])), call.lineno, what))
            else:
                found.append((call.lineno, what))

    def visit(node: ast.AST, atomic: frozenset[str], func: ast.FunctionDef | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = node
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                visit(item.context_expr, atomic, func)
                expr, var = item.context_expr, item.optional_vars
                if isinstance(expr, ast.Call) and isinstance(var, ast.Name) and (
                        _dotted(expr.func).split(".")[-1] == "atomic_path"
                        or (_open_mode(expr, _dotted(expr.func)) is not None and mentions(expr, atomic))):
                    atomic = atomic | {var.id}
            for child in node.body:
                visit(child, atomic, func)
            return
        if isinstance(node, ast.Call):
            check(node, atomic, func)
        for child in ast.iter_child_nodes(node):
            visit(child, atomic, func)

    visit(tree, frozenset(), None)
    for name, index, line, what in via_param:  # every call must pass a temporary there (and one call must exist)
        sites = calls.get(name, [])
        if not sites or not all(index < len(site) and site[index] for site in sites):
            found.append((line, what))
    return sorted(found)


def torch_loads_without_weights_only(source: str) -> list[int]:
    """Lines of ``torch.load`` calls (also ``from torch import load``) without ``weights_only=True``."""
    tree = ast.parse(source)
    aliases = {"torch.load"} | {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                                and n.module == "torch" for a in n.names if a.name == "load"}
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and _dotted(n.func) in aliases
            and not any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                        for k in n.keywords)]


def library_prints(root: Path = REPO) -> list[str]:
    """``print_calls`` in every svde module but the front-ends, as ``file:line: what``."""
    return [f"{p.relative_to(root)}:{line}: {what}" for p in _python_files("svde", root=root)
            if not _in(_module_name(p, root), FRONT_ENDS) for line, what in print_calls(p.read_text())]


def non_atomic_writes(root: Path = REPO) -> list[str]:
    """``file_writes`` in every svde module but svde/atomic.py and :data:`APPEND_ONLY`."""
    skip = {ATOMIC_MODULE, *APPEND_ONLY}
    return [f"{p.relative_to(root)}:{line}: {what}" for p in _python_files("svde", root=root)
            if p.relative_to(root).as_posix() not in skip for line, what in file_writes(p.read_text())]


def unsafe_torch_loads(root: Path = REPO) -> list[str]:
    """``torch.load`` without ``weights_only=True`` in svde/, scripts/, benchmarks/ and hubconf.py."""
    files = _python_files("svde", "scripts", "benchmarks", root=root) + [p for p in [root / "hubconf.py"] if p.exists()]
    return [f"{p.relative_to(root)}:{line}: torch.load without weights_only=True" for p in files
            for line in torch_loads_without_weights_only(p.read_text())]


# ---- the rules, on this repository -------------------------------------------------------------------
def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50 and "svde.models.model" in graph["svde.models.registry"]
    assert cycles(graph) == []


def test_every_module_is_in_a_layer_and_no_module_imports_a_higher_one():
    assert layer_of("svde.viz") == layer_of("svde.download") == 0 and layer_of("svde") == 4
    assert layer_of("svde.data.stereo.raft") == 1 and layer_of("svde.config") == 2
    assert upward_imports() == []


def test_library_events_go_through_logging():
    assert library_prints() == []


def test_every_file_is_written_through_svde_atomic():
    seen = {p.relative_to(REPO).as_posix(): file_writes(p.read_text(), include_atomic=True)
            for p in _python_files("svde")}
    assert any(what == "torch.save()" for _, what in seen["svde/models/checkpoint.py"])  # the checker sees writes
    assert non_atomic_writes() == []


def test_every_torch_load_uses_weights_only():
    assert unsafe_torch_loads() == []


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_each_rule_flags_a_planted_violation(tmp_path):
    base = {"svde/__init__.py": "", "svde/models/__init__.py": "", "svde/training/__init__.py": "",
            "svde/training/trainer.py": "", "svde/atomic.py": "def atomic_path(p): ...\n"}
    clean = _plant(tmp_path / "clean", {**base, "svde/models/ok.py": (
        "import logging\nimport torch\nfrom svde import __version__\nfrom svde.atomic import atomic_path\n"
        "log = logging.getLogger(__name__)\n\n\ndef f(p, x):\n    log.info('saving %s', p)\n"
        "    with atomic_path(p) as tmp, open(tmp, 'wb') as fh:\n        fh.write(b'x')\n"
        "    with atomic_path(p) as tmp:\n        torch.save(x, str(tmp))\n"
        "    with open(p) as fh:\n        fh.read()\n    return torch.load(p, weights_only=True)\n")})
    assert (upward_imports(clean), library_prints(clean), non_atomic_writes(clean), unsafe_torch_loads(clean)) == (
        [], [], [], [])
    planted = _plant(tmp_path / "planted", {**base, "svde/models/bad.py": (
        "import torch\n\n\ndef f(p, x):\n    from svde.training import trainer\n    print('saving', p)\n"
        "    with open(p, 'w') as fh:\n        fh.write('x')\n    torch.save(x, p)\n    p.write_text('x')\n"
        "    return torch.load(p)\n"), "svde/cli/talk.py": "print('a command may print')\n",
        "svde/orphan.py": ""})
    assert upward_imports(planted) == [
        "svde/models/bad.py:5: svde.models.bad (layer 1) imports svde.training.trainer (layer 3)",
        "svde/orphan.py: svde.orphan is in no layer of docs/architecture.md"]
    assert library_prints(planted) == ["svde/models/bad.py:6: print()"]
    assert non_atomic_writes(planted) == ["svde/models/bad.py:7: open(..., 'w')", "svde/models/bad.py:9: torch.save()",
                                          "svde/models/bad.py:10: write_text()"]
    assert unsafe_torch_loads(planted) == ["svde/models/bad.py:11: torch.load without weights_only=True"]
    assert torch_loads_without_weights_only("torch.load(p, weights_only=False)\n") == [1]
    assert print_calls("import logging, sys\nsys.stderr.write('x')\nlogging.info('x')\n") == [
        (2, "sys.stderr.write"), (3, "logging.info() (the root logger)")]
    helper = "def put(tmp, x):\n    torch.save(x, tmp)\n\n\nwith atomic_path(p) as t:\n    put(t, 1)\n"
    assert file_writes(helper) == [] and file_writes(helper + "put(p, 2)\n") == [(2, "torch.save()")]
    assert file_writes("import numpy as np\nwith open(p, 'ab') as f:\n    np.save(f, a)\n") == [
        (2, "open(..., 'ab')"), (3, "np.save()")]  # appending is not atomic, nor is what writes to it


# ---- sizes -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", _python_files("svde"), ids=lambda p: str(p.relative_to(REPO)))
def test_module_size(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("path", _python_files("svde", "scripts"), ids=lambda p: str(p.relative_to(REPO)))
def test_function_size(path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []
