"""attribench-methods: the attribution methods plugin (namespace `methods`).

`plugin.py` only registers lazy `"module:Class"` targets, so importing this package never imports torch or
Captum; the explainers live in modules named for what they hold (`gradients`, `backprop_rules`, `cam`,
`propagation`, `baselines`), with shared helpers in `common` and `model_checks`.
"""

__version__ = "0.1.1"
