"""The int8 engine's backbone module (aver_fast/int8/openvino.py): what it refuses, without OpenVINO itself."""
import pytest
import torch


def test_the_engine_backbone_refuses_what_it_cannot_do():
    from aver_fast.int8.openvino import EngineModule

    m = EngineModule(lambda x: x * 2, "video")
    assert torch.equal(m(torch.ones(2, 3)), torch.full((2, 3), 2.0)) and not list(m.parameters())
    with pytest.raises(ValueError, match="computes no gradients"):
        m(torch.ones(2, requires_grad=True))
    with pytest.raises(ValueError, match="runs on the CPU"):
        m(torch.ones(2, device="meta"))
