"""Whole epochs in the reference: the same batches and negatives every backend must use.

Slow (NumPy, any dtype) and meant for small checks: a backend trained on the same data from
the same initial weights must end with the same parameters, within float tolerance.
"""

from __future__ import annotations

import numpy as np

from ffbench import layer_windows
from ffbench.reference import augment, bp, ff, negatives, optim, recurrent, rng
from ffbench.spec import BPTrial, FFTrial, batch_size_for


def batches(seed: int, epoch: int, n: int, batch_size: int) -> list[np.ndarray]:
    """The dataset indices of each minibatch of `epoch` (the last incomplete batch dropped)."""
    order = rng.epoch_order(seed, epoch, n)
    return [order[s * batch_size:(s + 1) * batch_size] for s in range(n // batch_size)]


def ff_simultaneous_epoch(state: ff.FFState, x: np.ndarray, y: np.ndarray, trial: FFTrial, epoch: int, lr: float,
                          draws: negatives.Draws):
    """One epoch of the simultaneous schedule; returns (state, mean loss per layer). `draws`
    carries the run's negatives from one epoch to the next."""
    spec = trial.ff
    bs = batches(trial.seed, epoch, len(y), batch_size_for(trial, len(y)))
    negs = draws.epoch(epoch, bs, state.params, len(state.params) - 1)
    losses = []
    for idx, neg in zip(bs, negs):
        xb = augment.batch_images(trial, x, idx, epoch)
        x_pos, x_neg = negatives.batch_inputs(trial, x, xb, idx, y[idx], neg, epoch)
        state, steps = ff.simultaneous_step(state, x_pos, x_neg, spec, trial.layer_optimizer(tuple(range(len(state.params)))), lr,
                                            y[idx])
        losses.append([s.loss for s in steps])
    return state, np.mean(losses, axis=0)


def ff_recurrent_epoch(params, opt_state: optim.OptState, x: np.ndarray, y: np.ndarray, trial: FFTrial, epoch: int,
                       lr: float, draws: negatives.Draws):
    """One epoch of the recurrent net (`reference.recurrent`): the positives clamp the true
    label, the negatives the strategy's label, on the same (jittered) images. Returns
    (params, opt_state, mean loss per layer)."""
    bs = batches(trial.seed, epoch, len(y), batch_size_for(trial, len(y)))
    negs = draws.epoch(epoch, bs, params, len(params) - 1)
    losses = []
    for idx, neg in zip(bs, negs):
        loss, grads = recurrent.step(augment.batch_images(trial, x, idx, epoch), y[idx], neg, params, trial.ff)
        flat = [p for wb in params for p in wb]
        new, opt_state = optim.update(trial.optimizer, [g for wb in grads for g in wb], opt_state, flat, lr)
        params = [(new[2 * i], new[2 * i + 1]) for i in range(len(params))]
        losses.append(loss)
    return params, opt_state, np.mean(losses, axis=0)


def bp_epoch(params, opt_state: optim.OptState, x: np.ndarray, y: np.ndarray, trial: BPTrial, epoch: int, lr: float,
             running=None):
    """One epoch of the backprop baseline; returns (params, opt_state, mean loss, running
    statistics: a batch-normalised conv layer's, carried in and out; None: the initial ones)."""
    conv, losses = trial.conv_layers(), []
    running = bp.initial_running(trial) if running is None else running
    for idx in batches(trial.seed, epoch, len(y), batch_size_for(trial, len(y))):
        xb = augment.batch_images(trial, x, idx, epoch)
        loss, grads, running = bp.loss_and_grads(xb, y[idx], params, trial.local, conv, running)
        new, opt_state = optim.update(trial.optimizer, [g for gs in grads for g in gs], opt_state,
                                      [p for ps in params for p in ps], lr)
        params = ff.regroup(new, params)
        losses.append(loss)
    return params, opt_state, float(np.mean(losses)), running


def ff_greedy_layer_epoch(params, opt_state: optim.OptState, running, layer: int, x: np.ndarray, y: np.ndarray,
                          trial: FFTrial, epoch: int, lr: float, draws: negatives.Draws, upto: int):
    """One epoch of the greedy schedule for `layer` (layers below frozen); its own optimiser state.

    Returns (params, opt_state, running means, mean loss). `epoch` is the global epoch index;
    `upto` the deepest layer trained so far or now (hard negatives score layers 0..upto).
    """
    spec = trial.ff
    bs = batches(trial.seed, epoch, len(y), batch_size_for(trial, len(y)))
    negs = draws.epoch(epoch, bs, params, upto)
    params, running, losses = list(params), list(running), []
    for idx, neg in zip(bs, negs):
        xb = augment.batch_images(trial, x, idx, epoch)
        x_pos, x_neg = negatives.batch_inputs(trial, x, xb, idx, y[idx], neg, epoch)
        for i, p in enumerate(params[:layer]):
            bn = ff.frozen_bn(p, running[i])
            x_pos, x_neg = ff.layer_forward(x_pos, *p[:2], spec, i, bn)[2], ff.layer_forward(x_neg, *p[:2], spec, i, bn)[2]
        p = params[layer]
        st = ff.layer_step(x_pos, x_neg, p[0], p[1], spec, running[layer], layer, y[idx], p[2:] or None)
        new, opt_state = optim.update(trial.layer_optimizer((layer,)), list(st.grads), opt_state, list(p), lr)
        params[layer], running[layer] = tuple(new), st.running_mean
        losses.append(st.loss)
    return params, opt_state, running, float(np.mean(losses))


def ff_greedy_run(params, x: np.ndarray, y: np.ndarray, trial: FFTrial, with_running: bool = False):
    """The whole greedy schedule: for each episode, each layer in turn for `epochs` epochs. A
    layer's optimiser state carries over from one episode to its next; returns the params
    (and with `with_running`, each layer's carried statistics)."""
    depth = len(params)
    running, states, draws, epoch = [None] * depth, {}, negatives.Draws(trial, x, y), 0
    for episode in range(trial.ff.episodes):
        for layer in range(depth):
            opt = trial.layer_optimizer((layer,))
            st = states.get(layer) or optim.init(opt, list(params[layer]))
            for e in range(trial.epochs):
                upto = layer if episode == 0 else depth - 1
                params, st, running, _ = ff_greedy_layer_epoch(params, st, running, layer, x, y, trial, epoch,
                                                               optim.lr_at(opt, e, trial.epochs), draws, upto)
                epoch += 1
            states[layer] = st
    return (params, running) if with_running else params



def ff_windowed_run(params, x: np.ndarray, y: np.ndarray, trial: FFTrial):
    """Per-layer epoch windows (`ffbench.layer_windows`): in each epoch the layers whose window
    holds it train as the simultaneous schedule trains (each on the output of the one below at
    the step's pre-update weights), the layers below run frozen (batch norm on its running
    statistics), those above are not computed; each layer has its own optimiser state and step
    count, kept across the epochs it trains in. Returns (params, carried statistics)."""
    spec, depth = trial.ff, len(params)
    params, running, draws = list(params), [None] * depth, negatives.Draws(trial, x, y)
    states = [optim.init(trial.layer_optimizer((i,)), list(p)) for i, p in enumerate(params)]
    for start, end, layers in layer_windows.stretches(spec.layer_epochs, trial.epochs):
        lo, hi, opt = layers[0], layers[-1], trial.layer_optimizer(layers)
        for epoch in range(start, end):
            lr = optim.lr_at(opt, epoch - start, end - start)
            bs = batches(trial.seed, epoch, len(y), batch_size_for(trial, len(y)))
            for idx, neg in zip(bs, draws.epoch(epoch, bs, params, hi)):
                xb = augment.batch_images(trial, x, idx, epoch)
                x_pos, x_neg = negatives.batch_inputs(trial, x, xb, idx, y[idx], neg, epoch)
                for i, p in enumerate(params[:lo]):
                    bn = ff.frozen_bn(p, running[i])
                    x_pos, x_neg = (ff.layer_forward(h, *p[:2], spec, i, bn)[2] for h in (x_pos, x_neg))
                steps = []
                for i in layers:
                    p = params[i]
                    st = ff.layer_step(x_pos, x_neg, p[0], p[1], spec, running[i], i, y[idx], p[2:] or None)
                    steps.append(st)
                    x_pos, x_neg = st.h_pos, st.h_neg
                for i, st in zip(layers, steps):
                    new, states[i] = optim.update(opt, list(st.grads), states[i], list(params[i]), lr)
                    params[i], running[i] = tuple(new), st.running_mean
    return params, running
