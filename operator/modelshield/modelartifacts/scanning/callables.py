"""Which callables a pickle may import: the ones known to be safe, and the dangerous ones.

A pickle runs code by importing a callable (GLOBAL, STACK_GLOBAL, INST) and calling it
(REDUCE, NEWOBJ, OBJ, BUILD). Anything not on the safe list is reported; the dangerous
list raises it to Critical. The lists cover the bypasses seen in public advisories:
calls reached through builtins.getattr, runpy, pip, torch.utils.collect_env.run,
operator helpers, functools.partial and nested unpickling.
"""

from __future__ import annotations

import functools
from typing import Any

from modelshield.api.v1alpha1.common import Severity

#: (module, name) pairs that ordinary model files import and that cannot run code.
SAFE: frozenset[tuple[str, str]] = frozenset(
    {
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),
        ("builtins", "object"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "bytearray"),
        ("builtins", "slice"),
        ("builtins", "complex"),
        ("builtins", "int"),
        ("builtins", "float"),
        ("builtins", "bool"),
        ("builtins", "str"),
        ("builtins", "bytes"),
        ("__builtin__", "set"),
        ("__builtin__", "object"),
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor_v3"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch._utils", "_rebuild_qtensor"),
        ("torch._utils", "_rebuild_sparse_tensor"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch", "Size"),
        ("torch", "device"),
        ("torch", "Tensor"),
        ("torch.nn.parameter", "Parameter"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.random._pickle", "__randomstate_ctor"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random._pickle", "__generator_ctor"),
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("sklearn.utils._bunch", "Bunch"),
        # pickle protocol 5 of a NumPy array: ndarray.__reduce_ex__(5) rebuilds it from
        # its buffer (numpy/core/numeric.py; numpy/_core since NumPy 2).
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        # torch.save of tensors without storage (meta), from NumPy, of subclasses, nested
        # tensors: the other rebuilders of torch/_utils.py that Tensor.__reduce_ex__ names.
        ("torch._utils", "_rebuild_meta_tensor_no_storage"),
        ("torch._utils", "_rebuild_device_tensor_from_numpy"),
        ("torch._utils", "_rebuild_wrapper_subclass"),
        ("torch._utils", "_rebuild_nested_tensor"),
        ("torch._utils", "_rebuild_sparse_csr_tensor"),
        # Tensor dtypes pickled by name (torch.dtype.__reduce__ returns the attribute name).
        *(
            ("torch", dtype)
            for dtype in (
                "float16",
                "float32",
                "float64",
                "bfloat16",
                "complex64",
                "complex128",
                "int8",
                "uint8",
                "int16",
                "int32",
                "int64",
                "bool",
            )
        ),
        # NumPy scalar types pickled by name: estimator parameters such as
        # OneHotEncoder(dtype=numpy.float64) hold the type itself.
        *(
            ("numpy", scalar)
            for scalar in (
                "float16",
                "float32",
                "float64",
                "longdouble",
                "int8",
                "int16",
                "int32",
                "int64",
                "uint8",
                "uint16",
                "uint32",
                "uint64",
                "bool_",
                "complex64",
                "complex128",
                "str_",
                "bytes_",
            )
        ),
        # NumPy random generators' state (sklearn random_state, training RNG state): the
        # bit generators and the SeedSequence that Generator/RandomState pickles name;
        # __pyx_unpickle_SeedSequence is Cython's checksummed state restorer.
        ("numpy.random._mt19937", "MT19937"),
        ("numpy.random._pcg64", "PCG64"),
        ("numpy.random._pcg64", "PCG64DXSM"),
        ("numpy.random._philox", "Philox"),
        ("numpy.random._sfc64", "SFC64"),
        ("numpy.random.bit_generator", "SeedSequence"),
        ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
        # Training arguments that fairseq and PyTorch Lightning checkpoints store
        # (Namespace(**kwargs) only sets attributes).
        ("argparse", "Namespace"),
        # Timestamps in checkpoint metadata (plain value types).
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
    }
)

