"""Five patches of Beam internals that cut Beam's own costs in this process without changing what
a pipeline computes, and start local worker processes quietly.

Each patch names the Beam internal it replaces and the signature it expects there; ``install``
applies a patch only when Beam is the version pinned (``EXPECTED_BEAM_VERSION``) and the internal
still has that signature, and otherwise skips it with one warning. ``SKEWLESS_BEAM_PATCHES=0``
turns them all off. Only the command line's entry point and the local worker's install them; a
library call never does. Why each exists and what it saves: ``docs/design.md``, "Beam patches".
"""

import dataclasses
import inspect
import logging
import os
import shlex
import sys
import types
import weakref
from collections.abc import Callable

import apache_beam
from apache_beam.runners.worker import statecache, statesampler
from apache_beam.transforms import core, environments, userstate

from pipelines.runtime import overlap

__all__ = [
    "BEAMS_WORKER_MODULE",
    "EXPECTED_BEAM_VERSION",
    "PATCHES",
    "SWITCH",
    "SAMPLING_PERIOD_MS",
    "WORKER_MODULE",
    "cached_dofn_specs",
    "cached_function_args_defaults",
    "deep_size",
    "install",
    "installed",
    "quiet_worker_environment",
    "set_local_workers",
]

SAMPLING_PERIOD_MS = 10

_beams_function_args_defaults = core.get_function_args_defaults
_of_functions: "weakref.WeakKeyDictionary[types.FunctionType, tuple]" = weakref.WeakKeyDictionary()
_of_methods: "weakref.WeakKeyDictionary[types.FunctionType, tuple]" = weakref.WeakKeyDictionary()


def cached_function_args_defaults(f) -> tuple[list, list]:
    """``core.get_function_args_defaults(f)``, remembered for plain functions and bound methods.

    Args:
        f: The callable Beam inspects.

    Returns:
        ``(argument names, default values)``, as Beam's own function returns them.
    """
    if type(f) is types.MethodType and type(f.__func__) is types.FunctionType:
        cache, key = _of_methods, f.__func__
    elif type(f) is types.FunctionType:
        cache, key = _of_functions, f
    else:
        return _beams_function_args_defaults(f)
    found = cache.get(key)
    if found is None:
        found = cache[key] = _beams_function_args_defaults(f)
    args, defaults = found
    return list(args), list(defaults)


_beams_dofn_specs = userstate.get_dofn_specs
_specs_of_dofns: "weakref.WeakKeyDictionary[object, tuple]" = weakref.WeakKeyDictionary()


def cached_dofn_specs(dofn) -> tuple[set, set]:
    """``userstate.get_dofn_specs(dofn)``, remembered per DoFn object.

    Args:
        dofn: The DoFn Beam inspects.

    Returns:
        ``(state specs, timer specs)``, as Beam's own function returns them.
    """
    try:
        found = _specs_of_dofns.get(dofn)
    except TypeError:  # not weakly referenceable, or not hashable
        return _beams_dofn_specs(dofn)
    if found is None:
        found = _specs_of_dofns[dofn] = _beams_dofn_specs(dofn)
    states, timers = found
    return set(states), set(timers)


_beams_deep_size = statecache.get_deep_size
_globals_ids: tuple[int, frozenset[int]] = (-1, frozenset())  # (modules loaded, ids of their globals)


def _globals_of(module) -> dict | None:
    """``module.__dict__`` without loading a lazily loaded module (``importlib.util.LazyLoader``, as
    scipy's submodules are), which reading it through the module's own ``__getattribute__`` would do."""
    try:
        return object.__getattribute__(module, "__dict__")
    except AttributeError:  # e.g. a cffi library object in sys.modules
        return None


def _ids_of_modules_globals() -> frozenset[int]:
    global _globals_ids
    loaded = len(sys.modules)
    if _globals_ids[0] != loaded:
        dicts = (_globals_of(module) for module in list(sys.modules.values()))
        _globals_ids = (loaded, frozenset(id(d) for d in dicts if d is not None))
    return _globals_ids[1]


def deep_size(*objs) -> int:
    """``statecache.get_deep_size(*objs)``: Beam's measure of a cached value, modules' globals
    excluded, with those globals listed once rather than on every call.

    Args:
        objs: The values to measure.

    Returns:
        Their deep size in bytes.
    """
    excluded = set(_ids_of_modules_globals())
    excluded.add(id(None))
    return statecache.objsize.get_deep_size(  # the measure Beam's statecache uses
        *objs,
        get_size_func=statecache._size_func,
        get_referents_func=statecache._get_referents_func,
        filter_func=statecache._filter_func,
        exclude_modules_globals=False,
        exclude_set=excluded,
    )


BEAMS_WORKER_MODULE = "apache_beam.runners.worker.sdk_worker_main"
WORKER_MODULE = "pipelines.runtime.worker"
_beams_subprocess_environment = environments.SubprocessSDKEnvironment.from_command_string.__func__


_worker_variables: dict[str, str] = {}  # set on the command line of the local worker processes


