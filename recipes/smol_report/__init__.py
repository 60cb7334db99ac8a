"""The report of recipes/smol.py, built from the runs' results.json and stages.json alone (and the task files under
the data folder, for the answer forms of the failure analysis), so that writing it again trains nothing.

- ``write``: the report of a recipe file, a section per part with its files;
- ``sections``: a part's main sections (setting, scores, relative performance, learnt vs random, transfer, times);
- ``analyses``: IPT's analyses and UDT's landscape;
- ``failures``: the unseen tasks IST fails on, with the training tasks nearest them by answer form (``answer_form``:
  a task's answer form from its training examples, and the distance between two);
- ``figures``: the relative-performance CSV, E_rel against d, the transfer heat map;
- ``relative``: the numbers (E_rel, gain kept, intervals over seeds) and how they are printed.
"""
