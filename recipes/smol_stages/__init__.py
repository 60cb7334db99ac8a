"""The stages of recipes/smol.py: each a function of the runner (its recipe, backbone, banks and recorded results)
with one job; the runner orders them, times each and writes ``results.json`` after it.

- ``original``: the bank of the training tasks, the reference of the unseen tasks, the frozen backbone;
- ``tuning``: subspace tuning of a method on tasks and seeds through one subspace (IST, subspace optimisation);
- ``ipt``: MSF at a d, the linear subspace of the bank, IPT's seen-task challenges; ``baselines``: the random
  auto-encoder and Fastfood (DID);
- ``udt``: the unified subspace and the transfer matrix; ``landscape``: UDT's Fig. 2;
- IPT's analyses (issue 12): ``d_sweep`` (Fig. 3), ``pca`` (Fig. 8), ``stability`` (Table III), ``multitask``
  (Table IV), ``task_fractions`` (Fig. 7), ``task_types`` (Fig. 4), ``data_scale`` (Fig. 6).
"""
