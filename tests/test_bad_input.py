"""Bad input of every kind, for every numeric field of every schema: a one-line error before any
training, or a config that validates and runs.

The fields are found by walking the schemas (a field added later is walked too). Values come from
hypothesis: finite and non-finite floats, negative and huge integers, lists of any length. Each
value is applied the way Hydra applies a command-line override (its override parser, then
``OmegaConf.update`` on the composed config of that group choice), so thousands of examples cost
seconds; a few go through ``train.py``'s own pre-check, and a few accepted ones are trained.
"""

from __future__ import annotations

import functools
import math
import typing
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from conftest import CONF, GROUPS, TOP_KEYS, compose_config, group_choices, read_csv, run_job
from initlab.cli import check_command_line, check_single_run, remove_stub_run_dir
from initlab.config import SEED_MAX, ConfigError, EarlyStoppingConfig, ExperimentConfig, Range, to_experiment
from initlab.data import load_data
from test_config import schema_of


def numeric_fields(schema: type) -> list[tuple[str, Range, str]]:
    """(field, range, kind) for every field of ``schema`` that declares a range; kind: int, float,
    float list, int list."""
    out = []
    for f in fields(schema):
        rng = f.metadata.get("range")
        if rng is not None:
            kind = "int" if rng.integer else "float"
            out.append((f.name, rng, f"{kind} list" if f.metadata.get("list") else kind))
    return out


# (base choice overrides, dotted key, range, kind) for every numeric field of every choice of every group
FIELDS = [((f"{group}={choice}",), f"{group}.{name}", rng, kind)
          for group in GROUPS for choice in group_choices(group)
          for name, rng, kind in numeric_fields(schema_of(group, choice))]
FIELDS += [((), name, rng, kind) for name, rng, kind in numeric_fields(ExperimentConfig)]
FIELDS += [((), f"early_stopping.{name}", rng, kind) for name, rng, kind in numeric_fields(EarlyStoppingConfig)]
IDS = [" ".join((*base, key)) for base, key, _, _ in FIELDS]

SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 1.0 - 1e-12, 2.0, 1e308, -1e-300, 5e-324]
SPECIAL_INTS = [0, -1, 1, 2, 2**31 - 1, 2**31, SEED_MAX, SEED_MAX + 1, 2**63, -(2**63), 10**30]
floats = st.one_of(st.sampled_from(SPECIAL_FLOATS), st.floats(allow_nan=True, allow_infinity=True))
ints = st.one_of(st.sampled_from(SPECIAL_INTS), st.integers(-(2**70), 2**70))
lists = {"float list": st.lists(floats, max_size=4), "int list": st.lists(ints, max_size=4)}


def render(value) -> str:
    """A value as a user types it on the command line (``nan``, ``-inf``, ``1e+308``, ``[0.9,nan]``)."""
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    return repr(value)


@functools.lru_cache(maxsize=None)
def base_config(base: tuple[str, ...]) -> DictConfig:
    return compose_config(*base)


def apply_override(base: tuple[str, ...], override: str) -> DictConfig:
    """What Hydra does with ``override`` on the command line: parse it, then merge it in."""
    parsed = OverridesParser.create().parse_override(override)
    cfg = base_config(base).copy()
    OmegaConf.update(cfg, parsed.key_or_group, parsed.value(), merge=True)
    return cfg


def check(base: tuple[str, ...], key: str, value) -> str | None:
    """The error message for ``key=value`` on top of ``base`` (None: accepted), asserting its form."""
    try:
        cfg = apply_override(base, f"{key}={render(value)}")
    except ValidationError as err:  # a float for an int field etc.: Hydra refuses it while composing
        assert err.full_key == key or err.full_key.startswith(f"{key}["), err.full_key  # a list's item
        return str(err)
    try:
        to_experiment(cfg)
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message and key in message, message  # names the field
        return message
    return None


SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("base,key,rng,kind", FIELDS, ids=IDS)
@SETTINGS
@given(data=st.data())
def test_every_numeric_field_is_refused_in_one_line_or_in_range(base, key, rng, kind, data):
    value = data.draw({"float": floats, "int": ints, **lists}[kind], label=key)
    message = check(base, key, value)
    values = value if kind.endswith("list") else [value]
    in_range = len(values) > 0 and all(rng.contains(v) for v in values)
    if not in_range:  # NaN, inf and out-of-range values never pass
        assert message is not None, f"{key}={render(value)} was accepted"


def test_the_walk_covers_every_group_and_kind():
    keys = {key for _, key, _, _ in FIELDS}
    assert {"init.factor", "init.gain", "init.std", "init.mean", "init.a", "init.b", "optimizer.lr",
            "optimizer.betas", "optimizer.eps", "optimizer.alpha", "optimizer.momentum", "dataset.noise",
            "dataset.cluster_std", "dataset.seed", "dataset.split_seed", "dataset.val_size", "dataset.mean",
            "dataset.std", "activation.negative_slope", "activation.alpha", "model.width", "model.bias_std",
            "model.channels", "model.d_model", "model.nhead", "model.dim_feedforward", "model.dropout",
            "depth", "seed", "threads", "probe_size", "batch_size", "epochs", "jacobian_every", "log_every_steps",
            "distributions_every"} <= keys
    assert {kind for *_, kind in FIELDS} == {"int", "float", "float list", "int list"}


