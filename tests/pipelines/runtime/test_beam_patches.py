"""Beam patched in this process: memoised DoFn inspection (Beam's own answers, each computed once), a
shorter state-sampling period, quiet local workers; each patch guarded and the whole set switchable."""

import dataclasses
import functools
import gc
import logging
import subprocess
import sys
import weakref

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.runners.worker import bundle_processor, statesampler
from apache_beam.transforms import core, userstate
from apache_beam.utils.counters import CounterFactory

from pipelines.runtime import beam_patches as tuning

pytestmark = pytest.mark.unit


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
    assert beams.command_string == python + "pipelines.runtime.worker" == python + tuning.WORKER_MODULE
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
    from pipelines.runtime.options import pipeline_options

    seen = []
    monkeypatch.setattr(tuning, "set_local_workers", seen.append)
    monkeypatch.setattr(tuning.os, "cpu_count", lambda: 8)
    pipeline_options(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    pipeline_options(["--direct_running_mode=multi_processing", "--direct_num_workers=0"])  # one per core
    pipeline_options([])
    assert seen == [2, 8, 0]


def _recording(patches, applied):
    return tuple(dataclasses.replace(p, apply=lambda name=p.name: applied.append(name)) for p in patches)


@pytest.fixture
def fresh_install(monkeypatch):
    """``install`` as in a new process, with patches that only record that they were applied."""
    applied = []
    monkeypatch.setattr(tuning, "_tried", False)
    monkeypatch.setattr(tuning, "_installed", [])
    monkeypatch.setattr(tuning, "PATCHES", _recording(tuning.PATCHES, applied))
    return applied


def test_every_patch_fits_the_pinned_beam():
    assert [patch.mismatch() for patch in tuning.PATCHES] == [None] * 5


def test_every_patch_is_applied_once(fresh_install):
    names = [patch.name for patch in tuning.PATCHES]
    assert tuning.install() == names
    assert tuning.install() == names
    assert fresh_install == names


def test_a_patch_whose_internal_changed_is_skipped_with_one_warning(fresh_install, monkeypatch, caplog):
    changed = dataclasses.replace(tuning.PATCHES[0], signature="(f, cache=None)")
    monkeypatch.setattr(tuning, "PATCHES", (changed, *tuning.PATCHES[1:]))
    with caplog.at_level(logging.WARNING):
        assert tuning.install() == [patch.name for patch in tuning.PATCHES[1:]]
    assert [record.getMessage() for record in caplog.records] == [
        "skewless: Beam patch 'DoFn inspection memoised' skipped: "
        "apache_beam.transforms.core.get_function_args_defaults has the signature (f), "
        "the patch expects (f, cache=None)"
    ]
    assert fresh_install == [patch.name for patch in tuning.PATCHES[1:]]


def test_another_beam_version_skips_every_patch(fresh_install, monkeypatch, caplog):
    monkeypatch.setattr(tuning.apache_beam, "__version__", "2.78.0")
    with caplog.at_level(logging.WARNING):
        assert tuning.install() == []
    assert len(caplog.records) == 5
    assert caplog.records[2].getMessage() == (
        "skewless: Beam patch 'a shorter state-sampling period' skipped: "
        "Beam is 2.78.0, the patch was written for 2.77.0"
    )
    assert fresh_install == []


def test_the_switch_turns_every_patch_off(fresh_install, monkeypatch):
    monkeypatch.setenv("SKEWLESS_BEAM_PATCHES", "0")
    assert tuning.install() == []
    assert fresh_install == []
    assert tuning.installed() == []


def test_a_library_call_patches_nothing():
    """Building pipeline options and running a pipeline from Python leaves Beam as it is."""
    code = (
        "import apache_beam as beam\n"
        "from apache_beam.transforms import core\n"
        "original = core.get_function_args_defaults\n"
        "from pipelines.runtime.options import pipeline_options\n"
        "with beam.Pipeline(options=pipeline_options([])) as p:\n"
        "    _ = p | beam.Create([1, 2]) | beam.Map(lambda x: x + 1)\n"
        "from pipelines.runtime import beam_patches\n"
        "print(core.get_function_args_defaults is original, beam_patches.installed())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True []"
