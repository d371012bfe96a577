"""Beam tuned in this process: memoised DoFn inspection (Beam's own answers, each computed once) and
a shorter state-sampling period."""

import functools
import gc
import weakref

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.runners.worker import bundle_processor, statesampler
from apache_beam.transforms import core, userstate
from apache_beam.utils.counters import CounterFactory

from pipelines import tuning


class _Stateful(beam.DoFn):
    COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())

    def process(self, element, count=beam.DoFn.StateParam(COUNT), *args, flag=True):  # noqa: B008 - Beam's idiom
        yield element


def _with_defaults(a, b=1, *rest, c=2, **more):
    return a


def _callables():
    return [
        _with_defaults,
        lambda x, y=3: x,
        _Stateful().process,
        _Stateful().setup,
        functools.partial(_with_defaults, 1),
        len,
        str.upper,
        beam.Map(lambda row, side=None: row).fn.process,
    ]


@pytest.mark.parametrize("index", range(len(_callables())))
def test_each_answer_is_beams_own(index):
    f = _callables()[index]
    expected = tuning._beams_function_args_defaults(f)
    assert tuning.cached_function_args_defaults(f) == expected
    assert tuning.cached_function_args_defaults(f) == expected  # from the cache, where cached


def test_a_function_and_the_function_under_bound_methods_are_inspected_once(monkeypatch):
    calls = []
    monkeypatch.setattr(tuning, "_beams_function_args_defaults", lambda f: calls.append(f) or (["x"], [1]))

    def fn(x=1):
        return x

    class Fn(beam.DoFn):
        def process(self, x=1):
            yield x

    for _ in range(3):
        tuning.cached_function_args_defaults(fn)
        tuning.cached_function_args_defaults(Fn().process)  # a new instance, the same function under it
    assert len(calls) == 2
    partial = functools.partial(fn)
    tuning.cached_function_args_defaults(partial)
    tuning.cached_function_args_defaults(partial)
    assert len(calls) == 4  # other callables are inspected every time


def test_answers_are_fresh_lists_and_functions_are_held_weakly():
    def fn(a, b=[]):  # noqa: B006 - a default value to return
        return a

    args, defaults = tuning.cached_function_args_defaults(fn)
    args.append("changed")
    defaults.clear()
    assert tuning.cached_function_args_defaults(fn) == (["a", "b"], [[]])
    held = weakref.ref(fn)
    assert held in [weakref.ref(key) for key in tuning._of_functions.keys()]
    del fn
    gc.collect()
    assert held() is None  # the cache did not keep it alive


def test_installed_beam_still_finds_state_specs():
    tuning.install()
    assert core.get_function_args_defaults is tuning.cached_function_args_defaults
    states, timers = userstate.get_dofn_specs(_Stateful())
    assert [spec.name for spec in states] == ["count"] and not timers
    assert userstate.is_stateful_dofn(_Stateful()) and not userstate.is_stateful_dofn(beam.Map(len).fn)


def test_installed_samplers_sleep_at_most_the_short_period():
    tuning.install()
    assert bundle_processor.statesampler.StateSampler is statesampler.StateSampler  # the one bundles make
    sampler = statesampler.StateSampler("stage", CounterFactory())
    assert sampler.sampling_period_ms == tuning.SAMPLING_PERIOD_MS == 10
    sampler.start()
    sampler.stop()
    assert sampler.finished


def test_deep_sizes_are_beams_own_and_follow_newly_loaded_modules(monkeypatch):
    import json
    import sys
    import types

    from apache_beam.runners.worker import statecache

    values = [{"a": [1, 2, 3], "b": "x" * 100}, [vars(json), list(range(50))], ("path", None), b"y" * 4096]
    for value in values:
        assert tuning.deep_size(value) == tuning._beams_deep_size(value), value
    module = types.ModuleType("skewless_tuning_test_module")
    module.payload = list(range(1000))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    held = [vars(module)]  # a module's globals: excluded once the module is loaded
    assert tuning.deep_size(held) == tuning._beams_deep_size(held) < 1000
    tuning.install()
    assert statecache.get_deep_size is tuning.deep_size


