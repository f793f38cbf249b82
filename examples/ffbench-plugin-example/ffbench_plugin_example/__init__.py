"""A worked ffbench plugin (see README.md): `cyclic_label`, a negative-data strategy, and
`margin_logistic`, a layer objective. Each is one file: the variant, its NumPy reference and
its torch, JAX and Keras translations. ffbench finds them through the entry points in
pyproject.toml; importing this package imports no framework."""
