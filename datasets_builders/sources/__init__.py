"""One module per raw public format: locate the files, read records, convert them to samples.

Each module has ``NAME``, ``VERSION`` (bump it when its output changes), ``locate(path, options)``,
``read_records(layout, split)`` and ``to_samples(record)``; the contract is in ``contract.py`` and
the one loop that drives them is ``datasets_builders/build.py``.
"""
