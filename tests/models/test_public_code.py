"""AVERConfig.public_code() against the public code's TLAB_CAM (asmoon002/AVER, models/orig_cam.py).

Nothing of the public code is in this project. The state dict is built here from the key names and shapes of the
public definition, and ``tlab_cam`` below is an independent, functional statement of what that definition computes
(LSTM cells written out, convolutions as padded conv1d), used as the oracle. The same comparison against the
public modules themselves (outside the project) agreed to 6e-16 in float64.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from aver_fast import AVER, AVERConfig, model_summary
from aver_fast.models import PublicKeys, load_public_state_dict

D, L, R, HID, RNN = 512, 16, 49, 128, 256  # feature size, steps, regions, regressor width, LSTM units per direction


def _lstm_shapes(prefix: str, in_dim: int, out_dim: int) -> dict:
    """The public code's residual BiLSTM layer (models/layer.py) with 2 layers of RNN units per direction."""
    s = {prefix + "init_hidden": (8, RNN), prefix + "linear.weight": (out_dim, in_dim + 2 * RNN),
         prefix + "linear.bias": (out_dim,)}
    for layer, width in ((0, in_dim), (1, 2 * RNN)):
        for sfx in ("", "_reverse"):
            s |= {f"{prefix}rnn.weight_ih_l{layer}{sfx}": (4 * RNN, width),
                  f"{prefix}rnn.weight_hh_l{layer}{sfx}": (4 * RNN, RNN),
                  f"{prefix}rnn.bias_ih_l{layer}{sfx}": (4 * RNN,), f"{prefix}rnn.bias_hh_l{layer}{sfx}": (4 * RNN,)}
    return s


def public_shapes() -> dict:
    s = {}
    for m in ("audio", "video"):
        p = f"{m}_tlab."
        s |= _lstm_shapes(p + "lstm.", D, D)
        for i in (0, 1):
            for conv in ("conv1", "conv2"):
                s |= {f"{p}tcn.network.{i}.{conv}.weight": (D, D, 3), f"{p}tcn.network.{i}.{conv}.bias": (D,)}
        for fc in ("query_fc", "key_fc", "value_fc", "out_fc"):
            s |= {f"{p}{fc}.weight": (D, D), f"{p}{fc}.bias": (D,)}
        s |= {p + "layer_norm.weight": (D,), p + "layer_norm.bias": (D,)}
    a = "avga.attn."
    s |= {a + "affine_audio.weight": (D, D), a + "affine_audio.bias": (D,), a + "affine_video.weight": (D, D),
          a + "affine_video.bias": (D,), a + "affine_v.weight": (R, D), a + "affine_g.weight": (R, D),
          a + "affine_h.weight": (1, R), a + "affine_feat.weight": (D, D), a + "affine_feat.bias": (D,)}
    for i in (0, 1):
        c = f"coattn.dcn_layers.{i}."
        s |= {c + "dense_coattn.query_linear.weight": (2 * D, 2 * D), c + "dense_coattn.query_linear.bias": (2 * D,)}
        for k in ("key1_linear", "key2_linear"):
            s |= {f"{c}dense_coattn.{k}.weight": (L, L), f"{c}dense_coattn.{k}.bias": (L,)}
        for k in ("value1_linear", "value2_linear"):
            s |= {f"{c}dense_coattn.{k}.weight": (D, D), f"{c}dense_coattn.{k}.bias": (D,)}
        for j in (0, 1):
            s |= {f"{c}linears.{j}.0.weight": (D, 2 * D), f"{c}linears.{j}.0.bias": (D,)}
    s |= _lstm_shapes("Joint.", 2 * D, D)
    for head in ("vregressor", "aregressor"):
        s |= {f"{head}.0.weight": (HID, D), f"{head}.0.bias": (HID,), f"{head}.3.weight": (1, HID),
              f"{head}.3.bias": (1,)}
    return s


