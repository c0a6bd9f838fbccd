"""fastdl's public API is typed and documented: every public function, class, method and
property of the user-facing modules has a docstring and annotations (every parameter
but self/cls/*args/**kwargs, and the return), and the compiled module's stub
(fastdl/_C.pyi) declares exactly what fastdl._C exposes, with the same parameters.
mypy itself runs over the package in CI (.ci/test-command.sh, [tool.mypy] in
pyproject.toml)."""

import ast
import importlib
import inspect
import re
import types
from pathlib import Path

import pytest

import fastdl
from fastdl import _C

#: the user-facing modules whose public names are checked
MODULES = (
    "fastdl", "fastdl.model", "fastdl.network", "fastdl.state", "fastdl.layers", "fastdl.optim", "fastdl.losses",
    "fastdl.metrics", "fastdl.callbacks", "fastdl.schedules", "fastdl.initializers", "fastdl.activations",
    "fastdl.augment", "fastdl.training", "fastdl.training.data", "fastdl.training.strategy",
    "fastdl.training.trainer", "fastdl.step_plan", "fastdl.serialization", "fastdl.weights_file",
    "fastdl.interop", "fastdl.onnx", "fastdl.sklearn", "fastdl.distributed", "fastdl.datasets", "fastdl.kernels",
    "fastdl.cuda", "fastdl.experiments", "fastdl.benchmarking", "fastdl.cli",
)
#: dunder methods checked like public ones (what a user calls through the class)
CHECKED_DUNDERS = ("__init__", "__call__")
STUB = Path(fastdl.__file__).resolve().parent / "_C.pyi"


def _is_compiled(obj):
    """A function or class of fastdl._C (or a functools.wraps wrapper of one): typed by
    the stub, documented by the bindings."""
    obj = inspect.unwrap(obj) if callable(obj) else obj
    return isinstance(obj, types.BuiltinFunctionType) or getattr(obj, "__module__", None) == "fastdl._C"


def _compiled_doc(obj):
    """A pybind11 docstring without its leading signature line(s)."""
    lines = (inspect.unwrap(obj).__doc__ or "").strip().splitlines()
    return "\n".join(line for line in lines if not re.match(r"^\w+\(.*\) -> ", line)).strip()


def function_problems(fn, where, *, method=False, needs_doc=True):
    """What `fn` lacks: a docstring, a parameter's annotation, the return annotation."""
    problems = []
    if needs_doc and not (inspect.getdoc(fn) or "").strip():
        problems.append(f"{where}: no docstring")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return problems + [f"{where}: no signature"]
    params = list(sig.parameters.values())
    if method and params and params[0].name in ("self", "cls"):
        params = params[1:]
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.annotation is inspect.Parameter.empty:
            problems.append(f"{where}: parameter {p.name!r} has no annotation")
    if sig.return_annotation is inspect.Signature.empty:
        problems.append(f"{where}: no return annotation")
    return problems


def class_problems(cls, where, seen):
    """A class's docstring, and every public method and property it or its fastdl bases
    define (each checked once, where it is defined)."""
    problems = [] if (cls.__dict__.get("__doc__") or "").strip() else [f"{where}: no docstring"]
    for klass in cls.__mro__:
        if not klass.__module__.startswith("fastdl") or klass.__module__ == "fastdl._C":
            continue
        for name, attr in vars(klass).items():
            if name.startswith("_") and name not in CHECKED_DUNDERS:
                continue
            if (klass, name) in seen:
                continue
            seen.add((klass, name))
            label = f"{klass.__module__}.{klass.__qualname__}.{name}"
            needs_doc = name not in CHECKED_DUNDERS  # the class's docstring covers its constructor
            if isinstance(attr, (staticmethod, classmethod)):
                problems += function_problems(attr.__func__, label, method=isinstance(attr, classmethod),
                                              needs_doc=needs_doc)
            elif isinstance(attr, property):
                problems += function_problems(attr.fget, label, method=True)
                if attr.fset is not None:
                    problems += function_problems(attr.fset, label + " (setter)", method=True, needs_doc=False)
            elif inspect.isfunction(attr):
                problems += function_problems(attr, label, method=True, needs_doc=needs_doc)
    return problems


