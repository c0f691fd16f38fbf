"""genssl: self-supervised representation learning as amortised inference in Pyro."""

__version__ = "0.1.0"
