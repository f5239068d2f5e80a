"""The data layer: fetch (mirror folder or canonical URLs), verify, parse and prepare data sets.

``gae.data.prepare.prepare_dataset`` writes ``data/prepared/{dataset}.npz`` + ``.json``;
``gae.data.prepare.load_prepared`` reads them back (applying ``data.subset``). This package
imports only the base layer (``gae.errors``, ``gae.io``, ``gae.config``), numpy and scipy.
"""
