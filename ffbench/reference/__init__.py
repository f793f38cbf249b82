"""The NumPy reference: the exact definition of every choice the spec names.

Every backend is a translation of these functions, and is checked against them. They are
plain, dtype-generic NumPy (run them in float64 for a tight reference) with analytic
gradients, so they depend on no autodiff framework.
"""