def public_state_dict(seed: int = 0, dtype=torch.float64) -> dict:
    """Random weights under the public names, with the second names TLAB_CAM's state dict also holds for each TCN
    convolution (net.0 = conv1, net.4 = conv2)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in public_shapes().items():
        fan = shape[-1] if len(shape) > 1 else 1
        sd[k] = torch.randn(shape, generator=g, dtype=dtype) / math.sqrt(fan)
        if k.endswith("layer_norm.weight"):
            sd[k] += 1
    for k in [k for k in sd if ".tcn.network." in k]:
        sd[k.replace(".conv1.", ".net.0.").replace(".conv2.", ".net.4.")] = sd[k]
    return sd


# ---- the oracle: what TLAB_CAM computes, written out ----

def _lstm_dir(x, w_ih, w_hh, b, h, c, reverse):
    steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    out = [None] * x.shape[1]
    for t in steps:
        i, f, g, o = (x[:, t] @ w_ih.T + h @ w_hh.T + b).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        out[t] = h
    return torch.stack(out, dim=1)


def _residual_lstm(sd, p, x):
    """2-layer BiLSTM from the learned initial state (rows: h of l0, l0 reverse, l1, l1 reverse, then c), input
    concatenated, projected, L2-normalised."""
    init, h = sd[p + "init_hidden"], x
    for layer in (0, 1):
        outs = []
        for d, sfx in enumerate(("", "_reverse")):
            r = 2 * layer + d
            h0, c0 = init[r].expand(x.shape[0], -1), init[4 + r].expand(x.shape[0], -1)
            b = sd[f"{p}rnn.bias_ih_l{layer}{sfx}"] + sd[f"{p}rnn.bias_hh_l{layer}{sfx}"]
            outs.append(_lstm_dir(h, sd[f"{p}rnn.weight_ih_l{layer}{sfx}"], sd[f"{p}rnn.weight_hh_l{layer}{sfx}"], b,
                                  h0, c0, reverse=d == 1))
        h = torch.cat(outs, dim=-1)
    return F.normalize(F.linear(torch.cat([x, h], -1), sd[p + "linear.weight"], sd[p + "linear.bias"]), dim=-1)


def _lin(sd, p, x):
    return F.linear(x, sd[p + ".weight"], sd.get(p + ".bias"))


def _tlab(sd, p, x):
    lstm = _residual_lstm(sd, p + "lstm.", x)
    t = x.transpose(1, 2)
    for i, dil in ((0, 1), (1, 2)):
        n = f"{p}tcn.network.{i}."
        y = t
        for conv in ("conv1", "conv2"):
            y = torch.relu(F.conv1d(F.pad(y, (2 * dil, 0)), sd[n + conv + ".weight"], sd[n + conv + ".bias"],
                                    dilation=dil))
        t = torch.relu(y + t)
    t = t.transpose(1, 2)
    b, steps, _ = x.shape

    def heads(z):
        return z.view(b, steps, 2, D // 2).transpose(1, 2)
    q = heads(_lin(sd, p + "query_fc", lstm))
    k, v = heads(_lin(sd, p + "key_fc", t)), heads(_lin(sd, p + "value_fc", t))
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // 2), dim=-1) @ v
    att = _lin(sd, p + "out_fc", att.transpose(1, 2).reshape(b, steps, D))
    return F.layer_norm(lstm + att, (D,), sd[p + "layer_norm.weight"], sd[p + "layer_norm.bias"])


def _avga(sd, video, audio):
    a = "avga.attn."
    regions = video.reshape(-1, R, D)  # consecutive 512-value chunks of the flattened map
    vv = torch.relu(_lin(sd, a + "affine_video", regions))
    g = _lin(sd, a + "affine_g", torch.relu(_lin(sd, a + "affine_audio", audio.reshape(-1, D))))  # (N, 49)
    z = _lin(sd, a + "affine_h", torch.tanh(_lin(sd, a + "affine_v", vv) + g[:, :, None]))[..., 0]  # g per region
    pooled = (torch.softmax(z, dim=-1)[:, :, None] * regions).sum(1)
    return _lin(sd, a + "affine_feat", pooled).view(video.shape[0], video.shape[1], D)


def _dcn(sd, i, v, a):
    c = f"coattn.dcn_layers.{i}."
    q = _lin(sd, c + "dense_coattn.query_linear", torch.cat([v, a], -1))
    out = []
    for j, (m, n) in enumerate(((v, "1"), (a, "2"))):
        key = _lin(sd, f"{c}dense_coattn.key{n}_linear", m.transpose(1, 2))
        scores = torch.tanh(key @ q / math.sqrt(2 * D))
        w = torch.relu(torch.tanh(_lin(sd, f"{c}dense_coattn.value{n}_linear", m) @ scores))
        out.append(m + torch.relu(_lin(sd, f"{c}linears.{j}.0", w)))
    return out


def tlab_cam(sd, audio, video):
    """TLAB_CAM(audio (B, L, 512), video (B, L, 25088)) in eval mode -> (valence, arousal), each (B, L)."""
    video, audio = F.normalize(video, dim=-1), F.normalize(audio, dim=-1)
    audio = _tlab(sd, "audio_tlab.", audio)
    video = _tlab(sd, "video_tlab.", _avga(sd, video, audio))
    for i in (0, 1):
        video, audio = _dcn(sd, i, video, audio)
    h = _residual_lstm(sd, "Joint.", torch.cat([video, audio], -1))

    def head(p):
        return _lin(sd, p + ".3", torch.relu(_lin(sd, p + ".0", h)))[..., 0]
    return head("vregressor"), head("aregressor")


# ---- the tests ----

@pytest.fixture(scope="module")
def public_model():
    sd = public_state_dict()
    model = AVER(AVERConfig.public_code()).double().eval()
    assert load_public_state_dict(model, sd) == PublicKeys([], [])
    return model, sd


def test_the_key_list_is_the_public_definitions_parameters():
    assert sum(math.prod(s) for s in public_shapes().values()) == 26_971_763


@pytest.mark.parametrize("batch", [1, 3])
def test_forward_equals_tlab_cam_in_float64(public_model, batch):
    model, sd = public_model
    g = torch.Generator().manual_seed(batch)
    audio = torch.randn(batch, L, D, generator=g, dtype=torch.float64)
    video = torch.randn(batch, L, R * D, generator=g, dtype=torch.float64).relu()  # a ReLU map, like R(2+1)D's
    valence, arousal = tlab_cam(sd, audio, video)
    with torch.no_grad():
        ours = model.forward_features(video.view(batch, L, R, D), audio)
    expected = torch.stack([valence, arousal], dim=-1)
    assert expected.abs().max() > 0.05, "the oracle's output is not trivially small"
    assert (ours - expected).abs().max().item() <= 1e-10


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 5e-6), (torch.bfloat16, 0.02)], ids=["float32", "bfloat16"])
def test_forward_in_lower_precision_agrees(public_model, dtype, tol):
    """The float32 and bfloat16 model against the float64 oracle: rounding only."""
    model64, sd = public_model
    model = AVER(AVERConfig.public_code()).eval()
    model.load_state_dict(model64.state_dict())
    model.to(dtype)
    audio, video = torch.randn(2, L, D, dtype=torch.float64), torch.randn(2, L, R * D, dtype=torch.float64).relu()
    expected = torch.stack(tlab_cam(sd, audio, video), dim=-1)
    with torch.no_grad():
        ours = model.forward_features(video.view(2, L, R, D).to(dtype), audio.to(dtype)).double()
    assert (ours - expected).abs().max().item() <= tol * max(1.0, expected.abs().max().item())


def test_parameter_count_per_part():
    s = model_summary(AVER(AVERConfig.public_code()))
    assert s.fusion_trainable == 26_971_763
    fusion = {name: t for name, (t, _) in s.parts.items() if name not in ("video_backbone", "audio_backbone")}
    assert fusion == {"avga": 838_193, "tlab_audio": 7_880_192, "tlab_video": 7_880_192, "jca": 5_250_112,
                      "blstm": 4_991_488, "head": 2 * 65_793}


def test_model_builds_the_public_map_from_the_backbone():
    """model(video, audio): the R(2+1)D map of each clip (C, T', 7, 7) flattened channel-major and cut in
    consecutive C-value chunks, as the public code feeds TLAB_CAM (here with a narrow backbone, C = 16)."""
    torch.manual_seed(0)
    cfg = AVERConfig.public_code(seq_len=3, video_widths=(8, 8, 8, 16), video_blocks=(1, 1, 1, 1),
                                 audio_widths=(8, 8, 8, 16), audio_blocks=(1, 1, 1, 1), avga_hidden=16,
                                 blstm_hidden=8, head_hidden=8)
    model = AVER(cfg).eval()
    video = torch.randn(2, 3, 3, 8, 112, 112)
    audio = torch.randn(2, 3, 1, 64, 104)
    with torch.no_grad():
        fmap = model.video_backbone.forward_map(video.flatten(0, 1))
        assert fmap.shape == (6, 16, 1, 7, 7)
        regions = fmap.flatten(1).view(2, 3, 49, 16)
        a = model.audio_backbone(audio.flatten(0, 1)).view(2, 3, 16)
        torch.testing.assert_close(model(video, audio), model.forward_features(regions, a), rtol=0, atol=0)
        spatial = AVER(cfg.replace(region_layout="spatial")).eval()
        spatial.load_state_dict(model.state_dict())
        assert not torch.allclose(spatial(video, audio), model(video, audio))


def test_missing_unexpected_and_misshapen_keys_are_named(public_model):
    _, sd = public_model
    model = AVER(AVERConfig.public_code())
    broken = dict(sd)
    del broken["Joint.init_hidden"]
    broken["Joint.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 missing key\(s\) \['Joint.init_hidden'\], 1 unexpected key\(s\) "
                                         r"\['Joint.extra'\]"):
        load_public_state_dict(model, broken)
    assert load_public_state_dict(model, broken, strict=False) == PublicKeys(["Joint.init_hidden"], ["Joint.extra"])
    with pytest.raises(ValueError, match=r"avga.attn.affine_h.weight has shape \(1, 48\) but the model's "
                                         r"avga.affine_h.weight is \(1, 49\)"):
        load_public_state_dict(model, sd | {"avga.attn.affine_h.weight": torch.zeros(1, 48)})
    with pytest.raises(ValueError, match="net.0.weight and .*conv1.weight name the same tensor"):
        load_public_state_dict(model, sd | {"audio_tlab.tcn.network.0.net.0.weight": torch.zeros(D, D, 3)})
    with pytest.raises(ValueError, match=r"not built like TLAB_CAM .* no counterpart, e.g. \[.head.fc1.bias."):
        load_public_state_dict(AVER(AVERConfig.tiny()), sd)
    with pytest.raises(ValueError, match="'Joint.linear.weight' is a list"):
        load_public_state_dict(model, sd | {"Joint.linear.weight": [1.0]})


def test_data_parallel_prefix_and_float32_checkpoint_load(public_model):
    model64, sd = public_model
    model = AVER(AVERConfig.public_code()).double()
    load_public_state_dict(model, {"module." + k: v.float() for k, v in sd.items()})
    for k, v in model.state_dict().items():
        if not k.startswith(("video_backbone", "audio_backbone")):
            torch.testing.assert_close(v, model64.state_dict()[k].float().double(), rtol=0, atol=0)


def test_public_init_is_xavier_with_zero_biases():
    torch.manual_seed(0)
    m = AVER(AVERConfig.public_code())
    w = m.tlab_audio.w_q.weight
    bound = math.sqrt(6 / (w.shape[0] + w.shape[1]))
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert all(mod.bias.abs().sum() == 0 for mod in m.jca.modules() if isinstance(mod, torch.nn.Linear))
    assert m.tlab_audio.tcn.blocks[0].conv1.bias.abs().sum() == 0
    paper = AVER(AVERConfig.paper())
    assert paper.tlab_audio.w_q.bias.abs().sum() > 0, "the paper preset keeps PyTorch's default init"


def test_public_dropouts_are_where_the_public_code_has_them():
    m = AVER(AVERConfig.public_code())
    t = m.tlab_audio
    assert (t.lstm.rnn.dropout, t.lstm.project_dropout.p, t.attention_dropout, t.dropout.p) == (0.4, 0.4, 0.1, 0.0)
    assert t.tcn.blocks[0].dropout.p == 0.2
    assert m.jca.layers[0].dropout.p == 0.4
    assert (m.blstm.rnn.dropout, m.blstm.project_dropout.p) == (0.2, 0.2)
    assert m.head.valence[2].p == m.head.arousal[2].p == 0.6
    paper = AVER(AVERConfig.paper())
    assert (paper.tlab_audio.dropout.p, paper.jca.layers[0].dropout.p, paper.head.dropout.p) == (0.2, 0.2, 0.2)