#: Modules whose classes are data containers in model files (tensor storages, dtypes).
SAFE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("torch", "Storage"),  # torch.FloatStorage, torch.HalfStorage, ...
    ("numpy.dtypes", ""),
)

#: Module prefixes of estimators whose pickles carry only classes and parameters.
KNOWN_LIBRARIES: tuple[str, ...] = (
    "sklearn.",
    "xgboost.",
    "lightgbm.",
    "scipy.sparse.",
    # Layer classes of whole-model pickles (torch.save(model)); only classes, rebuilt
    # through copyreg._reconstructor and Module.__setstate__.
    "torch.nn.modules.",
)

# Whole modules that give process, file, network or interpreter access.
_DANGEROUS_MODULES = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "_posixsubprocess",
    "pty",
    "shutil",
    "sys",
    "socket",
    "ssl",
    "runpy",
    "pip",
    "ensurepip",
    "importlib",
    "imp",
    "pkgutil",
    "code",
    "codeop",
    "ctypes",
    "marshal",
    "pickle",
    "_pickle",
    "dill",
    "cloudpickle",
    "shelve",
    "webbrowser",
    "asyncio",
    "multiprocessing",
    "threading",
    "concurrent",
    "signal",
    "tempfile",
    "glob",
    "pathlib",
    "io",
    "_io",
    "bdb",
    "pdb",
    "cProfile",
    "profile",
    "trace",
    "timeit",
    "doctest",
    "idlelib",
    "lib2to3",
    "venv",
    "setuptools",
    "distutils",
    "http",
    "urllib",
    "urllib2",
    "httplib",
    "requests",
    "aiohttp",
    "ftplib",
    "smtplib",
    "telnetlib",
    "xmlrpc",
    "commands",
    "platform",
    "sysconfig",
    "zipimport",
    "numpy.f2py",
    "numpy.testing",
    "numpy.distutils",
    "torch.hub",
    "torch.utils.cpp_extension",  # load_inline compiles and imports C++ source
    "torch.storage",  # _load_from_bytes is torch.load of a nested byte string
    "pandas.io.pickle",  # read_pickle
    "mlflow.projects",  # runs a project's entry point (a shell command)
    "mlflow.utils.process",
    "torch.utils.collect_env",
    "torch.serialization",
    "torch.jit",
    "torch._dynamo",
    "torch._inductor",
    "torch.package",
    "tensorflow.python.ops.io_ops",
    "keras.src.utils",
)

# Single callables that execute code or reach other callables by name.
_DANGEROUS_NAMES = frozenset(
    {
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "compile"),
        ("builtins", "getattr"),
        ("builtins", "setattr"),
        ("builtins", "delattr"),
        ("builtins", "__import__"),
        ("builtins", "open"),
        ("builtins", "breakpoint"),
        ("builtins", "input"),
        ("builtins", "globals"),
        ("builtins", "locals"),
        ("builtins", "vars"),
        ("builtins", "apply"),
        ("builtins", "memoryview"),
        ("builtins", "type"),
        ("builtins", "print"),
        ("builtins", "help"),
        ("builtins", "exit"),
        ("builtins", "quit"),
        ("__builtin__", "eval"),
        ("__builtin__", "exec"),
        ("__builtin__", "execfile"),
        ("__builtin__", "compile"),
        ("__builtin__", "getattr"),
        ("__builtin__", "setattr"),
        ("__builtin__", "__import__"),
        ("__builtin__", "open"),
        ("__builtin__", "file"),
        ("__builtin__", "apply"),
        ("__builtin__", "input"),
        ("__builtin__", "raw_input"),
        ("operator", "attrgetter"),
        ("operator", "methodcaller"),
        ("operator", "itemgetter"),
        ("_operator", "attrgetter"),
        ("_operator", "methodcaller"),
        ("_operator", "itemgetter"),
        ("functools", "partial"),
        ("functools", "reduce"),
        ("types", "CodeType"),
        ("types", "FunctionType"),
        ("types", "MethodType"),
        ("types", "ModuleType"),
        ("copyreg", "_reconstruct"),
        ("logging", "FileHandler"),
        ("numpy", "load"),
        ("numpy.lib.npyio", "load"),
        ("torch", "load"),
        ("joblib", "load"),
        ("imaplib", "IMAP4_stream"),
        ("pandas", "read_pickle"),
        ("pandas.io.pickle", "read_pickle"),
        ("torch.storage", "_load_from_bytes"),
        ("torch.utils.cpp_extension", "load_inline"),
        ("numpy.lib.format", "read_array"),
    }
)


