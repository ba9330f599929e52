"""Run configuration (aver_fast/training/config.py): presets, TOML and overrides, the configured model."""
import dataclasses

import pytest

from aver_fast.models import MODELS, AVERConfig
from aver_fast.training import PRESETS, TrainConfig, load_config


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_derives_the_model_inputs_from_its_alignment(name):
    preset = PRESETS[name]
    model, align = preset.model_config(), preset.alignment()
    assert (model.seq_len, model.frames_per_clip, model.image_size, model.n_mels, model.audio_frames) == \
        (align.steps, align.frames_per_subseq, align.image_size, align.n_mels, align.audio_frames)
    # the presets of models/ agree: a checkpoint's recorded architecture stays what the preset builds
    assert dataclasses.asdict(model) == dataclasses.asdict(getattr(AVERConfig, name)())
    cfg = TrainConfig(preset=name, use_lstm=False)
    assert cfg.model_config().use_lstm is False and cfg.alignment(7).window_stride == 7
    assert cfg.alignment().window_stride == align.window


def test_choices_come_from_the_registries():
    with pytest.raises(ValueError, match="preset must be one of"):
        TrainConfig(preset="huge")
    for fusion in MODELS:
        assert TrainConfig(fusion=fusion).arch()[0] == fusion


def test_config_file_overrides_and_unknown_keys(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('fusion = "jca"\nepochs = 7\nlr = 0.001\n')
    c = load_config(str(toml), ["epochs=3", "use_lstm=false"])
    assert (c.fusion, c.epochs, c.lr, c.use_lstm) == ("jca", 3, 0.001, False)
    toml.write_text("nonsense = 1\n")
    with pytest.raises(ValueError, match="unknown config keys \\['nonsense'\\]"):
        load_config(str(toml))
    with pytest.raises(ValueError, match="bad override"):
        load_config(None, ["epochs"])
    with pytest.raises(ValueError, match="fusion must be"):
        load_config(None, ["fusion=transformer"])


@pytest.mark.parametrize("toml, message", [
    ('use_tcn = "false"', r"use_tcn takes true or false, got 'false' \(str\)"),
    ('epochs = "1"', r"epochs takes an integer, got '1' \(str\)"),
    ("epochs = 1.9", r"epochs takes an integer, got 1.9 \(float\)"),
    ('lr = "fast"', r"lr takes a finite number, got 'fast'"),
    ("lr = nan", r"lr takes a finite number, got nan"),
    ("batch_size = true", r"batch_size takes an integer, got True \(bool\)"),
    ("data = 3", r"data takes a string, got 3 \(int\)"),
    ("max_batches = -1", r"max_batches must be >= 0, got -1"),
    ("lr_decay_every = 0", r"lr_decay_every must be >= 1, got 0"),
    ("lr = -1e-4", r"lr must be >= 0"),
    ("num_workers = -2", r"num_workers must be >= 0"),
    ('device = "bogus"', r"device must be 'auto' or a torch device"),
    ("epochs = [", r"not valid TOML"),
], ids=["bool-as-string", "int-as-string", "int-as-float", "float-as-word", "nan", "bool-as-int", "int-as-str",
        "negative-cap", "zero-period", "negative-lr", "workers", "device", "syntax"])
def test_every_setting_is_type_and_range_checked_before_any_work(tmp_path, toml, message):
    path = tmp_path / "run.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ValueError, match=message):
        load_config(str(path))


@pytest.mark.parametrize("override, message", [
    ("epochs=1.9", r"epochs takes an integer, got '1.9'"), ("lr=fast", r"lr takes a number, got 'fast'"),
    ("max_batches=-1", "max_batches must be >= 0"), ("lr_decay_every=0", "lr_decay_every must be >= 1"),
    ("use_tcn=no", "use_tcn takes true/false"),
])
def test_overrides_are_checked_alike(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])
    assert load_config(None, ["lr=1e-3", "use_tcn=0"]).use_tcn is False


def test_a_toml_float_for_a_float_setting_and_an_int_for_it_are_both_numbers(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("lr = 1\nweight_decay = 0\n")
    c = load_config(str(path))
    assert (c.lr, c.weight_decay) == (1.0, 0.0) and isinstance(c.lr, float)
