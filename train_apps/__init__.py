"""Ray Train applications rayfleet runs (small torch models on synthetic data, checkpointing).

Each app is a module with ``train_loop_per_worker(config)`` (what ``TorchTrainer`` runs on every
worker) and ``main()`` (``python -m train_apps.<name>``). Apps checkpoint every
``checkpoint_every`` steps with ``ray.train.report(..., checkpoint=...)`` and resume from
``ray.train.get_checkpoint()``, so a preempted or failed run continues from its last checkpoint.
"""
