"""`pytest benchmarks -k engines`: the candidates for `aver-fast quantize`'s engine, measured on the part that is ~99%
of a paper-size prediction on a CPU: R(2+1)D-18's feature map of 4 clips x 8 frames x 112² (random weights, seed
0), ms per clip. fp32: PyTorch eager (contiguous and channels-last-3d), OpenVINO, ONNX Runtime; int8 (post-training,
calibrated on 4 random batches): PyTorch's own (FX graph mode, x86 backend, on torchvision's r2plus1d_18 with the
same weights: PT2E moved out of torch to torchao), OpenVINO with NNCF (what quantize uses), ONNX Runtime's static
QDQ. Each row records its largest |difference| and lowest cosine similarity against PyTorch fp32, and the machine
(CPU, ISA caps)."""
import copy

import numpy as np
import pytest
import torch

from aver_fast.bench import machine
from aver_fast.models import AVER, AVERConfig

CLIPS = 4
ENGINES = ["pytorch-fp32", "pytorch-fp32-channels-last", "openvino-fp32", "onnxruntime-fp32", "pytorch-int8-fx",
           "openvino-int8", "onnxruntime-int8"]


class _Map(torch.nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone.forward_map(x)


@pytest.fixture(scope="module")
def backbone():
    cfg = AVERConfig.paper()
    torch.manual_seed(0)
    net = _Map(AVER(cfg).video_backbone).eval()
    shape = (CLIPS, 3, cfg.frames_per_clip, cfg.image_size, cfg.image_size)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g)
    calibration = [torch.randn(shape, generator=g) for _ in range(4)]
    with torch.no_grad():
        return net, x, calibration, net(x)


def _runner(engine, net, x, calibration, tmp_path):
    if engine == "pytorch-fp32":
        return net
    if engine == "pytorch-fp32-channels-last":
        cl = copy.deepcopy(net).to(memory_format=torch.channels_last_3d)
        return lambda t: cl(t.contiguous(memory_format=torch.channels_last_3d))
    if engine == "pytorch-int8-fx":
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torchvision = pytest.importorskip("torchvision")
        torch.backends.quantized.engine = "x86"
        # torchvision's r2plus1d_18 with these weights (the same keys): FX cannot trace our modules' shape checks
        tv = torchvision.models.video.r2plus1d_18()
        tv.load_state_dict(net.backbone.state_dict(), strict=False)
        layers = torch.nn.Sequential(tv.stem, tv.layer1, tv.layer2, tv.layer3, tv.layer4).eval()
        prepared = prepare_fx(layers, get_default_qconfig_mapping("x86"), (x,))
        for batch in calibration:
            prepared(batch)
        return convert_fx(prepared)
    if engine.startswith("openvino"):
        pytest.importorskip("openvino")
        from aver_fast.int8 import openvino as ov

        model = ov.convert(net.backbone, "forward_map", x[:1])
        if engine.endswith("int8"):
            model = ov.quantize(model, calibration)
        run = ov.compile_bytes(*ov.to_bytes(model))
        return lambda t: torch.from_numpy(np.array(run(t.numpy())))
    ort = pytest.importorskip("onnxruntime")
    path = str(tmp_path / "backbone.onnx")
    torch.onnx.export(net, (x,), path, input_names=["x"], output_names=["y"], dynamo=False)
    if engine.endswith("int8"):
        from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.batches = iter(calibration)

            def get_next(self):
                batch = next(self.batches, None)
                return None if batch is None else {"x": batch.numpy()}
        quantize_static(path, path + ".int8", Reader(), activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True)
        path += ".int8"
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda t: torch.from_numpy(session.run(None, {"x": t.numpy()})[0])


@pytest.mark.parametrize("engine", ENGINES)
def test_backbone_engines_ms_per_clip(benchmark, backbone, tmp_path, report_row, engine):
    net, x, calibration, reference = backbone
    run = _runner(engine, net, x, calibration, tmp_path)
    with torch.no_grad():
        out = run(x)
        benchmark.group = "engines: R(2+1)D-18 feature map, paper size, 4 clips"
        benchmark.pedantic(lambda: run(x), rounds=5, iterations=1, warmup_rounds=1)
    cos = torch.nn.functional.cosine_similarity(out.flatten(1).double(), reference.flatten(1).double(), dim=1)
    benchmark.extra_info |= {"ms per clip": round(benchmark.stats.stats.median / CLIPS * 1e3, 1),
                             "max |diff| vs PyTorch fp32": round(float((out - reference).abs().max()), 5),
                             "max |PyTorch fp32|": round(float(reference.abs().max()), 3),
                             "min cosine": round(float(cos.min()), 5), "machine": machine()}
    report_row("engines: R(2+1)D-18 feature map, paper size", engine=engine, **{k: benchmark.extra_info[k] for k in (
        "ms per clip", "max |diff| vs PyTorch fp32", "min cosine")})
