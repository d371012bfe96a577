"""Four of Beam's own costs in this process, cut without changing what a pipeline computes, and
its local worker processes started quietly.

**DoFn inspection, memoised.** Beam 2.77 inspects the signature of every method of a DoFn each time
it asks whether the DoFn uses state or timers (``userstate.get_dofn_specs``: ``dir(dofn)``, and
``inspect.signature`` of each method), and it asks that several times per transform, while building
the pipeline, translating it and creating each stage's operations. A 15k-row ``skewless run`` made
65,000 calls of ``core.get_function_args_defaults``, 0.8 s of its start, for about 1,000 distinct
functions. That one function of ``apache_beam.transforms.core`` (every caller in Beam looks it up
there) is wrapped with a cache keyed by the function inspected: for a bound method, by the function
under it, as ``inspect.signature`` of a bound method is the function's signature without its first
parameter, whatever the instance. Functions are held weakly, so a pipeline's lambdas do not outlive
it. Callables of other kinds (partials, callable objects, builtins) are inspected every time, as
before. Each call returns fresh lists, so a caller changing them cannot change the cache.

**A DoFn's state and timer specs, remembered per DoFn.** ``userstate.get_dofn_specs`` walks
``dir(dofn)`` and wraps every method to find them; Beam asks again for the same DoFn object while
applying, translating and running it: 2,046 calls for about 260 DoFns in a 15k-row run, 0.2 s.
:func:`cached_dofn_specs` answers from a cache keyed by the DoFn object (held weakly; a DoFn that
cannot be, or is not hashable, is inspected every time). Specs come from the methods, which a
DoFn does not change once built; each call returns fresh sets.

**A shorter state-sampling period.** Each bundle starts a thread that samples which step is running
(Beam's msec counters), sleeping a period that grows from 2 ms to 200 ms; ending the bundle joins
that thread, so it waits out the current sleep: up to 0.2 s at the end of every stage that ran for
more than a second, 0.4-0.6 s over a run's 63 stages. The period is capped at
``SAMPLING_PERIOD_MS`` instead; the sampler sleeps without the GIL, so sampling more often costs
nothing measurable.

**Quiet local worker processes.** ``--direct_running_mode=multi_processing`` starts its workers
with ``python -m apache_beam.runners.worker.sdk_worker_main``; that command is swapped for
``python -m pipelines.worker`` (``WORKER_MODULE``), which imports TensorFlow with its native notices
hidden and then runs the same Beam worker. When the workers are at least as many as the machine's
cores (:func:`set_local_workers`, from the pipeline options), the command also sets
``SKEWLESS_BACKGROUND_THREADS=0`` for them: each then works inline rather than on background
threads that could only compete with the other workers (``pipelines/overlap.py``). Beam's local
runner gives its workers no pipeline options, so the command line is where they learn it.

**Sizing cached side inputs without walking every module.** The SDK worker weighs each value it
caches (side inputs, mostly) with ``objsize``, which excludes the globals of every loaded module
from the size and so lists the 5,000 modules of a TensorFlow process on each call: 2.5 ms a call,
0.1 s of a 15k-row run. :func:`deep_size` gives the same size with the ids of those globals
listed once, again whenever the number of loaded modules changes.
"""

import os
import shlex
import sys
import types
import weakref

from apache_beam.runners.worker import statecache, statesampler
from apache_beam.transforms import core, environments, userstate

from pipelines import overlap

__all__ = [
    "BEAMS_WORKER_MODULE",
    "SAMPLING_PERIOD_MS",
    "WORKER_MODULE",
    "cached_dofn_specs",
    "cached_function_args_defaults",
    "deep_size",
    "install",
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
WORKER_MODULE = "pipelines.worker"
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


def install() -> None:
    """Makes Beam in this process use all five (idempotent)."""
    environments.SubprocessSDKEnvironment.from_command_string = classmethod(quiet_worker_environment)
    core.get_function_args_defaults = cached_function_args_defaults
    userstate.get_dofn_specs = cached_dofn_specs
    statesampler.StateSampler.__init__.__defaults__ = (SAMPLING_PERIOD_MS,)
    statecache.get_deep_size = deep_size
