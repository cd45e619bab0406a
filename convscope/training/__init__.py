"""Training: grid runs (finetune, progressive, scratch), frozen-base features, evaluation, metrics.

Modules here import Keras at the top, so the backend must be chosen first:
entry points (run.train_run, evaluate.evaluate_model, features.compute_embeddings,
sanity.imagenet_top5) call convscope.backend.select() before importing them.
metrics.py and the features heads (fit and evaluate) need no Keras.
"""