def public_names(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", None) == module.__name__]
    return names


def module_problems(module, seen=None):
    """Every problem of a module's public names (functions, classes; constants and
    submodules are skipped); module-level functions defined in it outside __all__ count
    too when public."""
    seen = set() if seen is None else seen
    problems = []
    names = list(public_names(module))
    names += [n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_")
              and v.__module__ == module.__name__ and n not in names]
    for name in names:
        try:
            obj = getattr(module, name)
        except (ImportError, RuntimeError):
            continue  # fastdl.cuda's GPU-only names: checked where their modules load (below)
        where = f"{module.__name__}.{name}"
        if isinstance(obj, types.ModuleType) or id(obj) in seen:
            continue
        if _is_compiled(obj):
            if not _compiled_doc(obj):
                problems.append(f"{where}: no docstring (in its binding)")
            continue
        if inspect.isclass(obj):
            if obj.__module__.startswith("fastdl"):
                seen.add(id(obj))
                problems += class_problems(obj, where, seen)
        elif inspect.isfunction(obj):
            seen.add(id(obj))
            problems += function_problems(obj, where)
    return problems


def test_the_package_ships_its_types():
    """PEP 561: the package (installed, where CI runs this) carries py.typed and the
    compiled module's stub."""
    package = Path(fastdl.__file__).resolve().parent
    assert (package / "py.typed").is_file()
    assert (package / "_C.pyi").is_file()


@pytest.mark.parametrize("name", MODULES)
def test_public_names_are_documented_and_annotated(name):
    module = importlib.import_module(name)
    problems = module_problems(module)
    assert not problems, "\n".join(problems)


def test_gpu_public_names_are_documented_and_annotated():
    import fastdl.cuda as fcuda

    if not fcuda.is_available():
        pytest.skip("numba-cuda with a GPU or its simulator (NUMBA_ENABLE_CUDASIM=1) is not available")
    # the names fastdl.cuda loads on first use (the kernels are fastdl.kernels', checked above)
    module = types.ModuleType("fastdl.cuda")
    module.__all__ = [name for name in fcuda._LAZY if name != "kernels"]
    for name in module.__all__:
        setattr(module, name, getattr(fcuda, name))
    problems = module_problems(module)
    assert not problems, "\n".join(problems)


def test_the_checks_find_what_is_missing():
    """The checks above can fail: a module with an undocumented function, an unannotated
    parameter, a missing return annotation and an undocumented method is reported."""
    module = types.ModuleType("fastdl_fake")
    source = '''
def documented(x: int) -> int:
    """Fine."""
    return x

def no_doc(x: int) -> int:
    return x

def no_param_annotation(x, *args, **kwargs) -> int:
    """Documented."""
    return x

def no_return(x: int):
    """Documented."""

class Thing:
    """Documented."""
    def __init__(self, size) -> None:
        self.size = size

    def method(self) -> int:
        return 1

    @property
    def prop(self):
        """Documented."""
        return 1
'''
    exec(compile(source, "<fake>", "exec"), module.__dict__)
    for v in vars(module).values():
        if callable(v):
            v.__module__ = "fastdl_fake"
    module.__all__ = ["documented", "no_doc", "no_param_annotation", "no_return", "Thing"]
    problems = module_problems(module)
    assert problems == [
        "fastdl_fake.no_doc: no docstring",
        "fastdl_fake.no_param_annotation: parameter 'x' has no annotation",
        "fastdl_fake.no_return: no return annotation",
        "fastdl_fake.Thing.__init__: parameter 'size' has no annotation",
        "fastdl_fake.Thing.method: no docstring",
        "fastdl_fake.Thing.prop: no return annotation",
    ], problems


# --- the stub of the compiled module --------------------------------------------------

def _stub_tree():
    return ast.parse(STUB.read_text(), str(STUB))


def _stub_defs(body):
    """name -> ast node of the top-level functions, classes and constants of a stub body."""
    defs = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defs[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defs[node.target.id] = node
    return defs


def _stub_params(fn):
    """The stub function's parameters as (name, kind), self dropped."""
    a = fn.args
    params = [(p.arg, "positional") for p in a.posonlyargs + a.args]
    if a.vararg:
        params.append(("*" + a.vararg.arg, "var"))
    params += [(p.arg, "keyword") for p in a.kwonlyargs]
    if a.kwarg:
        params.append(("**" + a.kwarg.arg, "var"))
    return [p for p in params if p[0] != "self"]


def _binding_params(obj):
    """The parameters pybind11 records for a compiled function, from its signature line."""
    first = (obj.__doc__ or "").strip().splitlines()[0]
    m = re.match(r"^\w+\((.*)\) -> .*$", first)
    assert m, first
    params, kind = [], "positional"
    depth, current = 0, ""
    for ch in m.group(1) + ",":
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            part = current.strip()
            current = ""
            if not part:
                continue
            if part == "*":
                kind = "keyword"
                continue
            name = part.split(":")[0].split("=")[0].strip()
            if name.startswith("**"):
                params.append((name, "var"))
            elif name != "self":
                params.append((name, kind))
        else:
            current += ch
    return params


def test_stub_declares_exactly_what_the_extension_exposes():
    stub = _stub_defs(_stub_tree().body)
    exposed = {n for n in dir(_C) if not (n.startswith("__") and n.endswith("__"))}
    assert sorted(exposed - set(stub)) == [], "exposed by fastdl._C, missing from _C.pyi"
    assert sorted(set(stub) - exposed - {n for n in stub if n.startswith("_") and n not in exposed}) == [], \
        "declared in _C.pyi, not in fastdl._C"


def test_stub_parameters_match_the_bindings():
    stub = _stub_defs(_stub_tree().body)
    mismatches = []
    for name in dir(_C):
        obj = getattr(_C, name)
        node = stub.get(name)
        if node is None:
            continue  # test_stub_declares_exactly_what_the_extension_exposes names it
        if isinstance(obj, types.BuiltinFunctionType):
            if _stub_params(node) != _binding_params(obj):
                mismatches.append(f"{name}: stub {_stub_params(node)} != binding {_binding_params(obj)}")
        elif isinstance(obj, type):
            methods = _stub_defs(node.body)
            for attr, value in vars(obj).items():
                if attr.startswith("_") and attr != "__init__" or not callable(value) or attr == "__init__" and \
                        not (value.__doc__ or "").startswith("__init__("):
                    continue
                if attr not in methods:
                    mismatches.append(f"{name}.{attr}: not in the stub")
                elif _stub_params(methods[attr]) != _binding_params(value):
                    mismatches.append(f"{name}.{attr}: stub {_stub_params(methods[attr])} != binding "
                                      f"{_binding_params(value)}")
            for attr, value in vars(obj).items():
                if isinstance(value, property) and attr not in methods:
                    mismatches.append(f"{name}.{attr}: property not in the stub")
    assert not mismatches, "\n".join(mismatches)