@pytest.mark.parametrize("base,key,rng,kind", [f for f in FIELDS if f[3] == "float"],
                         ids=[i for i, f in zip(IDS, FIELDS) if f[3] == "float"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_every_float_field_refuses_non_finite_values(base, key, rng, kind, value):
    message = check(base, key, value)
    assert message is not None and message.startswith(f"{key} must be"), message
    assert message.endswith(f"got {value}"), message


# --- through train.py's own pre-check, as the user sees it ---------------------------------------
PLATEAU_MODE = ("unknown scheduler parameter(s) mode for scheduler=reduce_on_plateau; valid: factor, min_lr, monitor, "
                "patience, warmup_epochs; mode is not a parameter: ReduceLROnPlateau's mode follows the monitor: "
                "max for an accuracy, min for a loss")


@pytest.mark.parametrize("args,line", [
    (["init.factor=inf"], "init.factor must be finite and > 0, got inf"),
    (["init=normal", "init.std=inf"], "init.std must be finite and > 0, got inf"),
    (["dataset=moons", "dataset.noise=inf"], "dataset.noise must be finite and >= 0, got inf"),
    (["optimizer=adam", "optimizer.betas=[0.9,nan]"], "optimizer.betas must be 2 numbers, each in [0, 1), got [0.9, nan]"),
    (["seed=4294967296"], "seed must be in [0, 4294967295], got 4294967296"),
    (["init.factr=1"], "unknown init parameter(s) factr for init=he_normal; valid: apply_to, embedding, factor, mode"),
    (["init=normal", "init.sd=1"], "unknown init parameter(s) sd for init=normal; valid: apply_to, embedding, std"),
    # another override bad too: the choice is still named (it read init=?)
    (["init=orthogonal", "init.factr=1", "foo=1"],
     "unknown init parameter(s) factr for init=orthogonal; valid: apply_to, embedding, gain"),
    (["init.factr=1", "foo=1"], "unknown init parameter(s) factr for init=he_normal; valid: apply_to, embedding, factor, mode"),
    # a key the schema derives from its fields (it was a parameter once): what it follows
    (["scheduler=reduce_on_plateau", "scheduler.mode=max"], PLATEAU_MODE),
    (["scheduler=reduce_on_plateau", "+scheduler.mode=max"], PLATEAU_MODE),
    (["dataset=blobs", "dataset.noise=0.1"], "unknown dataset parameter(s) noise for dataset=blobs; valid: "
                                             "cluster_std, n_classes, n_features, n_test, n_train, seed, val_size"),
    (["deptth=3"], f"unknown key deptth; valid top-level keys: {TOP_KEYS}"),
    (["~foo"], f"~foo: no such key to delete; top-level keys: {TOP_KEYS}"),
    # a key set after its deletion was "unknown key depth; valid top-level keys: ..., depth, ..."
    (["~depth=5", "depth=5"], "depth=5 sets the key that ~depth=5 removes before it; valid: one of the two"),
    (["~depth", "seed=1", "depth=3"], "depth=3 sets the key that ~depth removes before it; valid: one of the two"),
    # the deletion, not the later setting, is what the schema refuses
    (["~init.factor", "init.factor=2"], "~init.factor: VarianceScalingConfig (DictConfig) does not support deletion; "
                                        "valid: a float, finite and > 0"),
    (["+epoch=3", "epochs=0"], f"unknown key epoch; valid top-level keys: {TOP_KEYS}"),
    (["depth=three"], "depth=three: Value 'three' of type 'str' could not be converted to Integer; "
                      "valid: an integer > 0"),
    (["init.mode=fan_x"], "init.mode=fan_x: Invalid value 'fan_x'; valid: one of fan_in, fan_out"),
    (["loss=hinge"], "loss=hinge: Invalid value 'hinge'; valid: one of cross_entropy, mse"),
    (["log_every_steps=-1"], "log_every_steps must be in [0, 2147483647], got -1"),
    (["distributions_every=1.5"], "distributions_every=1.5: Value '1.5' of type 'float' could not be converted to "
                                  "Integer; valid: an integer in [0, 2147483647]"),
    (["checkpoint_every_s=null"], "checkpoint_every_s=null: field 'checkpoint_every_s' is not Optional; "
                                  "valid: a float in [0, 1000000000]"),
    (["optimizer.lr=fast"], "optimizer.lr=fast: Value 'fast' of type 'str' could not be converted to Float; "
                            "valid: a float, finite and > 0"),
    (["optimizer=adam", "optimizer.betas=null"], "optimizer.betas=null: field 'optimizer.betas' is not Optional; "
                                                 "valid: 2 numbers, each in [0, 1)"),
    (["~epochs"], "epochs has no value (~epochs removed it); valid: an integer >= 0"),
    (["early_stopping=null"], "early_stopping=null: field 'early_stopping' is not Optional; valid: its keys, each set "
                              "on its own (enabled, monitor, patience, min_delta, restarts, restart_below)"),
    # a config group with the wrong prefix: Hydra's refusal, with the form that works and the choices
    (["+activation=tanh"], "+activation=tanh: activation is in the config's defaults already: choose with "
                           "activation=tanh; valid: " + ", ".join(group_choices("activation"))),
    (["++activation=tanh"], "++activation=tanh: choose a group with activation=tanh; valid: "
                            + ", ".join(group_choices("activation"))),
    (["deep_plain=relu_he"], "deep_plain=relu_he: deep_plain is not in the config's defaults: add it with "
                             "+deep_plain=relu_he; valid: " + ", ".join(group_choices("deep_plain"))),
    # enums, bools, strings and list items (the list's override named)
    (["checkpoint=null"], "checkpoint=null: field 'checkpoint' is not Optional; valid: one of none, last, best, both"),
    (["model.norm=null"], "model.norm=null: field 'model.norm' is not Optional; valid: one of none, batchnorm, layernorm"),
    (["resume=maybe"], "resume=maybe: Value 'maybe' is not a valid bool (type str); valid: true or false"),
    (["dataset=mnist", "dataset.root=null"], "dataset.root=null: field 'dataset.root' is not Optional; valid: a string"),
    (["model=cnn", "model.channels=[a,b]"], "model.channels=[a,b]: Value 'a' of type 'str' could not be converted to "
                                            "Integer; valid: 1 or more integers, each > 0"),
    (["model=cnn", "model.channels={a:1}"], "model.channels={a:1}: Cannot merge DictConfig with ListConfig; "
                                            "valid: 1 or more integers, each > 0"),
    (["optimizer=adam", "optimizer.betas=[0.9,x]"], "optimizer.betas=[0.9,x]: Value 'x' of type 'str' could not be "
                                                    "converted to Float; valid: 2 numbers, each in [0, 1)"),
    # OmegaConf reads any integer, and yes/on/y, as a bool: nesterov=2 was a silent true
    (["optimizer.nesterov=2"], "optimizer.nesterov=2: not a bool; valid: true or false"),
    (["resume=yes"], "resume=yes: not a bool; valid: true or false"),
    (["early_stopping.enabled=0"], "early_stopping.enabled=0: not a bool; valid: true or false"),
    # more classes than training samples: make_blobs drew fewer classes and the run said nothing
    (["dataset=blobs", "dataset.n_train=100", "dataset.n_test=50", "dataset.n_classes=200"],
     "dataset.n_classes must be <= dataset.n_train (100: every class needs training samples), got 200"),
    (["dataset=spiral", "dataset.n_train=3", "dataset.n_classes=4"],
     "dataset.n_classes must be <= dataset.n_train (3: every class needs training samples), got 4"),
    # sets with a fixed number of classes too: shapes with n_train=2 trained on 2 of its 4 classes
    (["dataset=shapes", "dataset.n_train=2", "dataset.n_test=2"],
     "dataset.n_train must be >= 4 (the 4 classes of shapes: every class needs training samples), got 2"),
    # several values without -m: Hydra's hints in one line (was its first line alone), only the forms
    # the field takes (an int was offered depth=[5,18] and depth='5,18', both refused)
    (["depth=2,3"], "depth=2,3: several values; valid: a sweep with -m (python train.py -m depth=2,3)"),
    (["optimizer=adam", "optimizer.betas=0.9,0.99"], "optimizer.betas=0.9,0.99: several values; valid: a sweep with "
     "-m (python train.py -m optimizer.betas=0.9,0.99), or a list optimizer.betas=[0.9,0.99]"),
    (["dataset=imdb", "dataset.root=a,b"], "dataset.root=a,b: several values; valid: a sweep with -m (python "
     "train.py -m dataset.root=a,b), or a string dataset.root='a,b'"),
    (["threads=1,2"], "threads=1,2: several values; valid: a sweep with -m (python train.py -m threads=1,2)"),
    (["checkpoint=last,best"], "checkpoint=last,best: several values; valid: a sweep with -m (python train.py -m "
     "checkpoint=last,best)"),  # a choice: its values are no string either
    (["optimizer=adam", "optimizer.betas=[0.9,0.99],[0.5,0.9]"], "optimizer.betas=[0.9,0.99],[0.5,0.9]: several "
     "values; valid: a sweep with -m (python train.py -m optimizer.betas=[0.9,0.99],[0.5,0.9])"),
    (["activation=relu,tanh"], "activation=relu,tanh: several choices; valid: a sweep with -m (python train.py -m "
                               "activation=relu,tanh), or one choice"),
    (["=3"], "=3: no key before '='; valid: KEY=VALUE (a config key or group)"),
    (["+depth=3"], "+depth=3: depth is in the config already; valid: depth=3 (or ++depth=3)"),
    (["epochs=1", "epochs=abc"], "epochs=abc: Value 'abc' of type 'str' could not be converted to Integer; "
                                 "valid: an integer >= 0"),
    (["epochs=abc", "epochs=1"], "epochs=abc: Value 'abc' of type 'str' could not be converted to Integer; "
                                 "valid: an integer >= 0"),  # the bad one is named, not the last (was epochs=1)
    # an interpolation resolved when the config is read (was a traceback from the pre-check)
    (["optimizer.lr=${foo}"], "optimizer.lr=${foo}: Interpolation key 'foo' not found"),
    # a choice without parameters, and a dict without a schema: the line ended "valid: " with nothing after it
    (["logger.histograms=true"], "unknown logger parameter(s) histograms for logger=none; logger=none takes no "
                                 "parameters"),
    (["hydra.job_logging.x=1"], "unknown key hydra.job_logging.x; keys of hydra.job_logging: version, formatters, "
                                "handlers, root, disable_existing_loggers; add a new one with +hydra.job_logging.x=1"),
    (["hydra.job.env_set.foo=1"], "unknown key hydra.job.env_set.foo; hydra.job.env_set has no keys yet; add a new "
                                  "one with +hydra.job.env_set.foo=1"),
])
def test_command_line_errors_are_one_line(args, line):
    assert check_single_run(args, CONF) == line


CHOICES = [(group, choice) for group in GROUPS for choice in group_choices(group)]


@pytest.mark.parametrize("group,choice", CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_an_unknown_parameter_names_the_choices_parameters_or_says_it_has_none(group, choice):
    """``logger.histograms=true`` with logger=none said "valid: " and nothing more; a choice without
    parameters says so in words, with and without ``+`` (Hydra's refusal, and ``to_experiment``'s)."""
    params = sorted(f.name for f in fields(schema_of(group, choice)) if f.name != "name")
    said = f"valid: {', '.join(params)}" if params else f"{group}={choice} takes no parameters"
    for override in (f"{group}.zzz=1", f"+{group}.zzz=1"):
        line = check_single_run([f"{group}={choice}", override], CONF)
        assert line == f"unknown {group} parameter(s) zzz for {group}={choice}; {said}", override


@pytest.mark.parametrize("mode", [[], ["-m"]])
def test_a_key_a_preset_file_sets_that_the_chosen_schema_lacks_is_named_with_the_valid_keys(mode):
    """he_factor sets MNIST's dataset.mean; with dataset=digits the line ended at Hydra's
    "In 'experiment/he_factor': ConfigKeyError raised while composing config:"."""
    assert check_command_line([*mode, "+experiment=he_factor", "dataset=digits"], CONF) == (
        "experiment/he_factor.yaml sets dataset.mean: Key 'mean' not in 'DigitsConfig'; valid keys of dataset: "
        "augment, name, split_seed, test_size, val_size")


def schema_for(base: tuple[str, ...], key: str) -> type:
    """The dataclass that declares ``key`` in FIELDS' entry (base choice, key)."""
    if base:
        return schema_of(*base[0].split("="))
    return EarlyStoppingConfig if key.startswith("early_stopping.") else ExperimentConfig


ONE_PER_KEY = list({key: (base, key, rng, kind) for base, key, rng, kind in reversed(FIELDS)}.values())


@pytest.mark.parametrize("base,key,rng,kind", ONE_PER_KEY, ids=[" ".join((*f[0], f[1])) for f in ONE_PER_KEY])
def test_null_for_every_numeric_field_says_what_is_valid(base, key, rng, kind):
    """``key=null`` where null is not allowed: OmegaConf's reason and the field's range, one line
    (each dotted key once, under the first choice that declares it: the message path is the same)."""
    message = check_single_run([*base, f"{key}=null"], CONF)
    spec = next(f for f in fields(schema_for(base, key)) if f.name == key.rsplit(".", 1)[-1])
    if spec.metadata["optional"]:
        assert message is None
        return
    noun = "" if kind.endswith("list") else "an integer " if kind == "int" else "a float"
    assert message.startswith(f"{key}=null: field '{key}' is not Optional; valid: {noun}"), message
    assert message.endswith(rng.describe()) and "\n" not in message, message


def other_fields(schema: type) -> list[str]:
    """Fields of ``schema`` without a declared range and without null among their values: enums,
    bools, strings (not ``name``, which the choice's file sets, nor nested configs)."""
    hints = typing.get_type_hints(schema)
    return [f.name for f in fields(schema) if "range" not in f.metadata and f.name != "name"
            and type(None) not in typing.get_args(hints[f.name]) and not is_dataclass(hints[f.name])
            and f.name not in GROUPS]


OTHER_FIELDS = list({key: (base, key) for base, key in reversed(
    [((f"{group}={choice}",), f"{group}.{name}") for group in GROUPS for choice in group_choices(group)
     for name in other_fields(schema_of(group, choice))]
    + [((), name) for name in other_fields(ExperimentConfig)]
    + [((), f"early_stopping.{name}") for name in other_fields(EarlyStoppingConfig)])}.values())


def annotation(base: tuple[str, ...], key: str) -> type:
    """The type an OTHER_FIELDS entry's field is annotated with."""
    schema = schema_of(*base[0].split("=")) if base else (
        EarlyStoppingConfig if key.startswith("early_stopping.") else ExperimentConfig)
    return typing.get_type_hints(schema)[key.rsplit(".", 1)[-1]]


BOOL_FIELDS = [(b, k) for b, k in OTHER_FIELDS if annotation(b, k) is bool]
ENUM_FIELDS = [(b, k) for b, k in OTHER_FIELDS
               if isinstance(annotation(b, k), type) and issubclass(annotation(b, k), Enum)]


@pytest.mark.parametrize("base,key", BOOL_FIELDS, ids=[" ".join((*b, k)) for b, k in BOOL_FIELDS])
@pytest.mark.parametrize("value", ["2", "yes"])
def test_every_bool_field_takes_true_or_false_only(base, key, value):
    """OmegaConf reads any integer and yes/on/y as a bool: ``optimizer.nesterov=2`` ran as true."""
    assert check_single_run([*base, f"{key}={value}"], CONF) == f"{key}={value}: not a bool; valid: true or false"


def users_config(root: Path, base: tuple[str, ...], key: str, value: str) -> tuple[list[str], Path, str]:
    """A user's config folder (on ``hydra.searchpath``) whose one file sets ``key`` to ``value``: a
    choice extending ours (``optimizer/mine.yaml``: ``defaults: [momentum]``) for a group's field,
    an experiment file for a top-level one. Returns (overrides, the file, the key as the file spells it)."""
    if base:
        group, choice = base[0].split("=")
        field = key.split(".", 1)[1]
        file, text, choose = root / group / "mine.yaml", f"defaults:\n  - {choice}\n  - _self_\n", f"{group}=mine"
    else:
        field = key
        file, text, choose = root / "experiment" / "mine.yaml", "# @package _global_\n", "+experiment=mine"
    *parents, leaf = field.split(".")
    text += "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents)) + f"{'  ' * len(parents)}{leaf}: {value}\n"
    file.parent.mkdir(parents=True)
    file.write_text(text)
    return [f"hydra.searchpath=[file://{root}]", choose], file, field


@pytest.mark.parametrize("base,key", BOOL_FIELDS, ids=[" ".join((*b, k)) for b, k in BOOL_FIELDS])
@pytest.mark.parametrize("value", ["2", '"on"'])
def test_every_bool_field_set_in_a_users_config_file_takes_true_or_false_only(base, key, value, tmp_path):
    """A file's ``nesterov: 2`` ran as true: OmegaConf makes it a bool on composing, so the check
    reads the file itself. Its choice in a folder on hydra.searchpath was refused as unknown.
    (A bare ``yes`` is YAML 1.1's true already when the file is read: not a case to refuse.)"""
    overrides, file, field = users_config(tmp_path, base, key, value)
    assert check_single_run(overrides, CONF) == (
        f"{file}: {field}: {value.strip(chr(34))}: not a bool; valid: true or false")


@pytest.mark.parametrize("choice", [f"+{g}={c}" for g in ("experiment", "deep_plain") for c in group_choices(g)])
def test_a_single_run_of_an_optional_groups_choice_passes_the_pre_check(choice):
    """The bool check read ``+experiment=grid_quick`` as a value for a key 'experiment' and refused
    the run ("Key 'experiment' not in 'ExperimentConfig'"), which Hydra composes and runs (depth
    20: TAT's targets need 13 layers)."""
    assert check_single_run([choice, "depth=20"], CONF) is None


@pytest.mark.parametrize("value", ["true", "false", "${resume}"])
def test_a_users_config_file_with_true_false_or_an_interpolation_passes(value, tmp_path):
    overrides, _, _ = users_config(tmp_path, ("optimizer=momentum",), "optimizer.nesterov", value)
    assert check_single_run(overrides, CONF) is None
    cfg = compose_config(*overrides)
    assert cfg.optimizer.name == "momentum"
    assert cfg.optimizer.nesterov is {"true": True, "false": False}.get(value, cfg.resume)


@pytest.mark.parametrize("base,key", ENUM_FIELDS, ids=[" ".join((*b, k)) for b, k in ENUM_FIELDS])
def test_every_enum_field_names_its_values(base, key):
    values = ", ".join(m.value for m in annotation(base, key))
    assert check_single_run([*base, f"{key}=nosuch"], CONF) == (
        f"{key}=nosuch: Invalid value 'nosuch'; valid: one of {values}")


def test_the_walks_cover_the_bools_and_enums():
    assert {"resume", "optimizer.nesterov", "early_stopping.enabled", "dataset.augment", "model.residual"} <= \
        {k for _, k in BOOL_FIELDS}
    assert {"checkpoint", "loss", "device", "init.mode", "model.norm", "early_stopping.monitor"} <= \
        {k for _, k in ENUM_FIELDS}


@pytest.mark.parametrize("base,key", OTHER_FIELDS, ids=[" ".join((*b, k)) for b, k in OTHER_FIELDS])
def test_null_for_every_other_field_says_what_is_valid(base, key):
    """The same for enums, bools and strings: what the annotation admits (an enum's values, true or
    false, a string), one line."""
    message = check_single_run([*base, f"{key}=null"], CONF)
    assert message is not None and message.startswith(f"{key}=null: field '{key}' is not Optional; valid: "), message
    assert "\n" not in message


N_JOBS = "valid: an integer other than 0 (joblib's n_jobs: k workers, -1 one per core; INITLAB_N_JOBS sets it)"
SWEPT_GAIN = ("unknown init parameter(s) gain for init=he_normal; valid: apply_to, embedding, factor, mode "
              "(Hydra composes a sweep's base config with init=he_normal, not the swept ones: set a parameter of the swept choices with "
              "++init.gain=...)")

SWEPT_FACTOR = ("unknown init parameter(s) factor for init=orthogonal; valid: apply_to, embedding, gain "
                "(init.factor=... sets it on every swept choice, but init=orthogonal has no factor (its jobs would be "
                "refused): sweep it separately)")


# Hydra composes a sweep's base config before any callback: its errors are one line too
@pytest.mark.parametrize("args,line", [
    (["foo=1", "epochs=1"], f"unknown key foo; valid top-level keys: {TOP_KEYS}"),
    (["foo=1,2", "depth=1,2"], f"unknown key foo; valid top-level keys: {TOP_KEYS}"),
    (["init.factr=1,2"], "unknown init parameter(s) factr for init=he_normal; "
                         "valid: apply_to, embedding, factor, mode"),
    (["seed=range(0,3)", "optimizer.lrr=0.1,1"], "unknown optimizer parameter(s) lrr for optimizer=sgd; valid: "
                                                 "lr, momentum, nesterov, weight_decay"),
    (["+foo=1", "epochs=1"], f"unknown key foo; valid top-level keys: {TOP_KEYS}"),
    (["--multirun", "depth=1,2", "+epoch=3"], f"unknown key epoch; valid top-level keys: {TOP_KEYS}"),
    (["epochs=abc", "depth=1,2"], "epochs=abc: Value 'abc' of type 'str' could not be converted to Integer; "
                                  "valid: an integer >= 0"),
    (["init.factr=1", "depth=1,2"], "unknown init parameter(s) factr for init=he_normal; "
                                    "valid: apply_to, embedding, factor, mode"),
    (["init=he_normal,orthogonal", "init.factr=1"], "unknown init parameter(s) factr for init=he_normal; "
                                                    "valid: apply_to, embedding, factor, mode"),
    (["init=glob(he_*)", "init.factr=1"], "unknown init parameter(s) factr for init=he_normal; "
                                          "valid: apply_to, embedding, factor, mode"),
    (["init=orthogonal,xavier_normal", "init.gain=2"], SWEPT_GAIN),
    # a key a swept choice derives: its note though the base config (scheduler=none) has no such property
    (["scheduler=reduce_on_plateau,step", "scheduler.mode=max"], "unknown scheduler parameter(s) mode for "
     "scheduler=none; valid: warmup_epochs" + PLATEAU_MODE.split("warmup_epochs")[1]),
    (["logger=none,tensorboard", "logger.histograms=false"], "unknown logger parameter(s) histograms for "
     "logger=none; logger=none takes no parameters (Hydra composes a sweep's base config with logger=none, not the "
     "swept ones: ++logger.histograms=... sets it on every swept choice, but logger=none has no histograms (its jobs "
     "would be refused): sweep it separately)"),
    # ++ on choices of which one lacks the key: the hint led to "unknown init parameter(s) gain" per job
    (["init=he_normal,orthogonal,zero", "init.gain=2"], SWEPT_GAIN.split(": set a parameter")[0] + ": ++init.gain=... "
     "sets it on every swept choice, but init=he_normal, init=zero have no gain (their jobs would be refused): sweep "
     "them separately)"),
    # the other order: the base choice has the key, a swept one lacks it; its jobs failed in Hydra's words
    # (job init=orthogonal ...: Could not override 'init.factor': Key 'factor' not in 'GainConfig')
    (["init=he_normal,orthogonal", "init.factor=1", "epochs=1"], SWEPT_FACTOR),
    (["init.factor=1", "init=he_normal,orthogonal"], SWEPT_FACTOR),
    (["hydra/sweeper=optuna_search", "objective=train_acc", "init=choice(he_normal,orthogonal)", "init.factor=1"],
     SWEPT_FACTOR),
    (["init=he_normal,orthogonal", "++init.factor=1"], SWEPT_FACTOR.replace("(init.factor=", "(++init.factor=")),
    (["model=mlp,cnn", "model.width=8"], "unknown model parameter(s) width for model=cnn; valid: bias_init, bias_std, "
     "branch_init, channels, norm, residual (model.width=... sets it on every swept choice, but model=cnn has no "
     "width (its jobs would be refused): sweep it separately)"),
    # no swept choice has it (only the base one, he_normal): nothing to sweep separately
    (["init=orthogonal,zero", "init.factor=1"], SWEPT_FACTOR.split(" (")[0]),
    (["~foo"], f"~foo: no such key to delete; top-level keys: {TOP_KEYS}"),
    (["~init.factr", "depth=1,2"], "~init.factr: no such key to delete; keys of init: apply_to, embedding, factor, mode, name"),
    (["init=nope", "depth=1,2"], "unknown init 'nope'; valid: " + ", ".join(group_choices("init"))),
    # Hydra's sweeper keeps a key's last override: the sweep over 1,abc became one job with epochs=2
    (["epochs=1,abc", "epochs=2"], "epochs=1,abc is overridden by the later epochs=2 (Hydra keeps a key's last "
                                   "override), which would drop the sweep's values; valid: one override per swept key"),
    (["activation=relu,tanh", "depth=3", "activation=gelu"], "activation=relu,tanh is overridden by the later "
     "activation=gelu (Hydra keeps a key's last override), which would drop the sweep's values; valid: one override "
     "per swept key"),
    # ++ and ~ name the same key: every trial trained init.factor=2 under folders named by the search's values
    (["init.factor=1,3", "++init.factor=2"], "init.factor=1,3 is overridden by the later ++init.factor=2 (Hydra keeps "
     "a key's last override), which would drop the sweep's values; valid: one override per swept key"),
    (["epochs=1,2", "~epochs"], "epochs=1,2 is overridden by the later ~epochs (Hydra keeps a key's last override), "
                                "which would drop the sweep's values; valid: one override per swept key"),
    (["activation=glob(zz*)"], "activation=glob(zz*) matches no activation; valid: "
                               + ", ".join(group_choices("activation"))),
    (["init=glob(*,exclude=[*_*,normal,orthogonal,zero,lsuv])"],
     "init=glob(*,exclude=[*_*,normal,orthogonal,zero,lsuv]) matches no init; valid: "
     + ", ".join(group_choices("init"))),
    # joblib's n_jobs fails inside the launcher, after the sweep has started
    (["hydra/launcher=parallel", "hydra.launcher.n_jobs=0", "seed=0,1"], f"hydra.launcher.n_jobs=0; {N_JOBS}"),
    (["hydra/launcher=batched_parallel", "hydra.launcher.n_jobs=0", "seed=0,1"], f"hydra.launcher.n_jobs=0; {N_JOBS}"),
    # submitit's settings reached sbatch (a traceback beside an empty sweep folder) or killed local tasks at once
    (["hydra/launcher=slurm", "hydra.launcher.mem_gb=-1", "seed=0,1"],
     "hydra.launcher.mem_gb=-1; valid: an integer >= 1 or null"),
    (["hydra/launcher=batched_slurm", "hydra.launcher.cpus_per_task=0", "seed=0,1"],
     "hydra.launcher.cpus_per_task=0; valid: an integer >= 1 or null"),
    (["hydra/launcher=slurm", "hydra.launcher.timeout_min=-1", "seed=0,1"],
     "hydra.launcher.timeout_min=-1; valid: an integer >= 0 (0: no time limit)"),
    (["hydra/launcher=batched_slurm", "hydra.launcher.array_parallelism=0", "seed=0,1"],
     "hydra.launcher.array_parallelism=0; valid: an integer >= 1"),
    (["hydra/launcher=local", "hydra.launcher.timeout_min=-1", "seed=0,1"],
     "hydra.launcher.timeout_min=-1; valid: an integer >= 1"),
    (["hydra/launcher=local", "hydra.launcher.timeout_min=0", "seed=0,1"],
     "hydra.launcher.timeout_min=0; valid: an integer >= 1"),
    (["hydra/launcher=batched_local", "hydra.launcher.mem_gb=-1", "seed=0,1"],
     "hydra.launcher.mem_gb=-1; valid: an integer >= 1 or null"),
    (["hydra/launcher=local", "hydra.launcher.gpus_per_node=-1", "seed=0,1"],
     "hydra.launcher.gpus_per_node=-1; valid: an integer >= 0 or null"),
    # two tasks of one job trained its folder twice at once (the sweep ended in a traceback)
    (["hydra/launcher=slurm", "hydra.launcher.tasks_per_node=2", "seed=0,1"],
     "hydra.launcher.tasks_per_node=2; valid: 1 (an initlab job is one process: more would train the same job folder "
     "several times at once)"),
    (["hydra/launcher=batched_slurm", "hydra.launcher.nodes=2", "seed=0,1"],
     "hydra.launcher.nodes=2; valid: 1 (an initlab job is one process: more would train the same job folder several "
     "times at once)"),
    # the preset's 120 s signal with a 1-minute limit: every task signalled as it started
    (["hydra/launcher=slurm", "hydra.launcher.timeout_min=1", "seed=0,1"],
     "hydra.launcher.signal_delay_s=120 is not shorter than timeout_min=1 (60 s): SLURM would signal every task as it "
     "starts; valid: signal_delay_s < 60 x timeout_min"),
])
def test_sweep_base_config_errors_are_one_line(args, line):
    argv = args if args[0].startswith("-") else ["-m", *args]
    assert check_command_line(argv, CONF) == line


@pytest.mark.parametrize("launcher", ["slurm", "batched_slurm"])
def test_slurm_without_sbatch_is_refused_before_the_sweep(launcher, monkeypatch, tmp_path):
    """Where no sbatch is on PATH, submitit failed once the sweep folder existed; now one line."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert check_command_line(["-m", f"hydra/launcher={launcher}", "seed=0,1"], CONF) == (
        "hydra/launcher=slurm submits with SLURM's sbatch, which is not on PATH here; valid: run the sweep on a "
        "machine of the cluster, or hydra/launcher=local to try it on this one")
    assert check_command_line(["-m", "hydra/launcher=local", "seed=0,1"], CONF) is None


@pytest.mark.parametrize("stderr, reason", [
    # sbatch 23's words, as it printed them for the settings named
    ("sbatch: unrecognized option '--foo=bar'\nTry \"sbatch --help\" for more information\n",
     "unrecognized option '--foo=bar'"),  # additional_parameters={foo: bar}: the reason is not the last line
    ("allocation failure: Invalid partition name specified\n", "Invalid partition name specified"),
    ("sbatch: error: Invalid --mem specification\n", "Invalid --mem specification"),
    ("", ""),
])
def test_sbatchs_reason_is_the_line_that_gives_it(stderr, reason):
    from initlab.queue_check import sbatch_reason

    assert sbatch_reason(stderr) == reason


def test_a_workers_count_from_the_environment_is_checked_too(monkeypatch):
    monkeypatch.setenv("INITLAB_N_JOBS", "abc")
    assert check_command_line(["-m", "hydra/launcher=parallel", "seed=0,1"], CONF) == (
        "hydra.launcher.n_jobs=${oc.env:INITLAB_N_JOBS,-1}: While dereferencing interpolation "
        "'${oc.env:INITLAB_N_JOBS,-1}': Value 'abc' of type 'str' could not be converted to Integer; " + N_JOBS)
    monkeypatch.setenv("INITLAB_N_JOBS", "2")
    assert check_command_line(["-m", "hydra/launcher=parallel", "seed=0,1"], CONF) is None


@pytest.mark.parametrize("args", [
    ["init=lecun_normal", "init.name=he_normal"],        # the reported case: he_normal's code, lecun's fields
    ["-m", "init.name=he_normal,xavier_normal"],
    ["activation.name=tanh"], ["++model.name=cnn"], ["dataset.name=moons"], ["optimizer.name=sgd"],
])
def test_a_choices_name_is_not_overridden(args):
    """Of the kind "one choice's fields with another choice's code": the name comes from the file."""
    key = next(a for a in args if ".name=" in a).lstrip("+~")
    group, value = key.split(".name=")
    assert check_command_line(args, CONF) == f"{group}.name is set by the {group} choice, not overridden: use {group}={value}"


@pytest.mark.parametrize("args,bad", [
    (["activation=null"], "activation=null"), (["~activation"], "~activation"),
    (["activation=[tanh,relu]"], "activation=[tanh,relu]"), (["init=[he_normal,orthogonal]", "epochs=1"], "init=[he_normal,orthogonal]"),
    (["-m", "init=null", "seed=0,1"], "init=null"), (["activation.name=null"], None)])
def test_a_config_group_takes_one_choice(args, bad):
    """null, a list (Hydra would merge the choices, the last winning), a removal: one line naming the
    group's choices (were a traceback, a silent run of the last choice, a line cut at a colon)."""
    group = (bad or args[0]).strip("~").split("=")[0].split(".")[0]
    line = check_command_line(args, CONF)
    assert line is not None and line.endswith("valid: " + ", ".join(group_choices(group))), line
    if bad:
        assert line.startswith(f"{bad}: the {group} group takes one choice; valid: "), line
    optional = check_command_line(["~experiment"], CONF)  # none by default: ~ has nothing to remove
    assert optional.startswith("~experiment: the experiment group is optional and left out unless added: drop "
                               "~experiment, or add one with +experiment=NAME; valid: deep_plain, "), optional
    launcher = check_command_line(["hydra/launcher=null"], CONF)
    assert launcher.startswith("hydra/launcher=null: the hydra/launcher group takes one choice; valid: basic, batched,")


@pytest.mark.parametrize("args", [
    ["+experiment=grid_quick", "depth=1,2"],
    ["+experiment=sigmoid_long", "init=normal,trunc_normal", "init.std=choice(0.01)"],
    ["init=orthogonal,xavier_normal", "++init.gain=2"],
    ["depth=0,1"],  # a bad job: left to the sweep callback, which names the job
    ["init=he_normal,nope"],
])
def test_sweeps_whose_base_config_composes_pass_the_pre_check(args):
    assert check_command_line(["-m", *args], CONF) is None


@pytest.mark.parametrize("group", GROUPS)
def test_unknown_choice_lists_the_valid_ones(group):
    assert check_single_run([f"{group}=nosuch"], CONF) == \
        f"unknown {group} 'nosuch'; valid: {', '.join(group_choices(group))}"


def test_valid_command_lines_pass_and_flags_are_left_to_hydra():
    assert check_single_run(["init=orthogonal", "init.gain=1.5", "hydra.run.dir=/tmp/x"], CONF) is None
    assert check_single_run(["resume=False", "optimizer.nesterov='true'", "optimizer.momentum=0.9"], CONF) is None
    assert check_single_run(["-m", "depth=0,1"], CONF) is None  # sweeps: validated by the sweep callback
    assert check_single_run(["--cfg", "job", "init.factr=1"], CONF) is None
    assert check_command_line(["-m", "--cfg", "job", "foo=1"], CONF) is None
    assert check_command_line(["init.factr=1"], CONF) == check_single_run(["init.factr=1"], CONF)


# --- accepted values run -------------------------------------------------------------------------
TINY = {"epochs": "1", "depth": "1", "model.width": "4", "threads": "1", "probe_size": "16", "batch_size": "64",
        "dataset.n_train": "60", "dataset.n_test": "30", "dataset.n_features": "3", "dataset.download": "false"}
RUNNABLE = [f for f in FIELDS if f[1] not in ("threads",)]  # threads is process-wide: set to 1 for every run


@pytest.mark.slow
@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_accepted_values_run_without_a_traceback(tmp_path_factory, data):
    """Small and boundary values of any field: refused in one line, or a tiny job that completes."""
    base, key, rng, kind = data.draw(st.sampled_from(RUNNABLE), label="field")
    small_floats = st.one_of(st.sampled_from([math.nan, math.inf, 0.0, 1.0 - 1e-9]), st.floats(-3, 3))
    value = data.draw({"float": small_floats, "int": st.integers(-2, 40), "float list": st.lists(small_floats, max_size=3),
                       "int list": st.lists(st.integers(-2, 40), max_size=3)}[kind], label="value")
    job = tmp_path_factory.mktemp("job")
    overrides = dict(TINY, **{"dataset.root": str(job / "no_data")})
    overrides[key] = render(value)
    composed = base_config(base)
    args = [*base, *(f"{k}={v}" for k, v in overrides.items() if OmegaConf.select(composed, k) is not None
                     or k == key)]
    message = check_single_run(args, CONF)
    if message is not None:
        assert "\n" not in message
        return
    cfg = compose_config(*args)
    try:
        result = run_job(cfg, job)
    except ConfigError as err:  # limits that need the data (split sizes, missing files): before training
        assert "\n" not in str(err)
        assert not (job / "epochs.csv").exists()
        return
    assert result["status"] in ("completed", "diverged")
    assert [r["epoch"] for r in read_csv(job / "epochs.csv")][0] == "0"


def test_data_limits_are_checked_before_any_model_is_built(tmp_path):
    """A config that is valid on its own but not for its data: refused after loading, nothing written."""
    cfg = compose_config("dataset.val_size=1430", "epochs=1", "threads=1")
    with pytest.raises(ConfigError, match=r"^dataset.val_size must be in \[10, 1427\]"):
        run_job(cfg, tmp_path / "job")
    assert not (tmp_path / "job" / "epochs.csv").exists()
    exp = to_experiment(cfg)
    with pytest.raises(ConfigError):
        load_data(exp.dataset)


@pytest.mark.parametrize("overrides", [
    ["seed=4294967295", "dataset=moons", "dataset.seed=4294967295", "dataset.n_train=60", "dataset.n_test=30"],
    ["optimizer=rmsprop", "optimizer.alpha=0", "optimizer.momentum=0.999999"],
    ["dataset=circles", "dataset.factor=0", "dataset.noise=0", "dataset.n_train=60", "dataset.n_test=30"],
    ["init=trunc_normal", "init.mean=-0.2", "init.std=0.1", "init.a=0", "init.b=0.3", "model.bias_init=normal",
     "model.bias_std=1e-9"],
], ids=["largest seeds", "rmsprop alpha 0", "circles factor 0", "trunc_normal mean 2 std below a"])
def test_values_at_the_edges_of_their_ranges_run(tmp_path, overrides):
    """Accepted boundary values reach scikit-learn, NumPy and torch without an error."""
    args = [*overrides, "epochs=1", "depth=1", "model.width=4", "threads=1", "probe_size=16"]
    assert check_single_run(args, CONF) is None
    result = run_job(compose_config(*args), tmp_path)
    assert result["status"] == "completed"
    assert [r["epoch"] for r in read_csv(tmp_path / "epochs.csv")] == ["0", "1"]


def test_a_stub_run_folder_is_removed_and_a_real_one_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "runs" / "other").mkdir(parents=True)
    stub = tmp_path / "outputs" / "runs" / "stub"
    (stub / ".hydra").mkdir(parents=True)
    (stub / ".hydra" / "config.yaml").write_text("depth: 0\n")
    (stub / "train.log").write_text("")
    assert remove_stub_run_dir(stub, "train.log")
    assert sorted(p.name for p in (tmp_path / "outputs" / "runs").iterdir()) == ["other"]  # not empty: kept
    lone = tmp_path / "outputs" / "runs" / "other" / "run"
    (lone / ".hydra").mkdir(parents=True)
    assert remove_stub_run_dir(lone, "train.log")
    assert list(tmp_path.iterdir()) == [], "empty folders made for the run go too, up to the working directory"
    real = tmp_path / "real"
    (real / ".hydra").mkdir(parents=True)
    (real / "checkpoint.pt").write_bytes(b"x")
    assert not remove_stub_run_dir(real, "train.log") and (real / "checkpoint.pt").is_file()


def test_a_run_or_sweep_folder_that_cannot_be_created_is_refused_in_one_line(tmp_path):
    """Hydra's own FileNotFoundError traceback came after the checks; nothing is left behind."""
    (tmp_path / "a_file").write_text("")
    bad = tmp_path / "a_file" / "run"
    assert check_command_line([f"hydra.run.dir={bad}"], CONF) == (
        f"hydra.run.dir={bad}: cannot create it here ({tmp_path / 'a_file'} is a file); valid: a folder this user "
        "can write")
    assert check_command_line(["-m", "seed=0,1", f"hydra.sweep.dir={bad}"], CONF).startswith(
        f"hydra.sweep.dir={bad}: cannot create it here")
    if Path("/proc/self").is_dir():  # a pseudo file system: mkdir fails even for root
        assert check_command_line(["hydra.run.dir=/proc/nope"], CONF) == (
            "hydra.run.dir=/proc/nope: cannot create it here (No such file or directory); valid: a folder this user "
            "can write")
    assert check_command_line([f"hydra.run.dir={tmp_path / 'new' / 'run'}"], CONF) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    # a folder reading a key no config has (was Hydra's traceback); one only the job resolves passes
    assert check_command_line(["hydra.run.dir=${nope}/x"], CONF) == (
        "hydra.run.dir=${nope}/x: Interpolation key 'nope' not found")
    assert check_command_line(["-m", "seed=0,1", "hydra.sweep.dir=${nope}/x"], CONF) == (
        "hydra.sweep.dir=${nope}/x: Interpolation key 'nope' not found")
    assert check_command_line([f"hydra.run.dir={tmp_path}/${{hydra.job.id}}"], CONF) is None
    # an empty folder is the working directory: the run wrote its records there
    assert check_command_line(["hydra.run.dir=''"], CONF) == (
        "hydra.run.dir='': an empty folder would be the working directory; valid: a folder path")
    assert check_command_line(["-m", "seed=0,1", "hydra.sweep.dir=''"], CONF) == (
        "hydra.sweep.dir='': an empty folder would be the working directory; valid: a folder path")


def test_more_threads_than_cores_are_refused_in_the_job_and_before_a_sweep(tmp_path):
    """threads=4096 on 2 cores was accepted: an epoch took 17 s instead of 0.01 s. The cores are
    the job's machine's (a SLURM node's own), so the job checks them, and a sweep whose jobs run
    here checks them before its first job."""
    import os

    from hydra import initialize_config_dir

    from conftest import run_train
    from initlab.sweeps import validate_jobs
    from test_sweeps import _compose_multirun

    cores = len(os.sched_getaffinity(0))
    line = (f"threads={cores + 1} exceeds the {cores} core(s) this process may run on; valid: 1 to {cores}, or "
            f"null (the job's share of them)")
    done = run_train(f"threads={cores + 1}", "epochs=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [f"error: {line}"]
    assert not (tmp_path / "run").exists()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _compose_multirun("epochs=0")
        with pytest.raises(ConfigError) as err:
            validate_jobs(cfg, [["threads=1"], [f"threads={cores + 1}"]])
        assert str(err.value) == f"job threads={cores + 1}: {line}"
        validate_jobs(cfg, [[f"threads={cores}"]])
