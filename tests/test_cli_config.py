"""The options of ``geolab pretrain``, ``probe`` and ``knn`` are derived from the config dataclasses
(geolab.argtypes.add_dataclass_arguments): every field is settable, each value lands in its field,
and the options that existed before the derivation keep their names, defaults and error messages."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from geolab import cli
from geolab.argtypes import add_dataclass_arguments, dataclass_from_args
from geolab.config import DenseConfig, PretrainConfig, ProbeConfig, add_pretrain_arguments, config_from_args

REPO = Path(__file__).resolve().parents[1]
REQUIRED = ["--method", "moco", "--manifest", "m.parquet", "--out", "runs/x"]

#: The options ``geolab pretrain`` had when they were written by hand, with their defaults
#: (None: required, or a flag). They keep their names and defaults.
HAND_WRITTEN = {
    "--method": None, "--manifest": None, "--out": None, "--arch": "resnet50", "--image-size": 224, "--epochs": 200,
    "--batch-size": 256, "--lr": 0.03, "--weight-decay": 1e-4, "--no-cosine": None, "--temperature": 0.2,
    "--queue-size": 65536, "--ema-momentum": 0.999, "--geo-k": 100, "--alpha": 1.0, "--beta": 1.0,
    "--strategy": None, "--seed": 0, "--num-workers": 4, "--device": "auto", "--bn-splits": 0, "--amp": None,
    "--no-amp": None, "--channels-last": None, "--no-channels-last": None, "--compile": None, "--knn-every": 10,
    "--log-every": 10, "--max-steps-per-epoch": None, "--dist-timeout": 1800.0, "--crop-min-scale": 0.2,
    "--jitter-strength": 1.0, "--preload": None, "--resume": None, "--no-progress": None,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="geolab pretrain")
    add_pretrain_arguments(p)
    return p


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


def _other_value(action: argparse.Action, default: object) -> tuple[list[str], object]:
    """Command-line words that set ``action`` to a value other than ``default``, and that value."""
    flag = action.option_strings[0]
    if action.nargs == 0:  # store_true / store_false
        return [flag], action.const
    if action.choices is not None:
        value = next(c for c in action.choices if c != default)
        return [flag, value], value
    if action.type is Path:
        return [flag, "elsewhere/x"], Path("elsewhere/x")
    if action.type is None:  # text
        return [flag, "other"], "other"
    number = 3 if default is None else default + 1 if isinstance(default, int) else default / 2 + 0.25
    return [flag, str(number)], action.type(str(number))


def test_every_pretrain_config_field_has_an_option() -> None:
    dests = {a.dest for a in _options(_parser())}
    missing = [f.name for f in dataclasses.fields(PretrainConfig) if f.name not in dests]
    assert not missing, f"PretrainConfig fields without a `geolab pretrain` option: {missing}"


def test_hand_written_options_keep_their_names_and_defaults() -> None:
    actions = _parser()._option_string_actions
    for flag, default in HAND_WRITTEN.items():
        assert flag in actions, flag
        if default is not None:
            assert actions[flag].default == default, flag
    assert {f for f in HAND_WRITTEN if actions[f].required} == {"--method", "--manifest", "--out"}


@pytest.mark.parametrize("flag", [a.option_strings[0] for a in _options(_parser())])
def test_each_option_lands_in_its_field(flag: str) -> None:
    """Every option set alone to a non-default value: that value in its field, the rest defaults."""
    parser = _parser()
    action = parser._option_string_actions[flag]
    base = config_from_args(parser.parse_args(REQUIRED))
    words, value = _other_value(action, getattr(base, action.dest))
    if action.required:
        i = REQUIRED.index(flag)
        argv = REQUIRED[:i] + words + REQUIRED[i + 2:]
    else:
        argv = REQUIRED + words
    cfg = config_from_args(parser.parse_args(argv))
    assert getattr(cfg, action.dest) == value != getattr(base, action.dest)
    others = {k: v for k, v in cfg.to_dict().items() if k != action.dest}
    assert others == {k: v for k, v in base.to_dict().items() if k != action.dest}


def test_the_options_that_were_missing_round_trip() -> None:
    argv = REQUIRED + ["--momentum", "0.99", "--proj-dim", "64", "--knn-k", "5", "--knn-max-images", "100",
                       "--train-split", "trainval", "--val-split", "test", "--no-tensorboard", "--on-bad-image", "fail"]
    cfg = config_from_args(_parser().parse_args(argv))
    assert (cfg.momentum, cfg.proj_dim, cfg.knn_k, cfg.knn_max_images) == (0.99, 64, 5, 100)
    assert (cfg.train_split, cfg.val_split, cfg.tensorboard, cfg.on_bad_image) == ("trainval", "test", False, "fail")
    assert config_from_args(_parser().parse_args(REQUIRED + ["--dist-timeout", "5"])).dist_timeout_s == 5.0
    assert config_from_args(_parser().parse_args(REQUIRED + ["--no-amp"])).amp is False
    assert config_from_args(_parser().parse_args(REQUIRED)).amp is None


@pytest.mark.parametrize(("words", "message"), [
    (["--momentum", "abc"], r"argument --momentum: invalid float value: 'abc'"),
    (["--proj-dim", "0"], r"argument --proj-dim: 0 must be >= 1"),
    (["--knn-k", "two"], r"argument --knn-k: 'two' is not a whole number"),
    (["--on-bad-image", "maybe"], r"argument --on-bad-image: invalid choice: 'maybe' \(choose from 'skip', 'fail'\)"),
    (["--epochs", "0"], r"argument --epochs: 0 must be >= 1"),
    (["--temperature", "0"], r"argument --temperature: 0 must be a finite number > 0"),
    (["--dist-timeout", "soon"], r"argument --dist-timeout: invalid float value: 'soon'"),
    # issue 23: float("nan") and float("inf") are numbers to Python, not to a learning rate
    (["--lr", "nan"], r"argument --lr: nan must be a finite number$"),
    (["--alpha=-inf"], r"argument --alpha: -inf must be a finite number$"),
    (["--temperature", "NaN"], r"argument --temperature: NaN must be a finite number > 0"),
    (["--warmup-epochs", "nan"], r"argument --warmup-epochs: nan must be a finite number >= 0"),
])
def test_a_bad_value_is_one_clear_line(words: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(REQUIRED + words)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(message, err), err


def test_config_dataclasses_refuse_nan_and_infinity() -> None:
    """Issue 23: ``nan <= 0`` is False, so PretrainConfig(temperature=nan) (a notebook parameter,
    ``--set temperature=NaN``) passed the > 0 check and ended as "loss became nan". Every number
    field of the config dataclasses must be finite; the error names the field."""
    import math

    base = dict(method="moco", manifest="m.parquet", out="o")
    for name, value in (("temperature", math.nan), ("lr", math.inf), ("alpha", -math.inf), ("epochs", math.nan)):
        with pytest.raises(ValueError, match=rf"^PretrainConfig\.{name} must be a finite number, got {value}\.$"):
            PretrainConfig(**base, **{name: value})
    for name, value in (("C", math.nan), ("knn_temperature", math.inf)):
        with pytest.raises(ValueError, match=rf"^ProbeConfig\.{name} must be a finite number"):
            ProbeConfig(checkpoint="c", manifest="m", **{name: value})
    with pytest.raises(ValueError, match=r"ProbeConfig.C: -1.0 must be a finite number > 0"):
        ProbeConfig(checkpoint="c", manifest="m", C=-1.0)
    with pytest.raises(ValueError, match=r"^DenseConfig\.lr must be a finite number"):
        DenseConfig(lr=math.nan)
    assert PretrainConfig(**base, temperature=0.07).temperature == 0.07 and ProbeConfig("c", "m", C=0.1).C == 0.1


def test_configs_built_in_python_meet_their_options_rules() -> None:
    """Issue 23: a config built in Python (a notebook, the course runner's checks) is held to the
    rules its command-line options declare (argtypes.check_fields), so `max_steps_per_epoch=-5` or
    `device="tpu"` is refused when the config is made, as `--max-steps-per-epoch -5` is by argparse,
    not as an IndexError 30 s later; None still means "the default"."""
    base = dict(method="moco", manifest="m.parquet", out="o")
    for values, message in (
        ({"max_steps_per_epoch": -5}, "PretrainConfig.max_steps_per_epoch: -5 must be >= 1."),
        ({"device": "tpu"}, "PretrainConfig.device: invalid choice 'tpu'; choose one of auto, cpu, cuda."),
        ({"arch": "resnet999"}, "PretrainConfig.arch: invalid choice 'resnet999'; choose one of resnet18,"),
        ({"strategy": "sideways"}, "PretrainConfig.strategy: invalid choice 'sideways'"),
        ({"epochs": 0}, "PretrainConfig.epochs: 0 must be >= 1."),
        ({"epochs": True}, "PretrainConfig.epochs: 'True' is not a whole number."),
        ({"seed": -1}, "PretrainConfig.seed: -1 must be >= 0."),
    ):
        with pytest.raises(ValueError) as err:
            PretrainConfig(**base, **values)
        assert str(err.value).startswith(message), str(err.value)
    with pytest.raises(ValueError, match=r"^ProbeConfig.k: 0 must be >= 1\.$"):
        ProbeConfig("c", "m", k=0)
    assert PretrainConfig(**base, max_steps_per_epoch=None, strategy=None).max_steps_per_epoch is None


def test_probe_and_knn_options_come_from_probe_config() -> None:
    parser = cli.build_parser()
    common = ["--checkpoint", "c.pt", "--manifest", "m.parquet"]
    probe = parser.parse_args(["probe", *common, "--seed", "3", "--C", "0.5", "--backend", "torch"])
    cfg = dataclass_from_args(ProbeConfig, probe)
    assert (cfg.seed, cfg.C, cfg.backend, cfg.k, cfg.checkpoint) == (3, 0.5, "torch", 20, Path("c.pt"))
    knn = parser.parse_args(["knn", *common, "--k", "7", "--knn-temperature", "0.1", "--image-size", "32"])
    cfg = dataclass_from_args(ProbeConfig, knn)
    assert (cfg.k, cfg.knn_temperature, cfg.image_size, cfg.C, cfg.backend) == (7, 0.1, 32, None, "sklearn")
    probe_fields = {a.dest for a in _options(parser._subparsers._group_actions[0].choices["probe"])}
    knn_fields = {a.dest for a in _options(parser._subparsers._group_actions[0].choices["knn"])}
    assert {f.name for f in dataclasses.fields(ProbeConfig)} <= probe_fields | knn_fields
    assert "k" not in probe_fields and "C" not in knn_fields and {"json", "device"} <= probe_fields & knn_fields


def test_a_field_without_a_command_line_type_is_refused() -> None:
    with pytest.raises(TypeError, match="DenseConfig.class_names"):
        add_dataclass_arguments(argparse.ArgumentParser(), DenseConfig)
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, DenseConfig, exclude=("class_names",))
    assert dataclass_from_args(DenseConfig, p.parse_args(["--decoder", "fcn"])) == DenseConfig(decoder="fcn")


def test_the_cli_shows_user_errors_and_lets_bugs_keep_their_traceback(monkeypatch, capsys) -> None:
    """main() prints a UserError as one line with exit 2; any other exception (a ValueError too) is a bug in
    geolab and goes up with its traceback (issue 27)."""
    from geolab.errors import UserError

    def user_error(args):
        raise UserError("the manifest x.csv has no split column\nadd one")

    def bug(args):
        raise ValueError("an internal check failed")

    monkeypatch.setattr(cli, "_doctor", user_error)
    assert cli.main(["doctor"]) == 2
    assert capsys.readouterr().err == "geolab: error: the manifest x.csv has no split column; add one\n"
    monkeypatch.setattr(cli, "_doctor", bug)
    with pytest.raises(ValueError, match="an internal check failed"):
        cli.main(["doctor"])


def test_geolab_help_imports_neither_torch_nor_pandas() -> None:
    code = ("import sys; from geolab import cli; cli.build_parser().format_help(); "
            "print(sorted({'torch', 'pandas', 'papermill'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_each_pretrain_field_declares_its_role_and_the_checks_derive_from_it() -> None:
    """Issue 27: one declaration per field (its part; whether it changes the learned weights). The resume
    check and the notebooks' training settings are read off it (the experiment key: test_experiment_keys)."""
    from geolab.checkpoints import RESUME_MUST_MATCH
    from geolab.config import PRETRAIN_ROLES, training_settings

    assert list(PRETRAIN_ROLES) == [f.name for f in dataclasses.fields(PretrainConfig)]
    learns = {name for name, role in PRETRAIN_ROLES.items() if role.learns}
    assert set(RESUME_MUST_MATCH) == learns - {"manifest", "strategy", "epochs"}  # those three: their own rules
    assert "amp" in learns and not {"channels_last", "compile", "on_bad_image", "knn_k", "val_split"} & learns
    params = {"arch": "resnet18", "seed": 3, "method": "moco", "manifest": "m.csv", "seeds": [0], "temperature": 0.1,
              "In": [], "knn_every": 2}
    assert training_settings(params) == {"arch": "resnet18", "temperature": 0.1, "knn_every": 2}


def test_run_folder_spells_a_run_folders_layout_once(tmp_path) -> None:
    from geolab.paths import RUN_FILES, RunFolder, manifest_fingerprint

    run = RunFolder(tmp_path / "r")
    assert run.checkpoint == tmp_path / "r" / "checkpoints" / "last.pt" and run.metrics.name == "metrics.jsonl"
    assert RunFolder.of_checkpoint(run.checkpoint) == run and run.log == tmp_path / "r.log"
    assert RunFolder.of_records(run.records_file("02_x")).experiments == (tmp_path / "r" / "experiments").resolve()
    assert RUN_FILES == {"config.json", "metrics.jsonl", "checkpoints", "tensorboard", "result.json"}
    (tmp_path / "m.csv").write_text("abc")
    assert manifest_fingerprint(tmp_path / "m.csv").startswith(f"{(tmp_path / 'm.csv').resolve()}:3:")
    assert manifest_fingerprint(tmp_path / "nope.csv").endswith(":missing")