def set_local_workers(workers: int) -> None:
    """Records how many local worker processes the next pipelines start: as many as the cores or
    more, and they work inline (unless ``SKEWLESS_BACKGROUND_THREADS`` is set here, which they
    inherit)."""
    _worker_variables.clear()
    if workers >= len(os.sched_getaffinity(0)) and overlap.BACKGROUND_THREADS not in os.environ:
        _worker_variables[overlap.BACKGROUND_THREADS] = "0"


def quiet_worker_environment(cls, command_string: str):
    """``SubprocessSDKEnvironment.from_command_string``, with Beam's worker module replaced by
    ``WORKER_MODULE`` in the command, after the variables :func:`set_local_workers` chose (any other
    command is left as it is)."""
    worker = f"-m {BEAMS_WORKER_MODULE}"
    command = command_string
    if worker in command_string:
        variables = "".join(f"{name}={shlex.quote(value)} " for name, value in sorted(_worker_variables.items()))
        command = variables + command_string.replace(worker, f"-m {WORKER_MODULE}")
    return _beams_subprocess_environment(cls, command)


EXPECTED_BEAM_VERSION = "2.77.0"
SWITCH = "SKEWLESS_BEAM_PATCHES"  # "0" turns every patch off


@dataclasses.dataclass(frozen=True)
class Patch:
    """One Beam internal replaced: where it lives, the signature it must have, how to replace it.

    Attributes:
        name: What the patch does, for the warning when it is skipped.
        internal: The replaced object's dotted name, for the same warning.
        current: Returns the internal as Beam has it now (a function; a method's function).
        signature: ``str(inspect.signature(current()))`` on the Beam version expected.
        apply: Installs the replacement.
        applied_signature: The signature once applied, for a patch that changes the internal in place.
    """

    name: str
    internal: str
    current: Callable[[], Callable]
    signature: str
    apply: Callable[[], None]
    applied_signature: str | None = None

    def mismatch(self) -> str | None:
        """Why this patch cannot be applied to the Beam loaded, or None when it can."""
        if apache_beam.__version__ != EXPECTED_BEAM_VERSION:
            return f"Beam is {apache_beam.__version__}, the patch was written for {EXPECTED_BEAM_VERSION}"
        try:
            found = str(inspect.signature(self.current()))
        except (AttributeError, TypeError, ValueError) as error:
            return f"{self.internal} cannot be inspected ({error})"
        if found not in (self.signature, self.applied_signature):
            return f"{self.internal} has the signature {found}, the patch expects {self.signature}"
        return None


def _set_sampling_period() -> None:
    statesampler.StateSampler.__init__.__defaults__ = (SAMPLING_PERIOD_MS,)


def _set(owner, attribute: str, value) -> Callable[[], None]:
    return lambda: setattr(owner, attribute, value)


PATCHES = (
    Patch(
        "DoFn inspection memoised",
        "apache_beam.transforms.core.get_function_args_defaults",
        lambda: _beams_function_args_defaults,
        "(f)",
        _set(core, "get_function_args_defaults", cached_function_args_defaults),
    ),
    Patch(
        "state and timer specs remembered per DoFn",
        "apache_beam.transforms.userstate.get_dofn_specs",
        lambda: _beams_dofn_specs,
        "(dofn: 'DoFn') -> tuple[set[apache_beam.transforms.userstate.StateSpec], "
        "set[apache_beam.transforms.userstate.TimerSpec]]",
        _set(userstate, "get_dofn_specs", cached_dofn_specs),
    ),
    Patch(
        "a shorter state-sampling period",
        "apache_beam.runners.worker.statesampler.StateSampler.__init__",
        lambda: statesampler.StateSampler.__init__,
        "(self, prefix: str, counter_factory, sampling_period_ms=200)",
        _set_sampling_period,
        f"(self, prefix: str, counter_factory, sampling_period_ms={SAMPLING_PERIOD_MS})",
    ),
    Patch(
        "quiet local worker processes",
        "apache_beam.transforms.environments.SubprocessSDKEnvironment.from_command_string",
        lambda: _beams_subprocess_environment,
        "(cls, command_string)",
        _set(environments.SubprocessSDKEnvironment, "from_command_string", classmethod(quiet_worker_environment)),
    ),
    Patch(
        "sizing cached side inputs without walking every module",
        "apache_beam.runners.worker.statecache.get_deep_size",
        lambda: _beams_deep_size,
        "(*objs: Any) -> int",
        _set(statecache, "get_deep_size", deep_size),
    ),
)

_installed: list[str] = []
_tried = False


def install() -> list[str]:
    """Applies every patch that fits the Beam loaded, once a process (later calls change nothing).

    A patch whose Beam internal is not as expected is skipped with one warning; with
    ``SKEWLESS_BEAM_PATCHES=0`` none is applied.

    Returns:
        The names of the patches applied.
    """
    global _tried
    if _tried:
        return list(_installed)
    _tried = True
    if os.environ.get(SWITCH, "1").strip() == "0":
        return []
    for patch in PATCHES:
        problem = patch.mismatch()
        if problem:
            logging.getLogger(__name__).warning("skewless: Beam patch '%s' skipped: %s", patch.name, problem)
            continue
        patch.apply()
        _installed.append(patch.name)
    return list(_installed)


def installed() -> list[str]:
    """The names of the patches applied in this process."""
    return list(_installed)
