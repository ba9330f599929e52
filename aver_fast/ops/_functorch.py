"""``torch.func`` (grad, vjp, jacrev, jvp, jacfwd, vmap) through the fused ops.

PyTorch 2.14's ``torch.library.register_autograd`` wraps a backward in an ``autograd.Function`` without
``setup_context``, which torch.func transforms refuse (pytorch/pytorch#170834). So each fused op with a backward is
called through :func:`differentiable`: outside a transform the op itself (nothing added, torch.compile sees the op),
inside one an ``autograd.Function`` of our own with the same ``setup_context`` and ``backward``.

:func:`register_vmap` gives an op a batching rule, so ``vmap`` calls the fused kernel once on the whole batch
instead of once per sample (PyTorch's fallback loop, which also warns).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.autograd import forward_ad

BATCHED = "batched"   # a tensor argument whose leading dims are batch dims: the vmapped dim joins them
CONSTANT = "constant"  # a tensor argument shared by the batch (window, weight): batched only per sample


def active() -> bool:
    """True inside a torch.func transform (grad, vjp, jacrev, jacfwd, vmap, functional_call under them)."""
    return not torch.compiler.is_compiling() and torch._C._functorch.peek_interpreter_stack() is not None


def forward_mode() -> bool:
    """True while forward-mode AD runs: ``torch.func.jvp``/``jacfwd`` or ``torch.autograd.forward_ad``."""
    return forward_ad._current_level >= 0


def needs_grad(args: tuple) -> bool:
    """Whether a call with ``args`` builds a graph: grad mode on and a tensor among them that requires grad."""
    return torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)


def differentiable(op: Callable, setup_context: Callable, backward: Callable, jvp: Callable) -> Callable:
    """``op`` as a function that torch.func can differentiate: the op itself outside transforms, else an
    ``autograd.Function`` with ``setup_context``/``backward`` (those given to ``register_autograd``), forward-mode
    ``jvp``, and a vmap rule that calls ``op`` under vmap (so ``op``'s batching rule applies)."""
    name = str(getattr(op, "_name", None) or getattr(op, "__name__", "op")).replace("::", "_").replace(".", "_")

    def setup(ctx, inputs, output) -> None:
        setup_context(ctx, inputs, output)
        ctx.save_for_forward(*[t for t in inputs if isinstance(t, torch.Tensor)])  # jvp's ctx.saved_tensors
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        ctx.outputs_like = [(o.shape, o.dtype, o.device) for o in outputs]  # jvp's tangents of internal outputs

    fn = type(f"{name}_function", (torch.autograd.Function,), {
        "generate_vmap_rule": True,
        "forward": staticmethod(lambda *args: op(*args)),
        "setup_context": staticmethod(setup),
        "backward": staticmethod(backward),
        "jvp": staticmethod(jvp),
    })

    def call(*args):
        if torch.compiler.is_compiling():
            return op(*args)
        if torch._C._functorch.peek_interpreter_stack() is not None:
            return fn.apply(*args)
        if needs_grad(args):
            return op(*args)
        with torch._C._AutoDispatchBelowAutograd():  # nothing to differentiate: no autograd kernel in Python
            return op(*args)
    return call


def vjp(forward: Callable, inputs: Sequence[torch.Tensor], needs: Sequence[bool],
        grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """``torch.func.vjp`` of ``forward(*inputs)`` (a tuple of outputs) with ``grads`` (None: a zero gradient) for the
    inputs ``needs`` selects: the reference backward of :func:`aver_fast.ops._autograd.reference_grads` inside a
    transform, differentiable by the transforms outside it."""
    def wanted_only(*wanted):
        it = iter(wanted)
        return forward(*[next(it) if need else t for t, need in zip(inputs, needs, strict=True)])

    outs, pull = torch.func.vjp(wanted_only, *[t for t, need in zip(inputs, needs, strict=True) if need])
    cotangents = tuple(torch.zeros_like(o) if g is None else g for o, g in zip(outs, grads[:len(outs)], strict=True))
    it = iter(pull(cotangents))
    return [next(it) if need else None for need in needs]


def register_vmap(op: str, kinds: Sequence[str | None], fold: bool = False, per_sample: bool = False) -> None:
    """A batching rule for ``op`` (``"aver_fast::name"``, or a custom op's name).

    ``kinds``: one per argument, :data:`BATCHED`, :data:`CONSTANT` or None (not a tensor). The rule moves the
    vmapped dim of every batched argument to the front (expanding the unbatched ones) and calls the op once; with
    ``fold`` (ops that take exactly one leading batch dim) it is merged into that dim and split off the outputs
    again. Outputs are batched along their first dim; an empty placeholder output stays unbatched. When a
    :data:`CONSTANT` argument is vmapped, or with ``per_sample`` (an output sums over the batch, e.g. a weight's
    gradient), the op runs once per sample instead.
    """
    def rule(info, in_dims, *args):
        size = info.batch_size
        if per_sample or any(d is not None and k == CONSTANT for d, k in zip(in_dims, kinds, strict=True)):
            return _per_sample(op, size, in_dims, args)
        moved = []
        for a, d, k in zip(args, in_dims, kinds, strict=True):
            if k == BATCHED and a.numel():  # an empty placeholder (a kernel's unused saved output) stays as it is
                a = a.movedim(d, 0) if d is not None else a.expand(size, *a.shape)
                a = a.reshape(-1, *a.shape[2:]) if fold else a
            moved.append(a)
        out = _call(op, moved)
        return _split(out, size, fold)

    torch.library.register_vmap(op, rule)


def _call(op: str, args: Sequence) -> object:
    namespace, name = op.split("::")
    return getattr(getattr(torch.ops, namespace), name)(*args)


def _split(out, size: int, fold: bool):
    outs = out if isinstance(out, tuple) else (out,)
    done, dims = [], []
    for o in outs:
        if not o.numel():
            done.append(o)
            dims.append(None)
        else:
            done.append(o.reshape(size, -1, *o.shape[1:]) if fold else o)
            dims.append(0)
    return (tuple(done), tuple(dims)) if isinstance(out, tuple) else (done[0], dims[0])


def _per_sample(op: str, size: int, in_dims: Sequence[int | None], args: Sequence):
    results = [_call(op, [a.select(d, i) if d is not None else a for a, d in zip(args, in_dims, strict=True)])
               for i in range(size)]
    if isinstance(results[0], tuple):
        return tuple(torch.stack(r) for r in zip(*results, strict=True)), (0,) * len(results[0])
    return torch.stack(results), 0
