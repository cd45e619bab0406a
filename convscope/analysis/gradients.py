"""Gradients of a Keras computation with respect to one of its inputs.

The only backend-specific module of convscope: Keras 3 has no `keras.ops.grad`,
so input gradients need `tf.GradientTape` (TensorFlow) or `jax.value_and_grad`
(JAX). Every analysis (saliency, Grad-CAM, filter visualization, ...) calls
`value_and_grad` with a function written in backend-agnostic `keras.ops`.

Gradients with respect to an intermediate activation (Grad-CAM) use the same
function: cut the model at that layer (convscope.analysis.split_model), compute
the activation with the first half and differentiate the second half with
respect to it.
"""

from __future__ import annotations

import inspect
import weakref

import numpy as np

# Compiled versions of the functions passed with compile=True, so a loop
# (gradient ascent, batches) traces its step once; dropped with the function.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _float_input(x) -> np.ndarray:
    # A gradient with respect to an integer tensor (uint8 images) does not exist
    # (TensorFlow returns None), so integer inputs become float32.
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)


def _tensorflow(fn, compile: bool):
    import tensorflow as tf

    def step(x, *args):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x, *args)
            total = tf.reduce_sum(value)
        return value, tape.gradient(total, x)

    return tf.function(step, reduce_retracing=True) if compile else step


def _jax(fn, compile: bool, variables: list):
    import jax
    import jax.numpy as jnp
    import keras

    def total(x, values, *args):
        if variables:
            # The variables' values come in as arguments: a compiled step does not
            # bake the model's weights into the program as constants.
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                value = fn(x, *args)
        else:
            value = fn(x, *args)
        return jnp.sum(value), value

    # Differentiates x only: the weights are neither differentiated nor updated
    # (inference mode).
    step = jax.value_and_grad(total, has_aux=True)

    def unpack(x, values, *args):
        (_, value), grad = step(x, values, *args)
        return value, grad

    return jax.jit(unpack) if compile else unpack


def value_and_grad(fn, x, *args, compile: bool = False, variables=None):
    """Evaluate `fn(x, *args)` and the gradient of its sum with respect to `x`.

    fn: written with keras.ops/Keras layers; maps backend tensors to a tensor of
        values (any shape, e.g. one score per example). The gradient is that of
        the sum of the values, so for a batch whose examples do not interact
        (inference mode) grad[i] is d value[i] / d x[i].
    x:  numpy array; integer arrays (uint8 images) are cast to float32 first.
    args: further numpy arrays passed to fn, not differentiated (targets, masks,
        per-step random transforms).
    compile: trace fn once into a tf.function / jax.jit and reuse it on later
        calls with the same fn object (for loops such as gradient ascent).
    variables: the Keras variables fn reads (e.g. model.variables). On JAX a
        compiled step then takes their values as arguments instead of embedding
        them as constants (large models compile slowly and twice in memory
        otherwise); TensorFlow reads them in place either way.

    Returns (value, grad) as numpy arrays, grad with the shape and dtype of x
    (after the cast).
    """
    import keras

    backend = keras.backend.backend()
    variables = list(variables or ())
    cache, key, target = {}, None, fn
    if compile:
        # Cached under the function (for a bound method, a new object at every attribute
        # access: under its owner), which the compiled step only references weakly so
        # the cache entry goes when the function does.
        if inspect.ismethod(fn):
            owner, key, ref = fn.__self__, fn.__func__, weakref.ref(fn.__self__)
            target = lambda *a, _f=fn.__func__: _f(ref(), *a)
        else:
            owner, ref = fn, weakref.ref(fn)
            target = lambda *a: ref()(*a)
        cache = _COMPILED.setdefault(owner, {})
    cache_key = (key, backend, tuple(id(v) for v in variables))
    step = cache.get(cache_key)
    if step is None:
        if backend == "tensorflow":
            step = _tensorflow(target, compile)
        elif backend == "jax":
            step = _jax(target, compile, variables)
        else:
            raise NotImplementedError(
                f"input gradients are implemented for the tensorflow and jax Keras backends, "
                f"not {backend!r}; set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax"
            )
        cache[cache_key] = step
    x = keras.ops.convert_to_tensor(_float_input(x))
    args = [keras.ops.convert_to_tensor(np.asarray(a)) for a in args]
    if backend == "jax":
        value, grad = step(x, [v.value for v in variables], *args)
    else:
        value, grad = step(x, *args)
    if grad is None:
        raise ValueError("the function's value does not depend on x (gradient is None); check what fn returns")
    return keras.ops.convert_to_numpy(value), keras.ops.convert_to_numpy(grad)