@functools.cache
def _picklescan_denylist() -> dict[str, Any]:
    """picklescan's maintained table of dangerous globals (module -> "*" or names)."""
    try:
        from picklescan import scanner  # type: ignore[import-untyped]
    except ImportError:
        return {}
    table = getattr(scanner, "_unsafe_globals", {})
    return dict(table) if isinstance(table, dict) else {}


def _picklescan_flags(module: str, name: str) -> bool:
    listed = _picklescan_denylist().get(module)
    if listed is None:
        return False
    if listed == "*":
        return True
    names = {listed} if isinstance(listed, str) else set(listed)
    return name in names or name.split(".")[0] in names


def classify(module: str, name: str) -> tuple[Severity | None, str]:
    """The severity of importing module.name in a pickle (None: known safe), and why.

    A dotted name (``STACK_GLOBAL 'logging' 'os.system'``, protocol 4) is resolved as the
    unpickler resolves it: attribute by attribute from the module, so it reaches whatever
    that module imported. Every way of reading the path as module + attribute is judged
    (``logging.os`` + ``system``, and ``os`` + ``system`` because ``logging.os`` is the
    module ``os``), and the worst one counts. Unknown callables are High: they block at the
    default level (docs/model-artifacts.md, "Unknown callables").
    """
    if "." in name:
        return _classify_dotted(module, name)
    return _classify_listed(module, name)


def _classify_dotted(module: str, name: str) -> tuple[Severity | None, str]:
    parts = [*module.split("."), *name.split(".")]
    worst: tuple[Severity | None, str] = (
        Severity.HIGH,
        f"imports {module}.{name} through an attribute path: it reaches whatever "
        f"{module} holds, not a known-safe callable",
    )
    if (module, name) in SAFE:
        return None, ""
    for first in range(len(parts) - 1):
        for split in range(first + 1, len(parts)):
            candidate = (".".join(parts[first:split]), ".".join(parts[split:]))
            severity, reason = _classify_listed(*candidate)
            if severity is Severity.CRITICAL:
                return severity, f"imports {module}.{name}, which resolves like {reason[8:]}"
    return worst


def _classify_listed(module: str, name: str) -> tuple[Severity | None, str]:
    severity, reason = _classify(module, name)
    if severity is not Severity.CRITICAL and _picklescan_flags(module, name):
        # picklescan's list is maintained against new advisories: it can only raise.
        return Severity.CRITICAL, f"imports {module}.{name}, on picklescan's dangerous list"
    return severity, reason


def _classify(module: str, name: str) -> tuple[Severity | None, str]:
    if (module, name) in SAFE:
        return None, ""
    for prefix, suffix in SAFE_PREFIXES:
        if module == prefix and name.endswith(suffix) and "." not in name:
            return None, ""
    if (module, name) in _DANGEROUS_NAMES:
        return Severity.CRITICAL, f"imports {module}.{name}, which can run arbitrary code"
    for dangerous in _DANGEROUS_MODULES:
        if module == dangerous or module.startswith(dangerous + "."):
            return Severity.CRITICAL, f"imports {module}.{name} from a module that can run code"
    if module in ("__main__", "__builtin__", "builtins"):
        return Severity.HIGH, f"imports {module}.{name}, not a known-safe callable"
    if module.startswith(KNOWN_LIBRARIES):
        return Severity.LOW, f"imports {module}.{name} (needs that library to load)"
    return (
        Severity.HIGH,
        f"imports {module}.{name}, which is not on the list of known-safe callables",
    )
