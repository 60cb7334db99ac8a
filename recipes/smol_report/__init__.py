"""The report of recipes/smol.py, built from the runs' results.json and stages.json alone, so that writing it again
trains nothing.

- ``write``: the report of a recipe file, a section per part with its files;
- ``sections``: a part's main sections (setting, scores, relative performance, learnt vs random, transfer, times);
- ``analyses``: IPT's analyses and UDT's landscape;
- ``figures``: the relative-performance CSV, E_rel against d, the transfer heat map;
- ``relative``: the numbers (E_rel, gain kept, intervals over seeds) and how they are printed.
"""
