"""Helpers shared by the test folders: ``tinydata`` (tiny data sets, tiny models, train configs, torchrun),
``standin_model`` (a small stand-in network for inference tests) and ``model_tester`` (the shared model
tester).  Import them as ``from tests.helpers.tinydata import ...``."""