def test_deep_size_leaves_lazily_loaded_modules_unloaded(monkeypatch, tmp_path):
    import importlib.util
    import sys

    (tmp_path / "skewless_lazy_test_module.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.find_spec("skewless_lazy_test_module")
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)  # as scipy does for its submodules: loaded on first attribute use
    monkeypatch.setattr(tuning, "_globals_ids", (-1, frozenset()))  # list the modules again
    assert tuning.deep_size([list(range(10))]) > 0
    assert type(module) is importlib.util._LazyModule  # still not loaded (Beam's own measure loads it)
    assert module.LOADED and type(module) is not importlib.util._LazyModule  # loads when used


def test_dofn_specs_are_beams_own_remembered_per_dofn(monkeypatch):
    class Unhashable(beam.DoFn):
        __hash__ = None

        def process(self, element):
            yield element

    stateful, plain, unhashable = _Stateful(), beam.Map(len).fn, Unhashable()  # (Map asks for its specs)
    calls = []
    beams = tuning._beams_dofn_specs
    monkeypatch.setattr(tuning, "_beams_dofn_specs", lambda dofn: calls.append(dofn) or beams(dofn))
    monkeypatch.setattr(tuning, "_specs_of_dofns", weakref.WeakKeyDictionary())
    for dofn in (stateful, plain, unhashable):
        assert tuning.cached_dofn_specs(dofn) == beams(dofn)
        assert tuning.cached_dofn_specs(dofn) == beams(dofn)
    assert calls == [stateful, plain, unhashable, unhashable]  # the unhashable one every time
    states, _ = tuning.cached_dofn_specs(stateful)
    states.clear()  # a caller changing the answer does not change the cache
    assert [spec.name for spec in tuning.cached_dofn_specs(stateful)[0]] == ["count"]
    tuning.install()
    assert userstate.get_dofn_specs is tuning.cached_dofn_specs


def test_local_worker_processes_run_the_quiet_worker_module():
    from apache_beam.transforms import environments

    tuning.install()
    python = "/venv/bin/python -m "
    beams = environments.SubprocessSDKEnvironment.from_command_string(python + tuning.BEAMS_WORKER_MODULE)
    assert beams.command_string == python + "pipelines.worker" == python + tuning.WORKER_MODULE
    other = environments.SubprocessSDKEnvironment.from_command_string("my-worker --flag")
    assert other.command_string == "my-worker --flag"
    assert isinstance(other, environments.SubprocessSDKEnvironment)


@pytest.mark.parametrize(
    ("workers", "cores", "prefix"),
    [(2, 2, "SKEWLESS_BACKGROUND_THREADS=0 "), (3, 2, "SKEWLESS_BACKGROUND_THREADS=0 "), (2, 4, ""), (0, 2, "")],
)
def test_local_workers_as_many_as_the_cores_work_inline(monkeypatch, workers, cores, prefix):
    from apache_beam.transforms import environments

    monkeypatch.setattr(tuning.os, "sched_getaffinity", lambda _: set(range(cores)))
    monkeypatch.delenv("SKEWLESS_BACKGROUND_THREADS", raising=False)
    monkeypatch.setattr(tuning, "_worker_variables", {})
    tuning.install()
    tuning.set_local_workers(workers)
    python = "/venv/bin/python -m "
    beams = environments.SubprocessSDKEnvironment.from_command_string(python + tuning.BEAMS_WORKER_MODULE)
    assert beams.command_string == prefix + python + tuning.WORKER_MODULE
    assert environments.SubprocessSDKEnvironment.from_command_string("my-worker").command_string == "my-worker"


def test_a_users_own_background_threads_setting_reaches_the_workers_unchanged(monkeypatch):
    monkeypatch.setattr(tuning.os, "sched_getaffinity", lambda _: {0, 1})
    monkeypatch.setenv("SKEWLESS_BACKGROUND_THREADS", "1")  # inherited by the workers as it is
    monkeypatch.setattr(tuning, "_worker_variables", {})
    tuning.set_local_workers(2)
    assert tuning._worker_variables == {}


def test_pipeline_options_tell_how_many_local_workers(monkeypatch):
    from pipelines.options import pipeline_options

    seen = []
    monkeypatch.setattr(tuning, "set_local_workers", seen.append)
    monkeypatch.setattr(tuning.os, "cpu_count", lambda: 8)
    pipeline_options(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    pipeline_options(["--direct_running_mode=multi_processing", "--direct_num_workers=0"])  # one per core
    pipeline_options([])
    assert seen == [2, 8, 0]
