"""Second derivatives for the fused backends.

The fused backward kernels (C++ and Triton) compute first derivatives only. When a backward runs with
``create_graph=True`` (double backward: gradient penalties, ``gradgradcheck``), the op's backward instead rebuilds
the gradient from the op's pure-PyTorch reference with autograd, so the result is differentiable again and exact
(the reference is the specification). First-order backward keeps the fused kernels.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from . import _functorch


def needs_graph() -> bool:
    """True inside a backward that must itself be differentiable (``create_graph=True``)."""
    return torch.is_grad_enabled()


def reference_grads(forward: Callable[..., Sequence[torch.Tensor]], inputs: Sequence[torch.Tensor],
                    needs: Sequence[bool], grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Differentiable vector-Jacobian product of ``forward(*inputs)`` (a tuple of outputs) with ``grads``.

    ``needs[i]`` says whether input ``i`` wants a gradient; outputs whose gradient is None are left out, and so are
    ``grads`` past the outputs ``forward`` returns (a fused op's saved extras).
    """
    wanted = [t for t, need in zip(inputs, needs, strict=True) if need]
    if not wanted:
        return [None] * len(inputs)
    if _functorch.active():  # inside a torch.func transform the saved inputs do not require grad at this level
        return _functorch.vjp(forward, inputs, needs, grads)
    with torch.enable_grad():
        outs = forward(*inputs)
        pairs = [(o, g) for o, g in zip(outs, grads[:len(outs)], strict=True) if g is not None]
        got = torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], create_graph=True,
                                  allow_unused=True)
    it = iter(got)
    return [next(it) if need else None for need in needs]


def register(op, reference: Callable[..., Sequence[torch.Tensor]],
             fused_backward: Callable[..., Sequence[torch.Tensor | None]],
             save_outputs: bool | slice = True) -> Callable:
    """The autograd of a fused op whose inputs are ``(*tensors, scale)``: first order through ``fused_backward``,
    double backward through ``reference`` (see the module docstring).

    ``op``: a ``"aver_fast::name"`` schema or a custom op. ``reference(*tensors, scale)`` returns the op's
    differentiable outputs, first ones first; ``fused_backward(grads, tensors, outputs, scale)`` returns one
    gradient per tensor input (``outputs``: those ``save_outputs`` selects, all when True, none when False).
    Gradients of unused outputs are None (not materialised).

    Returns the op as a function to call it through, which torch.func transforms can differentiate (see
    :mod:`aver_fast.ops._functorch`).
    """
    kept = slice(None) if save_outputs is True else slice(0) if save_outputs is False else save_outputs

    def setup_context(ctx, inputs, output) -> None:
        *tensors, scale = inputs
        outputs = tuple(output) if isinstance(output, (tuple, list)) else (output,)
        ctx.save_for_backward(*tensors, *outputs[kept])
        ctx.scale, ctx.n_inputs = scale, len(tensors)
        ctx.set_materialize_grads(False)

    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        tensors, outputs = saved[:ctx.n_inputs], saved[ctx.n_inputs:]
        if all(g is None for g in grads):
            return (None,) * (ctx.n_inputs + 1)
        if needs_graph():
            def forward(*t):
                return reference(*t, ctx.scale)
            return (*reference_grads(forward, tensors, ctx.needs_input_grad[:ctx.n_inputs], grads), None)
        return (*fused_backward(grads, tensors, outputs, ctx.scale), None)

    def jvp(ctx, *tangents):  # forward mode (jvp, jacfwd) under torch.func: the reference's, at the saved inputs
        tensors = ctx.saved_tensors[:ctx.n_inputs]
        zeros = [torch.zeros_like(t) if d is None else d for t, d in zip(tensors, tangents, strict=False)]
        _, out = torch.func.jvp(lambda *t: tuple(reference(*t, ctx.scale)), tuple(tensors), tuple(zeros))
        if len(ctx.outputs_like) == 1:
            return out[0]
        return (*out, *[torch.zeros(shape, dtype=dtype, device=device)  # a fused op's internal extra outputs
                        for shape, dtype, device in ctx.outputs_like[len(out):]])

    torch.library.register_autograd(op, backward, setup_context=setup_context)
    namespace, name = (op if isinstance(op, str) else op._qualname).split("::")
    op = getattr(getattr(torch.ops, namespace), name).default
    return _functorch.differentiable(op, setup_context, backward, jvp)


def no_backward(name: str):
    """The backward of a forward-only fused op: raises, naming the route that differentiates."""
    def backward(ctx, *grads):
        raise RuntimeError(f"the fused {name} kernels have no backward: call aver_fast.{name}, which sends inputs "
                           "that require grad to the reference, or pass backend='reference'")
    return backward


def no_setup(ctx, inputs, output) -> None:
    """``setup_context`` of a forward-only op: nothing to save."""
