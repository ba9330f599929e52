"""Run configuration (aver_fast/config.py): presets, TOML and overrides, the configured model."""
import dataclasses

import pytest

from aver_fast.config import PRESETS, TrainConfig, load_config
from aver_fast.models import MODELS, AVERConfig


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
